"""Test-set figures of a model: the losses in nats per image (under any distribution strategy),
figures some recipes define besides them, the importance-weighted likelihood bound of VAEs,
and per-image scores and codes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from vae_train.config import ExtraMetric
from vae_train.models import Autoencoder, VariationalAutoencoder
from vae_train.training.devices import distribute_input

# The per-example terms every model reports; the step functions return their sums, in this order.
TERMS = ("loss", "reconstruction", "kl")
SUMS_SIZE = len(TERMS) + 1  # what summed_terms returns: the terms' sums and the number of images
# Reported when the optimizer minimizes something other than ``loss`` (a recipe's own definition).
RECIPE_LOSS = "recipe_loss"
# Images decoded per call of the likelihood estimate, whatever the number of samples and the batch:
# bounds its memory (a 28x28 decoder's activations are ~50 kB per image).
IW_DECODES_PER_CALL = 2048


def rounded_accuracy(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per image, the share of pixels where round(image) == round(reconstruction), as in Keras'
    binary accuracy of rounded targets (recipe B)."""
    agree = tf.equal(tf.round(images), tf.round(tf.sigmoid(logits)))
    return tf.reduce_mean(tf.cast(agree, tf.float32), axis=[1, 2, 3])


# Per-image figures of (images, reconstruction logits from the posterior mean), by config name.
EXTRA_METRICS: dict[ExtraMetric, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    ExtraMetric.rounded_accuracy: rounded_accuracy,
}


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
                 seed: int = 0, metrics: Sequence[ExtraMetric] = ()):
        self.model = model
        self.strategy = strategy
        self.seed = seed
        self.metrics = list(metrics)
        self.extra_names = ([] if model.objective_is_loss else [RECIPE_LOSS]) + [m.value for m in self.metrics]
        with strategy.scope():
            self.noise = tf.random.Generator.from_seed(seed)
        self._replica_step = tf.function(self._sums, jit_compile=jit_compile)
        # The last test batch is usually smaller: one more trace, not one per shape seen.
        self._step = tf.function(self._distributed_sums, reduce_retracing=True)

    def _sums(self, images: tf.Tensor) -> tf.Tensor:
        """The sums of :func:`summed_terms`, then the sums of the extra figures."""
        terms = self.model.loss_terms(images, training=False, noise=self.noise)
        extras = [] if self.model.objective_is_loss else [terms["objective"]]
        if self.metrics:
            logits = self.model(images)
            extras += [EXTRA_METRICS[metric](images, logits) for metric in self.metrics]
        return tf.concat([summed_terms(terms), [tf.reduce_sum(extra) for extra in extras]], axis=0)

    def _distributed_sums(self, images) -> tf.Tensor:
        per_replica = self.strategy.run(self._replica_step, args=(images,))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        self.noise.reset_from_seed(self.seed)
        sums = np.zeros(SUMS_SIZE + len(self.extra_names))
        for images in distribute_input(self.strategy, dataset):
            sums += self._step(images).numpy()
        terms, extras = sums[:SUMS_SIZE], sums[SUMS_SIZE:]
        figures = metrics_from_sums(terms, self.model.variational)
        figures.update({name: float(total / terms[-1]) for name, total in zip(self.extra_names, extras, strict=True)})
        return figures


@tf.function(reduce_retracing=True)
def _chunk_logsumexp(model: VariationalAutoencoder, images: tf.Tensor, epsilon: tf.Tensor) -> tf.Tensor:
    # Module level, so one trace serves every call for the same model.
    return tf.reduce_logsumexp(model.log_importance_weights(images, epsilon), axis=0)


def importance_weighted_nll(model: VariationalAutoencoder, dataset: tf.data.Dataset, num_samples: int,
                            seed: int = 0) -> float:
    """The importance-weighted estimate of -log p(x) with ``num_samples`` posterior samples per image
    (the IWAE bound), in nats per image, averaged over ``dataset``.

    Its expectation is -ELBO for one sample and decreases towards -log p(x) as the number of samples
    grows. The noise of all samples is drawn at once (it is small) and decoded in chunks, so memory
    does not grow with the number of samples and the figure does not depend on the chunk size.
    """
    noise = tf.random.Generator.from_seed(seed)
    total, images_seen = 0.0, 0
    for images in dataset:
        batch = int(images.shape[0])
        epsilon = noise.normal([num_samples, batch, model.latent_dim])
        chunk = max(1, IW_DECODES_PER_CALL // batch)
        chunks = [_chunk_logsumexp(model, images, epsilon[start:start + chunk])
                  for start in range(0, num_samples, chunk)]
        total += float(tf.reduce_sum(tf.reduce_logsumexp(tf.stack(chunks), axis=0))) - batch * math.log(num_samples)
        images_seen += batch
    return -total / images_seen


def likelihood_figures(model: Autoencoder, dataset: tf.data.Dataset, num_samples: int, seed: int) -> dict:
    """``test_nll_iw`` and ``iw_samples`` for a VAE with a likelihood, when samples are asked for."""
    if not (model.variational and model.has_likelihood and num_samples > 0):
        return {}
    return {"test_nll_iw": importance_weighted_nll(model, dataset, num_samples, seed), "iw_samples": num_samples}


def reconstruction_errors(model: Autoencoder, dataset: tf.data.Dataset) -> np.ndarray:
    """Per image, the reconstruction loss (nats) of its decoded posterior mean.

    Images unlike the training data reconstruct badly, so this serves as an anomaly score.
    """
    return np.concatenate([model.reconstruction_loss(images, model(images)).numpy() for images in dataset])


def encode(model: Autoencoder, dataset: tf.data.Dataset) -> np.ndarray:
    """The codes of ``dataset`` (a VAE's posterior means), shaped (images, latent_dim)."""
    return np.concatenate([model.posterior(images).mean.numpy() for images in dataset])
