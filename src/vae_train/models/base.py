"""The two base classes every model derives from; losses are computed here and only here.

A model supplies ``build_encoder`` and ``build_decoder`` (plain ``keras.Model``s). The decoder
always returns logits, so the Bernoulli likelihood is a fused, stable sigmoid cross-entropy;
images come from ``sigmoid(logits)``. Every loss is in nats per image, summed over pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

IMAGE_SHAPE = (28, 28, 1)


def bernoulli_nll(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits)
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def squared_error(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(tf.sigmoid(logits) - images), axis=[1, 2, 3])


RECONSTRUCTION_LOSSES: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "bernoulli": bernoulli_nll,
    "mse": squared_error,
}


@dataclass
class Posterior:
    """q(z|x): a point mass at ``mean`` for autoencoders, a diagonal Gaussian for VAEs."""

    mean: tf.Tensor
    log_variance: tf.Tensor | None = None

    def sample(self, noise: tf.random.Generator) -> tf.Tensor:
        if self.log_variance is None:
            return self.mean
        epsilon = noise.normal(tf.shape(self.mean))
        return self.mean + tf.exp(0.5 * self.log_variance) * epsilon

    def kl_to_standard_normal(self) -> tf.Tensor:
        """KL(q(z|x) || N(0, I)) per example, analytic."""
        if self.log_variance is None:
            return tf.zeros(tf.shape(self.mean)[:1], dtype=self.mean.dtype)
        terms = tf.exp(self.log_variance) + tf.square(self.mean) - 1.0 - self.log_variance
        return 0.5 * tf.reduce_sum(terms, axis=-1)


class Autoencoder(keras.Model):
    """A deterministic autoencoder; subclasses build the encoder and decoder."""

    variational = False

    def __init__(self, config, latent_dim: int, seed: int = 0):
        super().__init__(name=config.name)
        self.config = config
        self.latent_dim = latent_dim
        self.encoder = self.build_encoder()
        self.decoder = self.build_decoder()
        self.reconstruction_loss = RECONSTRUCTION_LOSSES[config.reconstruction_loss.value]
        # A generator rather than stateful random ops: its state is checkpointed, so a resumed
        # run draws the same noise an uninterrupted one would.
        self.noise = tf.random.Generator.from_seed(seed)

    def build_encoder(self) -> keras.Model:
        raise NotImplementedError

    def build_decoder(self) -> keras.Model:
        raise NotImplementedError

    @property
    def kl_weight(self) -> float:
        return 0.0

    def posterior(self, images: tf.Tensor, training: bool = False) -> Posterior:
        return Posterior(mean=tf.cast(self.encoder(images, training=training), tf.float32))

    def decode(self, codes: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits of p(x|z), float32 whatever the compute precision."""
        return tf.cast(self.decoder(codes, training=training), tf.float32)

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Reconstruction logits from the posterior mean."""
        return self.decode(self.posterior(images, training).mean, training)

    def loss_terms(self, images: tf.Tensor, training: bool = False,
                   noise: tf.random.Generator | None = None) -> dict[str, tf.Tensor]:
        """Per-example ``loss``, ``reconstruction`` and ``kl``, in nats per image.

        ``noise`` draws the posterior sample; by default the model's own (checkpointed) stream.
        """
        posterior = self.posterior(images, training)
        logits = self.decode(posterior.sample(noise or self.noise), training)
        reconstruction = self.reconstruction_loss(images, logits)
        kl = posterior.kl_to_standard_normal()
        return {"loss": reconstruction + self.kl_weight * kl, "reconstruction": reconstruction, "kl": kl}

    def parameter_counts(self) -> dict[str, int]:
        return {"encoder": self.encoder.count_params(), "decoder": self.decoder.count_params()}


class VariationalAutoencoder(Autoencoder):
    """The encoder returns the mean and log-variance of a Gaussian posterior."""

    variational = True

    @property
    def kl_weight(self) -> float:
        return self.config.beta

    def posterior(self, images: tf.Tensor, training: bool = False) -> Posterior:
        mean, log_variance = self.encoder(images, training=training)
        return Posterior(mean=tf.cast(mean, tf.float32), log_variance=tf.cast(log_variance, tf.float32))
