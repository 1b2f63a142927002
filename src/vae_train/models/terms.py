"""The per-example terms every model reports (:meth:`Autoencoder.loss_terms`), summed over batches as
one small vector and turned into means per image. The training loop and the evaluator both count
with these, so their figures are the same figures."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# The per-example terms every model reports; the step functions return their sums, in this order.
TERMS = ("loss", "reconstruction", "kl")
SUMS_SIZE = len(TERMS) + 1  # what summed_terms returns: the terms' sums and the number of images


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
