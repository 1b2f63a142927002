"""The importance-weighted (IWAE) bound on a VAE's test log-likelihood (Burda et al., 2016)."""

from __future__ import annotations

import tensorflow as tf

from vae_train.models import Autoencoder, VariationalAutoencoder
from vae_train.runtime.functions import run_function

# Images decoded at once by the likelihood estimate, whatever the number of samples and the batch:
# bounds its memory (a 28x28 decoder's activations are ~50 kB per image).
IW_DECODES_PER_CALL = 2048


@run_function(reduce_retracing=True)
def _summed_log_mean_weights(model: VariationalAutoencoder, dataset: tf.data.Dataset, noise: tf.random.Generator,
                             num_samples: tf.Tensor, decodes_per_chunk: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Over ``dataset``: the sum of each image's log-mean-exp of ``num_samples`` importance weights, and
    the number of images. Module level: one trace per model serves every dataset and sample count."""
    total = tf.constant(0.0, tf.float64)
    count = tf.constant(0, tf.int64)
    for images in dataset:
        batch = tf.shape(images)[0]
        # All of a batch's noise at once, in the order the bound has always drawn it.
        epsilon = noise.normal([num_samples, batch, model.latent_dim])
        posterior = model.posterior(images)  # the encoder once per image, whatever the chunks
        chunk = tf.maximum(1, decodes_per_chunk // batch)
        log_sum = tf.fill([batch], -float("inf"))
        for start in tf.range(0, num_samples, chunk):
            weights = model.log_importance_weights(images, epsilon[start:start + chunk], posterior)
            log_sum = tf.reduce_logsumexp(tf.stack([log_sum, tf.reduce_logsumexp(weights, axis=0)]), axis=0)
        log_mean = log_sum - tf.math.log(tf.cast(num_samples, tf.float32))
        total += tf.reduce_sum(tf.cast(log_mean, tf.float64))
        count += tf.cast(batch, tf.int64)
    return total, count


def importance_weighted_nll(model: VariationalAutoencoder, dataset: tf.data.Dataset, num_samples: int,
                            seed: int = 0, decodes_per_chunk: int = IW_DECODES_PER_CALL) -> float:
    """The importance-weighted estimate of -log p(x) with ``num_samples`` posterior samples per image
    (the IWAE bound), in nats per image, averaged over ``dataset``.

    Its expectation is -ELBO for one sample and decreases towards -log p(x) as the number of samples
    grows. The samples are decoded in chunks of about ``decodes_per_chunk`` images, so memory does not
    grow with their number, and the figure does not depend on the chunk size. The decoder computes in
    the model's precision; the weights and their log-sum-exp are float32.
    """
    total, count = _summed_log_mean_weights(model, dataset, tf.random.Generator.from_seed(seed),
                                            tf.constant(num_samples), tf.constant(decodes_per_chunk))
    return -float(total) / int(count)


def likelihood_figures(model: Autoencoder, dataset: tf.data.Dataset, num_samples: int, seed: int) -> dict:
    """``test_nll_iw`` and ``iw_samples`` for a VAE with a likelihood, when samples are asked for."""
    if not (model.variational and model.has_likelihood and num_samples > 0):
        return {}
    return {"test_nll_iw": importance_weighted_nll(model, dataset, num_samples, seed), "iw_samples": num_samples}
