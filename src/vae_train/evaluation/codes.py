"""Per-image outputs of a model over a data set: its codes and its reconstruction errors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_train.models import Autoencoder
from vae_train.runtime.functions import run_function


@run_function(reduce_retracing=True)
def _posterior_means(model: Autoencoder, images: tf.Tensor) -> tf.Tensor:
    return model.posterior(images).mean


@run_function(reduce_retracing=True)
def _reconstruction_errors(model: Autoencoder, images: tf.Tensor) -> tf.Tensor:
    return model.reconstruction_loss(images, model(images))


def reconstruction_errors(model: Autoencoder, dataset: tf.data.Dataset) -> np.ndarray:
    """Per image, the reconstruction loss (nats) of its decoded posterior mean.

    Images unlike the training data reconstruct badly, so this serves as an anomaly score.
    """
    return np.concatenate([_reconstruction_errors(model, images).numpy() for images in dataset])


def encode(model: Autoencoder, dataset: tf.data.Dataset) -> np.ndarray:
    """The codes of ``dataset`` (a VAE's posterior means), shaped (images, latent_dim)."""
    return np.concatenate([_posterior_means(model, images).numpy() for images in dataset])


def encode_with_images(model: Autoencoder, dataset: tf.data.Dataset, limit: int | None = None,
                       image_limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The codes of the first ``limit`` images of ``dataset`` (all for None), and the first ``limit`` images,
    or fewer: ``image_limit``."""
    if limit is not None:
        image_limit = limit if image_limit is None else min(limit, image_limit)
    codes, images = [], []
    taken = kept = 0
    for batch in dataset:
        if limit is not None and taken >= limit:
            break
        codes.append(_posterior_means(model, batch).numpy())
        taken += len(codes[-1])
        if image_limit is None or kept < image_limit:
            images.append(batch.numpy())
            kept += len(images[-1])
    return np.concatenate(codes)[:limit], np.concatenate(images)[:image_limit]
