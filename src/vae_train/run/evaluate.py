"""Evaluating a run folder, the work behind ``vae-eval``: rebuild the model from the run's saved
config, restore its latest checkpoint, and write the test figures, pictures and codes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vae_train.config import Config
from vae_train.data.pipeline import ImagePipelines, load_dataset
from vae_train.errors import CheckpointError
from vae_train.evaluation.codes import encode, reconstruction_errors
from vae_train.evaluation.figures import Evaluator
from vae_train.evaluation.likelihood import likelihood_figures
from vae_train.evaluation.pictures import ENCODE_BATCH, Pictures, write_png
from vae_train.files import write_atomically
from vae_train.models import Autoencoder, build_model
from vae_train.run.layout import CHECKPOINTS_DIR, EVAL_DIR, METRICS_FILE, checkpoint_signature
from vae_train.runtime.devices import set_up_devices
from vae_train.runtime.precision import ComputePrecision
from vae_train.training.checkpoints import RunCheckpoints, model_trackables

log = logging.getLogger(__name__)

SCORES_FILE = "test_reconstruction_errors.npy"


def restore_model(settings: Config, run_dir: Path, image_shape: tuple[int, int, int],
                  precision: ComputePrecision | None = None) -> tuple[Autoencoder, dict]:
    """The run's model for images of ``image_shape``, computing in ``precision``, with the weights of
    its latest checkpoint; and where they came from."""
    checkpoint_dir = Path(run_dir) / CHECKPOINTS_DIR
    model = build_model(settings.model, settings.latent_dim, image_shape, settings.seed, precision)
    # The trainer's step counter, not the optimizer's, which stops on skipped batches. The optimizer
    # and the running sums are left unread.
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoints = RunCheckpoints(checkpoint_dir, checkpoint_signature(settings), settings.trainer.checkpoints_to_keep,
                                 **model_trackables(model), epoch=epoch, global_step=global_step)
    if checkpoints.latest is None:
        raise CheckpointError(
            f"{run_dir} has no checkpoint in {checkpoint_dir}: the run stopped before its first one was "
            f"saved. Train it first (vae-train hydra.run.dir={run_dir} with the run's overrides)."
        )
    checkpoints.restore_latest(partial=True)
    return model, {"checkpoint": checkpoints.latest, "epoch": int(epoch.numpy()),
                   "steps": int(global_step.numpy())}


def evaluate_run(settings: Config, run_dir: Path, encode_splits: list[str] | tuple[str, ...] = (),
                 output: Path | None = None) -> dict:
    """Evaluate ``run_dir``'s latest checkpoint on its test set; returns what metrics.json holds."""
    run_dir = Path(run_dir)
    output = Path(output) if output is not None else run_dir / EVAL_DIR
    keras.utils.set_random_seed(settings.seed)
    # The run's own precision, resolved as the run resolved it, so its test figures come out again.
    devices = set_up_devices("one_device", settings.trainer.precision)
    dataset = load_dataset(settings.data)
    pipelines = ImagePipelines(dataset, settings.data, settings.seed)
    model, origin = restore_model(settings, run_dir, dataset.image_shape, devices.precision)
    # The run's own batches: the posterior samples drawn then depend on them, so the figures of
    # the training run's last epoch come out again.
    test = pipelines.test()

    figures = Evaluator(model, devices.strategy, seed=settings.seed, metrics=settings.evaluation.metrics).evaluate(test)
    results = {
        "run_dir": str(run_dir),
        **origin,
        "model": settings.model.name,
        "data": settings.data.name,
        "data_split": settings.data.split.value,
        "latent_dim": settings.latent_dim,
        "test_images": pipelines.test_size,
        **{f"test_{name}": value for name, value in figures.items()},
        **likelihood_figures(model, test, settings.evaluation.iw_samples, settings.seed),
    }

    output.mkdir(parents=True, exist_ok=True)
    np.save(output / SCORES_FILE, reconstruction_errors(model, test))
    pictures = Pictures.from_dataset(model, test, dataset.test.labels, dataset.class_names, settings.evaluation,
                                     settings.seed)
    for name, picture in pictures.render().items():
        write_png(output / f"{name}.png", picture)
    splits = {"train": dataset.train, "test": dataset.test}
    for split in encode_splits:
        np.save(output / f"codes_{split}.npy", encode(model, pipelines.in_order(split, ENCODE_BATCH)))
        np.save(output / f"labels_{split}.npy", splits[split].labels)
    write_atomically(output / METRICS_FILE, json.dumps(results, indent=2) + "\n")

    shown = ("test_loss", "test_elbo", "test_nll_iw", "test_recipe_loss", "test_rounded_accuracy")
    log.info("Evaluated %s (epoch %d, step %d): %s. Results in %s.", origin["checkpoint"], origin["epoch"],
             origin["steps"], ", ".join(f"{key}={results[key]:.4g}" for key in shown if key in results), output)
    return results
