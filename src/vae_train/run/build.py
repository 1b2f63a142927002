"""A run's parts, built the one way every caller builds them: ``vae-train`` (:mod:`.train`), ``make
bench`` and the tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from vae_train.config import Binarize, Config, DecoderDistribution
from vae_train.data.corruption import corruption_of
from vae_train.data.pipeline import ImageDataset, ImagePipelines, load_dataset
from vae_train.data.sources import ReadContext
from vae_train.evaluation.figures import Evaluator
from vae_train.evaluation.pictures import Pictures
from vae_train.models import Autoencoder, build_model
from vae_train.run.epoch_pictures import TensorBoardPictures
from vae_train.run.layout import CHECKPOINTS_DIR, checkpoint_signature, scalar_tag, tensorboard_dir
from vae_train.runtime import stopwatch
from vae_train.runtime.devices import WorkerOptions, set_up_devices, trains_on_host_cpu
from vae_train.runtime.precision import ComputePrecision
from vae_train.runtime.workers import is_chief, output_dir
from vae_train.training.loop import Trainer
from vae_train.training.optimizers import build_optimizer
from vae_train.training.summaries import TensorBoardWriters

log = logging.getLogger(__name__)


@dataclass
class RunParts:
    strategy: tf.distribute.Strategy
    dataset: ImageDataset
    pipelines: ImagePipelines
    model: Autoencoder
    optimizer: keras.optimizers.Optimizer
    precision: ComputePrecision  # trainer.precision, resolved for this machine


@dataclass
class AssembledRun:
    parts: RunParts
    trainer: Trainer
    run_dir: Path  # where this process writes: the run folder, or a scratch folder for a non-chief worker
    writers: TensorBoardWriters


def build_parts(settings: Config, dataset: ImageDataset | None = None, run_dir: Path | None = None) -> RunParts:
    """Seeds, devices and compute precision, data pipelines, model and optimizer. ``dataset``: already
    loaded by ``load_dataset(settings.data)``, to share it between several builds; ``run_dir``: where a
    folder's split is recorded (by the chief alone)."""
    keras.utils.set_random_seed(settings.seed)
    if settings.trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    machine = settings.trainer
    with stopwatch.timed("devices"):
        devices = set_up_devices(machine.strategy, machine.precision, machine.cpu_threads, machine.gpu,
                                 WorkerOptions(machine.worker_port, machine.worker_timeout_seconds))
    context = ReadContext(seed=settings.seed, run_dir=run_dir, progress=settings.trainer.progress_bar)
    with stopwatch.timed("data"):
        dataset = dataset or load_dataset(settings.data, context)
    if (settings.model.decoder_distribution is DecoderDistribution.continuous_bernoulli
            and settings.data.binarize is not Binarize.none):
        log.info("model.decoder_distribution=continuous_bernoulli on binarized images (data.binarize=%s): "
                 "allowed, but the continuous Bernoulli is meant for grey levels.", settings.data.binarize.value)
    pipelines = ImagePipelines(dataset, settings.data, settings.seed)
    with devices.strategy.scope(), stopwatch.timed("model"):
        model = build_model(settings.model, settings.latent_dim, dataset.image_shape, settings.seed,
                            devices.precision)
        if model.variational:
            model.samples_per_decoder_pass = samples_per_decoder_pass(settings.model, devices.strategy)
        optimizer = build_optimizer(settings.optimizer, devices.precision,
                                    total_steps=settings.trainer.epochs * pipelines.steps_per_epoch)
        # Built now, not at the first step, so a checkpoint restores into existing variables.
        optimizer.build(model.trainable_variables)
    return RunParts(devices.strategy, dataset, pipelines, model, optimizer, devices.precision)


def samples_per_decoder_pass(model_config, strategy: tf.distribute.Strategy) -> int | None:
    """The importance-weighted objective's samples decoded a pass in training (``model.train_samples`` > 1).

    On the host CPU, one: small passes keep the decoder's activations in cache, and the conv IWAE (K = 5)
    trained on 1.1x the images a second of one pass over all K (``make bench``'s iwae_passes section). A
    GPU keeps one large pass, and so does a model with batch normalization, whose statistics in training
    are the pass's."""
    if trains_on_host_cpu(strategy) and not getattr(model_config, "batch_norm", False):
        return 1
    return None


def build_trainer(settings: Config, run_dir: Path, dataset: ImageDataset | None = None) -> AssembledRun:
    """The run's parts, its test figures and pictures, and the Trainer that trains them into ``run_dir``.
    Only the chief of a multi-worker run writes ``run_dir`` (created here); the other workers, a
    scratch folder."""
    parts = build_parts(settings, dataset, Path(run_dir))
    with stopwatch.timed("evaluation_set_up"):
        return _assemble(settings, parts, run_dir)


def _assemble(settings: Config, parts: RunParts, run_dir: Path) -> AssembledRun:
    """The writers, test figures, pictures and Trainer around ``parts``."""
    run_dir = output_dir(Path(run_dir), is_chief(parts.strategy), CHECKPOINTS_DIR)
    writers = TensorBoardWriters(tensorboard_dir(run_dir), tag_of=scalar_tag)
    corrupt = corruption_of(settings.corruption)
    pictures = Pictures.from_dataset(parts.model, parts.pipelines.test(), parts.dataset.test.labels,
                                     parts.dataset.class_names, settings.evaluation, settings.seed, corrupt)
    pictures_hook = TensorBoardPictures.for_run(pictures, writers, settings.trainer.epochs, settings.seed)
    evaluator = Evaluator(parts.model, parts.strategy, settings.trainer.jit_compile, settings.seed,
                          settings.evaluation.metrics, corrupt, image_quality=settings.data.binarize is Binarize.none)
    trainer = Trainer(parts.model, parts.optimizer, parts.strategy, parts.pipelines, settings.trainer, writers,
                      checkpoint_dir=run_dir / CHECKPOINTS_DIR, checkpoint_signature=checkpoint_signature(settings),
                      evaluator=evaluator, epoch_end_hooks=[pictures_hook], corrupt=corrupt,
                      test_every_n_epochs=settings.evaluation.test_every_n_epochs)
    return AssembledRun(parts, trainer, run_dir, writers)
