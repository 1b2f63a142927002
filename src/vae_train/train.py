"""One training run, from typed settings to a run folder holding checkpoints, TensorBoard
files and ``results.json``. The command line is a thin layer over :func:`train`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from vae_train.config import Config
from vae_train.data.pipeline import ImageDataset, ImagePipelines, load_dataset
from vae_train.errors import TrainingError
from vae_train.evaluation import Evaluator, likelihood_figures
from vae_train.export import EXPORT_DIR, export_models
from vae_train.files import read_json_object, write_atomically
from vae_train.models import Autoencoder, build_model
from vae_train.pictures import TensorBoardPictures
from vae_train.run_info import record_session
from vae_train.training.devices import set_up_devices
from vae_train.training.loop import Trainer
from vae_train.training.optimizers import build_optimizer
from vae_train.training.precision import requested_precision
from vae_train.training.summaries import TensorBoardWriters
from vae_train.training.workers import check_same_step, is_chief, output_dir

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


def checkpoint_signature(settings: Config) -> dict:
    """What must match for a checkpoint to be restorable into this run's model."""
    return {"model": settings.model.name, "latent_dim": settings.latent_dim}


def _model_description(model) -> str:
    lines: list[str] = []
    for part in (model.encoder, model.decoder):
        part.summary(print_fn=lambda line, *_: lines.append(line))
    return "```\n" + "\n".join(lines) + "\n```"


@dataclass
class RunParts:
    strategy: tf.distribute.Strategy
    dataset: ImageDataset
    pipelines: ImagePipelines
    model: Autoencoder
    optimizer: keras.optimizers.Optimizer
    precision: str  # the Keras dtype policy the model computes in


def build_parts(settings: Config, dataset: ImageDataset | None = None) -> RunParts:
    """Seeds, devices and compute precision, data pipelines, model and optimizer, as every run builds
    them (``make bench`` times the loop on parts built here). ``dataset``: already loaded by
    ``load_dataset(settings.data)``, to share it between several builds."""
    keras.utils.set_random_seed(settings.seed)
    if settings.trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy()
    strategy = set_up_devices(settings.trainer.strategy, requested_precision(settings.trainer),
                              settings.trainer.cpu_threads, settings.trainer.gpu)
    precision = keras.mixed_precision.global_policy().name  # trainer.precision, resolved
    dataset = dataset or load_dataset(settings.data)
    pipelines = ImagePipelines(dataset, settings.data, settings.seed)

    with strategy.scope():
        model = build_model(settings.model, settings.latent_dim, settings.seed)
        optimizer = build_optimizer(settings.optimizer, precision,
                                    total_steps=settings.trainer.epochs * pipelines.steps_per_epoch)
        # Built now, not at the first step, so a checkpoint restores into existing variables.
        optimizer.build(model.trainable_variables)
    # The model's layers keep the run's policy; layers made later (pictures, exports, other runs in
    # this process) start from the process's own again.
    keras.mixed_precision.set_dtype_policy(previous_policy)
    return RunParts(strategy, dataset, pipelines, model, optimizer, precision)


def train(settings: Config, run_dir: Path, config_yaml: str = "") -> dict:
    """Train (or resume) in ``run_dir`` and return the flat results also written to results.json.

    ``results["finished"]`` is False when a signal stopped the run early; a non-finite loss raises
    TrainingError after writing results.json with the error.
    """
    parts = build_parts(settings)
    strategy, dataset, pipelines = parts.strategy, parts.dataset, parts.pipelines
    model, optimizer = parts.model, parts.optimizer

    # Only the chief of a multi-worker run writes run_dir; the other workers, a scratch folder.
    chief = is_chief(strategy)
    run_dir = output_dir(Path(run_dir), chief)  # creates the chief's run folder
    writers = TensorBoardWriters(run_dir)
    pictures = TensorBoardPictures.for_run(model, pipelines.test(), dataset.test.labels, dataset.class_names,
                                           settings.evaluation, writers, settings.trainer.epochs, settings.seed)
    evaluator = Evaluator(model, strategy, settings.trainer.jit_compile, settings.seed, settings.evaluation.metrics)
    trainer = Trainer(model, optimizer, strategy, pipelines, settings.trainer, writers,
                      checkpoint_dir=run_dir / "checkpoints", checkpoint_signature=checkpoint_signature(settings),
                      epoch_end_hooks=[pictures], evaluator=evaluator)
    resumed = trainer.restore_latest(settings.optimizer)
    check_same_step(strategy, trainer.global_step)
    record_session(run_dir)

    parameters = model.parameter_counts()
    if not resumed:
        writers.text("config", f"```yaml\n{config_yaml}\n```")
        writers.text("model", _model_description(model))
        writers.scalars("train", 0, {f"parameters/{part}": count for part, count in parameters.items()})
    log.info("Model %s: %s parameters; %d training and %d test images; %d steps per epoch.",
             settings.model.name, parameters, pipelines.train_size, pipelines.test_size,
             pipelines.steps_per_epoch)

    results = {
        "model": settings.model.name,
        "data": settings.data.name,
        "latent_dim": settings.latent_dim,
        "optimizer": settings.optimizer.name,
        "learning_rate": settings.optimizer.learning_rate,
        "batch_size": settings.data.batch_size,
        "seed": settings.seed,
        "parameters": sum(parameters.values()),
        "precision": parts.precision,
    }
    try:
        history = trainer.fit()
    except TrainingError as err:
        _write_results(run_dir, {**results, "finished": False, "error": str(err),
                                 "epochs": int(trainer.epoch.numpy()), "steps": trainer.step})
        raise

    previous = read_json_object(run_dir / RESULTS_FILE) or {}
    last = history.epochs[-1] if history.epochs else None
    # A resumed run that had nothing left to train still reports its model's test figures.
    test_metrics = last.test if last else trainer.evaluator.evaluate(pipelines.test())
    results.update({
        "finished": history.stopped_by is None,
        "epochs": int(trainer.epoch.numpy()),
        "steps": trainer.step,
        "train_loss": last.train["loss"] if last else previous.get("train_loss"),
        "images_per_second": last.images_per_second if last else previous.get("images_per_second"),
        **{f"test_{name}": value for name, value in test_metrics.items()},
    })
    if history.stopped_by:
        results["stopped_by"] = history.stopped_by
    else:  # a stopped run skips these, to exit within a scheduler's grace period
        results.update(likelihood_figures(model, pipelines.test(), settings.evaluation.iw_samples, settings.seed))
        export_models(model, run_dir / EXPORT_DIR)
    _write_results(run_dir, results)
    writers.flush()
    return results


def _write_results(run_dir: Path, results: dict) -> None:
    write_atomically(run_dir / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
