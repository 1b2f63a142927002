"""Test-set metrics of a model, in nats per image, under any distribution strategy."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_train.models import Autoencoder

# The per-example terms every model reports; the step functions return their sums, in this order.
TERMS = ("loss", "reconstruction", "kl")


def summed_terms(terms: dict[str, tf.Tensor]) -> tf.Tensor:
    """Sums over the batch of each term, plus the batch size, as one vector (cheap to all-reduce)."""
    count = tf.cast(tf.shape(terms["loss"])[0], tf.float32)
    return tf.stack([tf.reduce_sum(terms[name]) for name in TERMS] + [count])


def metrics_from_sums(sums: np.ndarray, variational: bool) -> dict[str, float]:
    """Means per image from the vector :func:`summed_terms` returns, summed over batches."""
    means = {name: float(total / sums[-1]) for name, total in zip(TERMS, sums[:-1], strict=True)}
    if variational:
        means["elbo"] = -(means["reconstruction"] + means["kl"])
    else:
        del means["kl"]
    return means


class Evaluator:
    """Test-set figures as a deterministic function of the weights.

    A VAE's figures depend on the posterior samples drawn; drawing them from a stream reset to
    the same seed at every evaluation makes epochs comparable and re-evaluation reproducible.
    """

    def __init__(self, model: Autoencoder, strategy: tf.distribute.Strategy, jit_compile: bool = False,
                 seed: int = 0):
        self.model = model
        self.strategy = strategy
        self.seed = seed
        with strategy.scope():
            self.noise = tf.random.Generator.from_seed(seed)
        self._replica_step = tf.function(self._sums, jit_compile=jit_compile)
        # The last test batch is usually smaller: one more trace, not one per shape seen.
        self._step = tf.function(self._distributed_sums, reduce_retracing=True)

    def _sums(self, images: tf.Tensor) -> tf.Tensor:
        return summed_terms(self.model.loss_terms(images, training=False, noise=self.noise))

    def _distributed_sums(self, images) -> tf.Tensor:
        per_replica = self.strategy.run(self._replica_step, args=(images,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        self.noise.reset_from_seed(self.seed)
        sums = np.zeros(len(TERMS) + 1)
        for images in self.strategy.experimental_distribute_dataset(dataset):
            sums += self._step(images).numpy()
        return metrics_from_sums(sums, self.model.variational)
