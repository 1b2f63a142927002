"""The training loop: ``tf.function`` steps under a distribution strategy, epoch by epoch.

Each call into TensorFlow runs up to ``trainer.steps_per_execution`` steps in a graph-side loop,
so Python's per-step cost is paid once per call. Between calls the loop checks the loss is
finite, honours a stop request, updates the progress bar, writes TensorBoard scalars and saves
checkpoints.

Everything a resumed run needs to continue exactly where the last one stopped is in the
checkpoint: weights, optimizer state and step, epoch, the noise generator and the running sums
of the current epoch's metrics. The data order is a function of (seed, epoch), so a run resumed
mid-epoch skips the batches it already trained on.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from vae_train.config import OnNonFinite, Schedule, TrainerConfig
from vae_train.data.corruption import Corrupt
from vae_train.data.pipeline import ImagePipelines
from vae_train.errors import CheckpointError, ConfigError, TrainingError
from vae_train.models import Autoencoder
from vae_train.models.terms import metrics_from_sums, summed_terms, sums_size
from vae_train.runtime import stopwatch
from vae_train.runtime.devices import distribute_input
from vae_train.runtime.functions import run_function
from vae_train.runtime.host_cpu import seconds_since_job_start
from vae_train.runtime.storage import writing
from vae_train.training.checkpoints import RunCheckpoints, model_trackables
from vae_train.training.interrupts import StopRequest
from vae_train.training.summaries import TensorBoardWriters

log = logging.getLogger(__name__)

# The corruption's stream is seeded apart from the model's noise (seeded by the run's seed itself).
CORRUPTION_SEED_OFFSET = 7919


class TestFigures(Protocol):
    """What gives the test figures after each epoch (vae_train.evaluation.figures.Evaluator)."""

    # The codes (posterior means) of the images of the last evaluation, in order, if it keeps them.
    test_codes: np.ndarray | None

    def evaluate(self, test) -> dict[str, float]: ...


@dataclass
class EpochRecord:
    epoch: int
    step: int
    train: dict[str, float]
    test: dict[str, float]  # empty in an epoch without test figures (evaluation.test_every_n_epochs)
    images_per_second: float
    epoch_seconds: float  # training steps only
    # The epoch's wall time but its steps: its pipeline, test figures, checkpoint and hooks; set after the hooks.
    between_epochs_seconds: float = 0.0
    test_codes: np.ndarray | None = None  # the test images' codes, in order, as the test figures found them


@dataclass
class History:
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_by: str | None = None  # the signal's name when a stop was requested
    startup_seconds: float | None = None  # job start to the end of this session's first training step

    def mean(self, key: str) -> float | None:
        values = [getattr(record, key) for record in self.epochs]
        return sum(values) / len(values) if values else None


class Trainer:
    def __init__(
        self,
        model: Autoencoder,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        pipelines: ImagePipelines,
        config: TrainerConfig,
        writers: TensorBoardWriters,
        checkpoint_dir: Path,
        checkpoint_signature: dict,
        evaluator: TestFigures,
        epoch_end_hooks: Sequence[Callable[[EpochRecord], None]] = (),
        stop: StopRequest | None = None,
        corrupt: Corrupt | None = None,
        test_every_n_epochs: int = 1,
    ):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.pipelines = pipelines
        self.config = config
        self.writers = writers
        # Run after each epoch's checkpoint, e.g. to log pictures; they must not change the weights.
        self.epoch_end_hooks = list(epoch_end_hooks)
        self.stop = stop or StopRequest()
        if config.on_nan is OnNonFinite.skip_batch and strategy.num_replicas_in_sync > 1:
            raise ConfigError(
                "trainer.on_nan=skip_batch works on one device only: Keras cannot skip an update "
                f"conditionally across {strategy.num_replicas_in_sync} replicas. Use trainer.on_nan=stop, "
                "or optimizer.clipnorm to keep gradients finite."
            )
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Batches trained on, the position in the data. Not optimizer.iterations: a loss-scaling
        # optimizer leaves out the steps it skips on overflow.
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # Row 0: sums over the current epoch so far; row 1: since the last TensorBoard point.
        self.sums_size = sums_size(model.reported_terms)
        self.running_sums = tf.Variable(np.zeros((2, self.sums_size)), trainable=False, name="running_sums")
        # A denoiser's training inputs: the corruption's draws come from a generator in the checkpoint
        # (only then, so the checkpoints of runs without one keep their contents).
        self.corrupt = corrupt
        corruption = {}
        if corrupt is not None:
            with strategy.scope():
                self.corruption_noise = tf.random.Generator.from_seed(pipelines.seed + CORRUPTION_SEED_OFFSET)
            corruption = {"corruption_noise": self.corruption_noise}
        self.checkpoints = RunCheckpoints(checkpoint_dir, checkpoint_signature, config.checkpoints_to_keep,
                                          **model_trackables(model), optimizer=optimizer, epoch=self.epoch,
                                          global_step=self.global_step, running_sums=self.running_sums,
                                          **corruption)
        self.evaluator = evaluator
        self.test_every_n_epochs = test_every_n_epochs
        self._replica_step = run_function(self._train_step, jit_compile=config.jit_compile)
        self._run_steps = run_function(self._distributed_steps)
        self._stepped = False  # whether this process has taken a training step
        self.startup_seconds: float | None = None  # job start to the end of the first step (Linux)
        # Called once the first compiled call has returned: work that would slow its tracing goes here.
        self.after_first_call: list[Callable[[], None]] = []

    @property
    def learning_rate(self) -> float:
        """The rate of the next step (a schedule's value at the current step)."""
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    @property
    def step(self) -> int:
        return int(self.global_step.numpy())

    def restore_latest(self, optimizer_config) -> bool:
        """Resume from the newest checkpoint, if any, at the configured learning rate."""
        restored = self.checkpoints.restore_latest()
        # Keras checkpoints a constant learning rate; a resumed run must honour a changed setting.
        # A schedule is no variable: it is rebuilt from the config and follows the step count.
        if optimizer_config.schedule is Schedule.constant:
            self.optimizer.learning_rate = optimizer_config.learning_rate
        return restored

    def _train_step(self, images: tf.Tensor, step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            inputs = None if self.corrupt is None else self.corrupt(images, self.corruption_noise)
            terms = self.model.loss_terms(images, training=True, inputs=inputs, step=step)
            # Divides by the global batch, so summing gradients over replicas gives the mean.
            loss = tf.nn.compute_average_loss(terms["objective"], global_batch_size=self.pipelines.config.batch_size)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = self._global_batch_gradients(tape.gradient(scaled_loss, variables))
        sums = summed_terms(terms, self.model.reported_terms)
        if self.config.on_nan is not OnNonFinite.skip_batch:
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return sums, tf.constant(0.0)

        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients]) & tf.math.is_finite(loss)
        # Every replica must take the same branch, or their weights drift apart.
        replicas_not_finite = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
        all_finite = replicas_not_finite == 0

        def apply() -> tf.Tensor:
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return tf.constant(0.0)

        skipped = tf.cond(all_finite, apply, lambda: tf.constant(1.0))
        # A skipped batch counts in no metric.
        return tf.where(all_finite, sums, tf.zeros_like(sums)), skipped

    def _global_batch_gradients(self, gradients: list[tf.Tensor]) -> list[tf.Tensor]:
        """With several replicas: each replica's equal share of the global batch's gradient, clipped
        as a whole.

        Keras 3 clips gradients (clipnorm), and a LossScaleOptimizer checks them for inf and NaN, on
        each replica *before* its own all-reduce sums them: clipnorm then clipped partial gradients
        (training differed from one device) and replicas could disagree on skipping a step. Handing
        it the mean, Keras's sum of the N identical shares is the whole, already clipped, gradient;
        the price is a second all-reduce per step.
        """
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            return gradients
        mean = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, gradients)
        clipnorm = getattr(getattr(self.optimizer, "inner_optimizer", self.optimizer), "clipnorm", None)
        if not clipnorm:
            return mean
        # Loss-scaled under mixed precision; a share of the clipped sum is 1/N of it.
        threshold = clipnorm * self.optimizer.scale_loss(1.0) / replicas
        return [tf.clip_by_norm(gradient, threshold) for gradient in mean]

    def _distributed_steps(self, iterator, num_steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        sums = tf.zeros(self.sums_size)
        skipped = tf.constant(0.0)
        for index in tf.range(num_steps):
            step = self.global_step + tf.cast(index, tf.int64)
            step_sums, step_skipped = self.strategy.run(self._replica_step, args=(next(iterator), step))
            sums += self.strategy.reduce(tf.distribute.ReduceOp.SUM, step_sums, axis=None)
            # Every replica reports the same flag.
            skipped += self.strategy.reduce(tf.distribute.ReduceOp.MEAN, step_skipped, axis=None)
        return sums, skipped

    def _steps_until_next_stop(self, done: int, total: int) -> int:
        """Steps to run in one call: never past the epoch's end, a TensorBoard point or a checkpoint;
        one step for the first call, which also traces, so the start-up time is measured to it."""
        if not self._stepped:
            return 1
        limits = [self.config.steps_per_execution, total - done,
                  self.config.log_every_steps - self.step % self.config.log_every_steps]
        if self.config.checkpoint_every_steps:
            limits.append(self.config.checkpoint_every_steps - self.step % self.config.checkpoint_every_steps)
        return min(limits)

    def _optimization(self) -> dict[str, float]:
        """The learning rate and, for VAEs, the KL term's weight in use at the next step."""
        values = {"learning_rate": self.learning_rate}
        if self.model.variational:
            values["kl_weight"] = float(self.model.kl_weight_at(self.step))
        return values

    def _metrics(self, sums: np.ndarray) -> dict[str, float]:
        return metrics_from_sums(sums, self.model.variational, self.model.reported_terms)

    def _check_finite(self, sums: np.ndarray) -> None:
        if not np.all(np.isfinite(sums)):
            latest = self.checkpoints.latest or "none yet: the run starts from scratch"
            raise TrainingError(
                f"The loss became non-finite (NaN or infinity) by step {self.step}; training stopped "
                f"and these weights were not saved. The last good checkpoint: {latest}. The usual "
                "cause is a learning rate too high for this model: lower optimizer.learning_rate, set "
                "optimizer.clipnorm, or set trainer.on_nan=skip_batch to skip such batches."
            )

    def _save(self, epoch_sums: np.ndarray, log_sums: np.ndarray) -> None:
        self.running_sums.assign(np.stack([epoch_sums, log_sums]))
        self.checkpoints.save(self.step)

    def _first_step_of(self, epoch: int) -> int:
        """Steps already taken in ``epoch``: non-zero only when resuming mid-epoch."""
        total = self.pipelines.steps_per_epoch
        done = self.step - epoch * total
        if not 0 <= done <= total:
            raise CheckpointError(
                f"The checkpoint is at step {self.step} of epoch {epoch + 1}, which does not fit "
                f"{total} steps per epoch: data.batch_size or the number of training examples changed "
                "since it was saved. Resume with the original values or use another run folder."
            )
        return done

    def epoch_iterator(self, dataset: tf.data.Dataset):
        """The iterator the steps read (see :func:`~vae_train.training.devices.distribute_input`)."""
        return iter(distribute_input(self.strategy, dataset))

    def run_steps(self, iterator, num_steps: int) -> tuple[np.ndarray, float]:
        """``num_steps`` training steps in one call of the compiled loop, counted and checked for a
        non-finite loss; the sums of the loss terms and the number of skipped batches. The epoch loop
        calls it between its stops, and ``make bench`` times it."""
        started = time.perf_counter()
        sums, skipped = (value.numpy() for value in self._run_steps(iterator, tf.constant(num_steps)))
        if not self._stepped:
            # Tracing the compiled steps, and these first steps: make bench tells them apart.
            stopwatch.add("first_call_of_the_steps", time.perf_counter() - started)
            self._stepped = True
            self.startup_seconds = seconds_since_job_start()
            if self.startup_seconds is not None:
                log.info("First training step %.1f s after the job started.", self.startup_seconds)
            for call in self.after_first_call:
                call()
        self.global_step.assign_add(num_steps)
        self._check_finite(sums)
        return sums, skipped

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float, float] | None:
        """Train one epoch: its figures, images per second and seconds; None when a stop was requested
        before its end."""
        total = self.pipelines.steps_per_epoch
        done = self._first_step_of(epoch)
        epoch_sums, log_sums = (self.running_sums.numpy() if done else np.zeros((2, self.sums_size)))
        dataset = self.pipelines.train(epoch).skip(done)
        iterator = self.epoch_iterator(dataset)
        interactive = self.config.progress_bar and sys.stdout.isatty()
        progress = keras.utils.Progbar(total, stateful_metrics=["loss"]) if interactive else None
        images_before = epoch_sums[-1]
        start = time.perf_counter()
        while done < total:
            if self.stop.requested:
                self._save(epoch_sums, log_sums)
                return None
            num_steps = self._steps_until_next_stop(done, total)
            sums, skipped = self.run_steps(iterator, num_steps)
            if skipped:
                log.warning("Skipped %d batch(es) with a non-finite loss or gradient before step %d.",
                            int(skipped), self.step)
            done += num_steps
            epoch_sums += sums
            log_sums += sums
            if self.step % self.config.log_every_steps == 0 or done == total:
                self.writers.scalars("train", self.step, {**self._metrics(log_sums), **self._optimization()})
                log_sums[:] = 0
            if self.config.checkpoint_every_steps and self.step % self.config.checkpoint_every_steps == 0 \
                    and done < total:
                self._save(epoch_sums, log_sums)
            if progress is not None:
                progress.update(done, values=[("loss", epoch_sums[0] / epoch_sums[-1])])
        seconds = time.perf_counter() - start
        images_per_second = (epoch_sums[-1] - images_before) / seconds
        return self._metrics(epoch_sums), images_per_second, seconds

    def fit(self) -> History:
        history = History()
        self.checkpoints.warn_if_short_of_space()
        with self.stop.installed():
            for epoch in range(int(self.epoch.numpy()), self.config.epochs):
                epoch_started = time.perf_counter()
                trained = self._train_epoch(epoch)
                if trained is None:
                    break
                train_metrics, images_per_second, epoch_seconds = trained
                test_metrics, test_codes = {}, None
                if (epoch + 1) % self.test_every_n_epochs == 0 or epoch + 1 == self.config.epochs:
                    with stopwatch.timed("test_figures"):
                        test_metrics = self.evaluator.evaluate(self.pipelines.test_batches())
                    test_codes = self.evaluator.test_codes
                    self.writers.scalars("test", self.step, test_metrics)
                self.epoch.assign(epoch + 1)
                with stopwatch.timed("checkpoints"):
                    self._save(np.zeros(self.sums_size), np.zeros(self.sums_size))
                record = EpochRecord(epoch + 1, self.step, train_metrics, test_metrics, images_per_second,
                                     epoch_seconds, test_codes=test_codes)
                history.epochs.append(record)
                # The hooks write pictures, and the projector's files, into the run folder.
                with writing("the epoch's pictures", self.writers.root), stopwatch.timed("epoch_pictures"):
                    for hook in self.epoch_end_hooks:
                        hook(record)
                # Everything of the epoch but its steps: the pipeline's and iterator's making and deleting too.
                record.between_epochs_seconds = time.perf_counter() - epoch_started - epoch_seconds
                self.writers.scalars("train", self.step, {
                    "images_per_second": images_per_second, "epoch_seconds": epoch_seconds,
                    "between_epochs_seconds": record.between_epochs_seconds})
                self.writers.flush()
                log.info("epoch %d/%d  step %d  train %s  test %s  %.0f images/s, %.1f s + %.1f s after the epoch",
                         epoch + 1, self.config.epochs, self.step, _format(train_metrics),
                         _format(test_metrics) or "not this epoch",
                         images_per_second, epoch_seconds, record.between_epochs_seconds)
                if self.stop.requested:
                    break
        history.startup_seconds = self.startup_seconds
        if self.stop.requested:
            history.stopped_by = self.stop.signal_name
            log.warning("Stopped by %s at step %d; the checkpoint is saved and the same command resumes.",
                        history.stopped_by, self.step)
        return history


def _format(metrics: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.3f}" for name, value in metrics.items())
