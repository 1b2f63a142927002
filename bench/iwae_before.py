"""The IWAE bound as vae-train computed it before it ran at training speed (0.1): a Python loop over
the test batches and over chunks of samples, each chunk one call that encoded the batch again, all
in float32. Kept for ``make bench``, which checks that today's bound gives the same figure on the
same weights and noise, and times the two."""

from __future__ import annotations

import math

import tensorflow as tf

DECODES_PER_CALL = 2048


@tf.function(reduce_retracing=True)
def _chunk_logsumexp(model, images: tf.Tensor, epsilon: tf.Tensor) -> tf.Tensor:
    return tf.reduce_logsumexp(model.log_importance_weights(images, epsilon), axis=0)


def importance_weighted_nll_before(model, dataset: tf.data.Dataset, num_samples: int, seed: int = 0) -> float:
    noise = tf.random.Generator.from_seed(seed)
    total, images_seen = 0.0, 0
    for images in dataset:
        batch = int(images.shape[0])
        epsilon = noise.normal([num_samples, batch, model.latent_dim])
        chunk = max(1, DECODES_PER_CALL // batch)
        chunks = [_chunk_logsumexp(model, images, epsilon[start:start + chunk])
                  for start in range(0, num_samples, chunk)]
        total += float(tf.reduce_sum(tf.reduce_logsumexp(tf.stack(chunks), axis=0))) - batch * math.log(num_samples)
        images_seen += batch
    return -total / images_seen
