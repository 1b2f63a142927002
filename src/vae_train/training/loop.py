"""The training loop: ``tf.function`` steps under a distribution strategy, epoch by epoch.

Each call into TensorFlow runs up to ``trainer.steps_per_execution`` steps in a graph-side loop,
so Python's per-step cost is paid once per call. Between calls the loop checks the loss is
finite, updates the progress bar and writes TensorBoard scalars.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from vae_train.config import TrainerConfig
from vae_train.data.pipeline import ImagePipelines
from vae_train.errors import TrainingError
from vae_train.evaluation import TERMS, Evaluator, metrics_from_sums, summed_terms
from vae_train.models import Autoencoder
from vae_train.training.summaries import TensorBoardWriters

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    step: int
    train: dict[str, float]
    test: dict[str, float]
    images_per_second: float


@dataclass
class History:
    epochs: list[EpochRecord] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        model: Autoencoder,
        optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy,
        pipelines: ImagePipelines,
        config: TrainerConfig,
        epoch: tf.Variable,
        writers: TensorBoardWriters,
        save_checkpoint: Callable[[int], str],
        epoch_end_hooks: Sequence[Callable[[EpochRecord], None]] = (),
    ):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.pipelines = pipelines
        self.config = config
        self.epoch = epoch
        self.writers = writers
        self.save_checkpoint = save_checkpoint
        # Run after each epoch's checkpoint, e.g. to log pictures; they must not change the weights.
        self.epoch_end_hooks = list(epoch_end_hooks)
        self.evaluator = Evaluator(model, strategy, config.jit_compile, seed=pipelines.seed)
        self._replica_step = tf.function(self._train_step, jit_compile=config.jit_compile)
        self._run_steps = tf.function(self._distributed_steps)

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def _train_step(self, images: tf.Tensor) -> tf.Tensor:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            terms = self.model.loss_terms(images, training=True)
            # Divides by the global batch, so summing gradients over replicas gives the mean.
            loss = tf.nn.compute_average_loss(terms["loss"], global_batch_size=self.pipelines.config.batch_size)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return summed_terms(terms)

    def _distributed_steps(self, iterator, num_steps: tf.Tensor) -> tf.Tensor:
        sums = tf.zeros(len(TERMS) + 1)
        for _ in tf.range(num_steps):
            per_replica = self.strategy.run(self._replica_step, args=(next(iterator),))
            sums += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return sums

    def _steps_until_next_stop(self, done: int, total: int) -> int:
        """Steps to run in one call: never past the epoch's end or the next TensorBoard point."""
        until_log = self.config.log_every_steps - self.step % self.config.log_every_steps
        return min(self.config.steps_per_execution, total - done, until_log)

    def _check_finite(self, sums: np.ndarray) -> None:
        if not np.all(np.isfinite(sums)):
            raise TrainingError(
                f"The loss became non-finite (NaN or infinity) by step {self.step}; training stopped "
                "and these weights were not saved. The latest checkpoint holds the last good "
                "weights. The usual cause is a learning rate too high for this model: lower "
                "optimizer.learning_rate or set optimizer.clipnorm."
            )

    def _train_epoch(self, epoch: int) -> tuple[dict[str, float], float]:
        total = self.pipelines.steps_per_epoch
        done = self.step - epoch * total  # > 0 only when resuming inside this epoch
        dataset = self.pipelines.train(epoch).skip(done)
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        interactive = self.config.progress_bar and sys.stdout.isatty()
        progress = keras.utils.Progbar(total, stateful_metrics=["loss"]) if interactive else None
        epoch_sums = np.zeros(len(TERMS) + 1)
        log_sums = np.zeros(len(TERMS) + 1)
        start = time.perf_counter()
        while done < total:
            num_steps = self._steps_until_next_stop(done, total)
            sums = self._run_steps(iterator, tf.constant(num_steps)).numpy()
            self._check_finite(sums)
            done += num_steps
            epoch_sums += sums
            log_sums += sums
            if self.step % self.config.log_every_steps == 0 or done == total:
                self.writers.scalars("train", self.step, metrics_from_sums(log_sums, self.model.variational))
                log_sums[:] = 0
            if progress is not None:
                progress.update(done, values=[("loss", epoch_sums[0] / epoch_sums[-1])])
        images_per_second = epoch_sums[-1] / (time.perf_counter() - start)
        return metrics_from_sums(epoch_sums, self.model.variational), images_per_second

    def fit(self) -> History:
        history = History()
        first_epoch = int(self.epoch.numpy())
        for epoch in range(first_epoch, self.config.epochs):
            train_metrics, images_per_second = self._train_epoch(epoch)
            test_metrics = self.evaluator.evaluate(self.pipelines.test())
            self.epoch.assign(epoch + 1)
            self.writers.scalars("train", self.step, {
                "learning_rate": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
                "images_per_second": images_per_second,
                "epoch": epoch + 1,
            })
            self.writers.scalars("test", self.step, test_metrics)
            self.writers.flush()
            self.save_checkpoint(self.step)
            record = EpochRecord(epoch + 1, self.step, train_metrics, test_metrics, images_per_second)
            history.epochs.append(record)
            for hook in self.epoch_end_hooks:
                hook(record)
            log.info("epoch %d/%d  step %d  train %s  test %s  %.0f images/s", epoch + 1, self.config.epochs,
                     self.step, _format(train_metrics), _format(test_metrics), images_per_second)
        return history


def _format(metrics: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.3f}" for name, value in metrics.items())
