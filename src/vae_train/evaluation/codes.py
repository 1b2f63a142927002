"""Per-image outputs of a model over a data set: its codes and its reconstruction errors."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_train.models import Autoencoder


def reconstruction_errors(model: Autoencoder, dataset: tf.data.Dataset) -> np.ndarray:
    """Per image, the reconstruction loss (nats) of its decoded posterior mean.

    Images unlike the training data reconstruct badly, so this serves as an anomaly score.
    """
    return np.concatenate([model.reconstruction_loss(images, model(images)).numpy() for images in dataset])


def encode(model: Autoencoder, dataset: tf.data.Dataset) -> np.ndarray:
    """The codes of ``dataset`` (a VAE's posterior means), shaped (images, latent_dim)."""
    return np.concatenate([model.posterior(images).mean.numpy() for images in dataset])
