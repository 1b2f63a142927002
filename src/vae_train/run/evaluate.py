"""Evaluating a run folder, the work behind ``vae-eval``: rebuild the model from the run's saved
config, restore its latest checkpoint, and write the test figures, pictures and codes."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vae_train.config import (
    GROUP_SCHEMAS,
    Binarize,
    Config,
    DataSplit,
    FolderDataConfig,
    PublishedDataConfig,
    Resize,
)
from vae_train.data.corruption import corruption_of
from vae_train.data.pipeline import ImageDataset, ImagePipelines, load_dataset
from vae_train.data.sources import ReadContext
from vae_train.data.sources.mnist import IDX_DATASETS, SPLIT_FILES
from vae_train.errors import CheckpointError, ConfigError
from vae_train.evaluation.codes import encode, reconstruction_errors
from vae_train.evaluation.figures import Evaluator
from vae_train.evaluation.pictures import ENCODE_BATCH, Pictures, enlarged, to_uint8, write_png
from vae_train.files import write_atomically
from vae_train.models import Autoencoder, build_model
from vae_train.run.analyses import Analysis, analyse, anomalous_test_images, anomaly_scores, detect
from vae_train.run.layout import CHECKPOINTS_DIR, EVAL_DIR, METRICS_FILE, checkpoint_signature
from vae_train.runtime.devices import set_up_devices
from vae_train.runtime.precision import ComputePrecision
from vae_train.runtime.storage import writing
from vae_train.training.checkpoints import RunCheckpoints, model_trackables

log = logging.getLogger(__name__)

SCORES_FILE = "test_reconstruction_errors.npy"
GIF_FILE = "interpolation.gif"
# The frames' longer side is enlarged by whole pixels to this or more: a 28x28 image six times over; a
# 16x16 one eleven times; a 256x256 one stays as it is.
GIF_PIXELS = 168
GIF_FRAME_MILLISECONDS = 120


def restore_model(settings: Config, run_dir: Path, image_shape: tuple[int, int, int],
                  precision: ComputePrecision | None = None) -> tuple[Autoencoder, dict]:
    """The run's model for images of ``image_shape``, computing in ``precision``, with the weights of
    its newest checkpoint that reads (a log line names any newer one that does not); and where they came from."""
    checkpoint_dir = Path(run_dir) / CHECKPOINTS_DIR
    model = build_model(settings.model, settings.latent_dim, image_shape, settings.seed, precision)
    # The trainer's step counter, not the optimizer's, which stops on skipped batches. The optimizer
    # and the running sums are left unread.
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoints = RunCheckpoints(checkpoint_dir, checkpoint_signature(settings), settings.trainer.checkpoints_to_keep,
                                 **model_trackables(model), epoch=epoch, global_step=global_step)
    # The newest checkpoint that reads; the folder is left as it is, as a run may be saving into it.
    if not checkpoints.restore_latest(partial=True, repair=False):
        raise CheckpointError(
            f"{run_dir} has no checkpoint in {checkpoint_dir}: the run stopped before its first one was "
            f"saved. Train it first (vae-train hydra.run.dir={run_dir} with the run's overrides)."
        )
    return model, {"checkpoint": checkpoints.restored, "epoch": int(epoch.numpy()),
                   "steps": int(global_step.numpy())}


def _writing_results(output: Path):
    """vae-eval's writes into ``output``: one that fails for want of room or access is a StorageError."""
    return writing("vae-eval's results", output, run_state="The run's checkpoints were only read, not changed.")


def other_data_config(settings: Config, other: str, image_shape: tuple[int, int, int]):
    """The data settings of ``--anomalies``: a known data set by name, or a folder, read as the run read
    its own (binarization, size limits) so the scores compare. A folder of IDX files is read as the run's
    own source; any other folder as a folder of images, brought to the run's image size and channels."""
    shared = {key: getattr(settings.data, key) for key in ("cache_dir", "batch_size", "max_test_examples",
                                                           "binarize")}
    # The data sets a name alone can give: those of published files, downloaded when missing.
    by_name = {name: schema for name, schema in GROUP_SCHEMAS["data"].items()
               if issubclass(schema, PublishedDataConfig)}
    if other in by_name:
        return by_name[other](name=other, **shared)
    folder = Path(other)
    if not folder.is_dir():
        known = ", ".join(sorted(by_name))
        raise ConfigError(f"--anomalies {other}: neither a data set ({known}) nor a folder. Name one of those "
                          "data sets, or give a folder of images (or of the run's IDX files).")
    if settings.data.name in IDX_DATASETS and (folder / SPLIT_FILES["test_images"]).is_file():
        return dataclasses.replace(settings.data, root=other, verify_checksums=False, train_classes=None,
                                   split=DataSplit.standard)
    # Every image of the folder is tested: it is its own test folder, and its training images are not used.
    return FolderDataConfig(name="folder", root=other, test_root=other, labels=None, **(shared | {"batch_size": 1}),
                            image_size=list(image_shape[:2]), channels=image_shape[2],
                            resize=getattr(settings.data, "resize", Resize.stretch))


def out_of_distribution(model: Autoencoder, settings: Config, dataset: ImageDataset, other: str,
                        analysis: Analysis) -> None:
    """The run's own test images (of its training classes) as the normal ones, their scores those
    :func:`analyse` kept in ``analysis.test_scores``; the other dataset's test images as the anomalies."""
    other_config = other_data_config(settings, other, dataset.image_shape)
    other_dataset = load_dataset(other_config)
    other_pipelines = ImagePipelines(other_dataset, other_config, settings.seed)
    normal = analysis.test_scores
    anomalous = anomaly_scores(model, other_pipelines, settings)
    own_anomalies, _ = anomalous_test_images(dataset, settings)
    kept = np.ones(len(dataset.test.labels), bool) if own_anomalies is None else ~own_anomalies
    scores = {name: np.concatenate([normal[name][kept], anomalous[name]]) for name in normal}
    labels = np.concatenate([dataset.test.labels[kept], other_dataset.test.labels])
    is_anomaly = np.concatenate([np.zeros(int(kept.sum()), bool), np.ones(len(other_dataset.test.labels), bool)])
    detect(scores, labels, is_anomaly, f"{settings.data.name} normal, {other} anomalous", analysis)
    analysis.figures["anomalies"] = other


def write_gif(path: Path, frames: np.ndarray, milliseconds: int = GIF_FRAME_MILLISECONDS) -> None:
    """An animated GIF looping through ``frames`` (``(height, width, channels)`` images in [0, 1]) and
    back, each enlarged: in colour for three channels, in grey for one."""
    from PIL import Image

    def gif_frame(frame: np.ndarray) -> Image.Image:
        pixels = enlarged(to_uint8(frame), GIF_PIXELS)
        # Pillow reads (height, width) bytes as grey and (height, width, 3) as RGB, but no (height, width, 1).
        return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)

    images = [gif_frame(frame) for frame in frames]
    loop = images + images[-2:0:-1]
    loop[0].save(path, save_all=True, append_images=loop[1:], duration=milliseconds, loop=0)


def evaluate_run(settings: Config, run_dir: Path, encode_splits: list[str] | tuple[str, ...] = (),
                 output: Path | None = None, anomalies: str | None = None, gif: bool = False) -> dict:
    """Evaluate ``run_dir``'s newest checkpoint that reads on its test set; returns what metrics.json holds.

    ``anomalies``: a second dataset (a name or a folder) scored as anomalies against the run's test
    set; ``gif``: also an animated GIF of the first interpolation.
    """
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / EVAL_DIR
    keras.utils.set_random_seed(settings.seed)
    # The run's own precision, resolved as the run resolved it, so its test figures come out again.
    devices = set_up_devices("one_device", settings.trainer.precision)
    # A folder's split is the one the run recorded (split.csv), read, never rewritten.
    dataset = load_dataset(settings.data, ReadContext(seed=settings.seed, run_dir=run_dir))
    pipelines = ImagePipelines(dataset, settings.data, settings.seed)
    model, origin = restore_model(settings, run_dir, dataset.image_shape, devices.precision)
    # The run's own batches: the posterior samples drawn then depend on them, so the figures of
    # the training run's last epoch come out again.
    test = pipelines.test()
    corrupt = corruption_of(settings.corruption)

    figures = Evaluator(model, devices.strategy, seed=settings.seed, metrics=settings.evaluation.metrics,
                        corrupt=corrupt, image_quality=settings.data.binarize is Binarize.none
                        ).evaluate(pipelines.test_batches())
    analysis = analyse(model, dataset, pipelines, settings, one_class=anomalies is None, progress_folder=output)
    if anomalies is not None:
        out_of_distribution(model, settings, dataset, anomalies, analysis)
    results = {
        "run_dir": str(run_dir),
        **origin,
        "model": settings.model.name,
        "data": settings.data.name,
        "data_split": settings.data.split.value,
        "latent_dim": settings.latent_dim,
        "test_images": pipelines.test_size,
        **{f"test_{name}": value for name, value in figures.items()},
        **analysis.figures,
    }

    # Each write is guarded apart from the computing around it, whose out-of-memory errors are no full disk.
    scores = reconstruction_errors(model, test)
    with _writing_results(output):
        output.mkdir(parents=True, exist_ok=True)
        np.save(output / SCORES_FILE, scores)
        for name, values in analysis.per_image.items():
            np.save(output / f"{name}.npy", values)
    pictures = Pictures.from_dataset(model, test, dataset.test.labels, dataset.class_names, settings.evaluation,
                                     settings.seed, corrupt)
    rendered = {**pictures.render(), **analysis.pictures}
    with _writing_results(output):
        for name, picture in rendered.items():
            write_png(output / f"{name}.png", picture)
    if gif:
        frames = pictures.interpolation_chain()
        if len(frames):
            with _writing_results(output):
                write_gif(output / GIF_FILE, frames)
        else:
            log.warning("No interpolation to animate: evaluation.interpolations is 0, or the first test images "
                        "are all of one class.")
    splits = {"train": dataset.train, "test": dataset.test}
    for split in encode_splits:
        codes = encode(model, pipelines.in_order(split, ENCODE_BATCH))
        with _writing_results(output):
            np.save(output / f"codes_{split}.npy", codes)
            np.save(output / f"labels_{split}.npy", splits[split].labels)
    with _writing_results(output):
        write_atomically(output / METRICS_FILE, json.dumps(results, indent=2) + "\n")

    shown = ("test_loss", "test_elbo", "test_nll_iw", "test_recipe_loss", "test_rounded_accuracy", "test_psnr",
             "test_ssim", "test_denoising_psnr", "anomaly_auroc_reconstruction", "anomaly_auroc_nll_iw",
             "probe_accuracy", "pca_probe_accuracy", "kmeans_accuracy")
    log.info("Evaluated %s (epoch %d, step %d): %s. Results in %s.", origin["checkpoint"], origin["epoch"],
             origin["steps"], ", ".join(f"{key}={results[key]:.4g}" for key in shown if key in results), output)
    return results
