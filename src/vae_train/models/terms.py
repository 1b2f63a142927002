"""The per-example terms every model reports (:meth:`Autoencoder.loss_terms`), summed over batches as
one small vector and turned into means per image. The training loop and the evaluator both count
with these, so their figures are the same figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# The per-example terms every model reports, in this order; a model may report more after them
# (Autoencoder.reported_terms).
TERMS = ("loss", "reconstruction", "kl")


def sums_size(names: Sequence[str]) -> int:
    """The length of :func:`summed_terms`' vector: the terms' sums and the number of images."""
    return len(names) + 1


def summed_terms(terms: dict[str, tf.Tensor], names: Sequence[str] = TERMS) -> tf.Tensor:
    """Sums over the batch of each term, plus the batch size, as one vector (cheap to all-reduce)."""
    count = tf.cast(tf.shape(terms["loss"])[0], tf.float32)
    return tf.stack([tf.reduce_sum(terms[name]) for name in names] + [count])


def metrics_from_sums(sums: np.ndarray, variational: bool, names: Sequence[str] = TERMS) -> dict[str, float]:
    """Means per image from the vector :func:`summed_terms` returns, summed over batches."""
    means = {name: float(total / sums[-1]) for name, total in zip(names, sums[:-1], strict=True)}
    if variational:
        means["elbo"] = -(means["reconstruction"] + means["kl"])
    else:
        del means["kl"]
    return means
