"""One training run, from typed settings to a run folder holding checkpoints, TensorBoard
files and ``results.json``. The command line is a thin layer over :func:`train`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import tensorflow as tf

from vae_train.config import Config
from vae_train.data.pipeline import ImagePipelines, load_dataset
from vae_train.models import build_model
from vae_train.training.checkpoints import RunCheckpoints
from vae_train.training.devices import set_up_devices
from vae_train.training.loop import Trainer
from vae_train.training.optimizers import build_optimizer
from vae_train.training.summaries import TensorBoardWriters

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


def _checkpoint_signature(settings: Config) -> dict:
    """What must match for a checkpoint to be restorable into this run's model."""
    return {"model": settings.model.name, "latent_dim": settings.latent_dim}


def _model_description(model) -> str:
    lines: list[str] = []
    for part in (model.encoder, model.decoder):
        part.summary(print_fn=lambda line, *_: lines.append(line))
    return "```\n" + "\n".join(lines) + "\n```"


def train(settings: Config, run_dir: Path, config_yaml: str = "") -> dict:
    """Train (or resume) in ``run_dir`` and return the flat results also written to results.json."""
    run_dir = Path(run_dir)
    keras.utils.set_random_seed(settings.seed)
    strategy = set_up_devices(settings.trainer.strategy, settings.trainer.mixed_precision)
    dataset = load_dataset(settings.data)
    pipelines = ImagePipelines(dataset, settings.data, settings.seed)

    with strategy.scope():
        model = build_model(settings.model, settings.latent_dim, settings.seed)
        optimizer = build_optimizer(settings.optimizer, settings.trainer.mixed_precision)
        # Built now, not at the first step, so a checkpoint restores into existing variables.
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")

    checkpoints = RunCheckpoints(run_dir / "checkpoints", _checkpoint_signature(settings),
                                 settings.trainer.checkpoints_to_keep,
                                 model=model, optimizer=optimizer, epoch=epoch, noise=model.noise)
    resumed = checkpoints.restore_latest()

    writers = TensorBoardWriters(run_dir)
    parameters = model.parameter_counts()
    if not resumed:
        writers.text("config", f"```yaml\n{config_yaml}\n```")
        writers.text("model", _model_description(model))
        writers.scalars("train", 0, {f"parameters/{part}": count for part, count in parameters.items()})
    log.info("Model %s: %s parameters; %d training and %d test images; %d steps per epoch.",
             settings.model.name, parameters, pipelines.train_size, pipelines.test_size,
             pipelines.steps_per_epoch)

    trainer = Trainer(model, optimizer, strategy, pipelines, settings.trainer, epoch, writers, checkpoints.save)
    history = trainer.fit()
    # A resumed run that had nothing left to train still reports its model's test figures.
    test_metrics = history.epochs[-1].test if history.epochs else trainer.evaluator.evaluate(pipelines.test())

    results = {
        "model": settings.model.name,
        "data": settings.data.name,
        "latent_dim": settings.latent_dim,
        "optimizer": settings.optimizer.name,
        "learning_rate": settings.optimizer.learning_rate,
        "batch_size": settings.data.batch_size,
        "seed": settings.seed,
        "epochs": int(epoch.numpy()),
        "steps": trainer.step,
        "parameters": sum(parameters.values()),
        "train_loss": history.epochs[-1].train["loss"] if history.epochs else None,
        "images_per_second": history.epochs[-1].images_per_second if history.epochs else None,
        **{f"test_{name}": value for name, value in test_metrics.items()},
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    writers.flush()
    return results
