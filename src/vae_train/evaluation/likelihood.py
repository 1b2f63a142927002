"""The importance-weighted (IWAE) bound on a VAE's test log-likelihood (Burda et al., 2016)."""

from __future__ import annotations

import math

import tensorflow as tf

from vae_train.models import Autoencoder, VariationalAutoencoder

# Images decoded per call of the likelihood estimate, whatever the number of samples and the batch:
# bounds its memory (a 28x28 decoder's activations are ~50 kB per image).
IW_DECODES_PER_CALL = 2048


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
