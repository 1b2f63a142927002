"""The two base classes every model derives from; losses are computed here and only here.

A model supplies ``build_encoder`` and ``build_decoder`` (plain ``keras.Model``s). The decoder
always returns logits, so the Bernoulli likelihood is a fused, stable sigmoid cross-entropy;
images come from ``sigmoid(logits)``. Every reported loss is in nats per image, summed over
pixels; the ``objective`` the optimizer minimizes may reduce its terms by a mean instead, as
some reference recipes do (``model.reconstruction_reduction``, ``model.kl_reduction``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from vae_train.config import Reduction

LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_nll(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits)
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def squared_error(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(tf.sigmoid(logits) - images), axis=[1, 2, 3])


RECONSTRUCTION_LOSSES: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "bernoulli": bernoulli_nll,
    "mse": squared_error,
}
# Reconstruction losses that are a negative log-likelihood -log p(x|z), so bounds on log p(x) exist.
LIKELIHOODS = frozenset({"bernoulli"})


def reduced(total: tf.Tensor, count: int, reduction: Reduction) -> tf.Tensor:
    """A per-example sum over ``count`` elements, or their mean."""
    return total if reduction is Reduction.sum else total / count


def standard_normal_log_density(z: tf.Tensor) -> tf.Tensor:
    return -0.5 * tf.reduce_sum(tf.square(z) + LOG_2PI, axis=-1)


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

    def log_density_of_sample(self, epsilon: tf.Tensor) -> tf.Tensor:
        """log q(z|x) summed over dimensions, for z = mean + std * epsilon (Gaussian posteriors)."""
        return -0.5 * tf.reduce_sum(tf.square(epsilon) + LOG_2PI + self.log_variance, axis=-1)

    def kl_to_standard_normal(self) -> tf.Tensor:
        """KL(q(z|x) || N(0, I)) per example, analytic."""
        if self.log_variance is None:
            return tf.zeros(tf.shape(self.mean)[:1], dtype=self.mean.dtype)
        terms = tf.exp(self.log_variance) + tf.square(self.mean) - 1.0 - self.log_variance
        return 0.5 * tf.reduce_sum(terms, axis=-1)


class Autoencoder(keras.Model):
    """A deterministic autoencoder; subclasses build the encoder and decoder.

    ``image_shape`` is the data's (height, width, channels): the models take their size from the
    images they are given."""

    variational = False

    def __init__(self, config, latent_dim: int, image_shape: tuple[int, int, int], seed: int = 0):
        super().__init__(name=config.name)
        self.config = config
        self.latent_dim = latent_dim
        self.image_shape = tuple(image_shape)
        self.pixels = math.prod(self.image_shape)
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

    @property
    def kl_reduction(self) -> Reduction:
        return Reduction.sum

    @property
    def objective_is_loss(self) -> bool:
        """Whether the optimizer minimizes the reported ``loss`` itself, not a rescaled variant."""
        return self.config.reconstruction_reduction is Reduction.sum and self.kl_reduction is Reduction.sum

    @property
    def has_likelihood(self) -> bool:
        return self.config.reconstruction_loss.value in LIKELIHOODS

    def posterior(self, images: tf.Tensor, training: bool = False) -> Posterior:
        return Posterior(mean=tf.cast(self.encoder(images, training=training), tf.float32))

    def decode(self, codes: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits of p(x|z), float32 whatever the compute precision."""
        return tf.cast(self.decoder(codes, training=training), tf.float32)

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Reconstruction logits from the posterior mean."""
        return self.decode(self.posterior(images, training).mean, training)

    def loss_terms(self, images: tf.Tensor, training: bool = False, noise: tf.random.Generator | None = None,
                   inputs: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """Per-example ``loss``, ``reconstruction`` and ``kl`` in nats per image, and the
        ``objective`` the optimizer minimizes (``loss`` unless a reduction is a mean).

        ``noise`` draws the posterior sample; by default the model's own (checkpointed) stream.
        ``inputs``: what the encoder sees, when not ``images`` themselves (a corrupted copy, for a
        denoiser); the reconstruction is always scored against ``images``.
        """
        posterior = self.posterior(images if inputs is None else inputs, training)
        logits = self.decode(posterior.sample(noise or self.noise), training)
        reconstruction = self.reconstruction_loss(images, logits)
        kl = posterior.kl_to_standard_normal()
        loss = reconstruction + self.kl_weight * kl
        if self.objective_is_loss:
            objective = loss
        else:
            objective = (reduced(reconstruction, self.pixels, self.config.reconstruction_reduction)
                         + self.kl_weight * reduced(kl, self.latent_dim, self.kl_reduction))
        return {"loss": loss, "reconstruction": reconstruction, "kl": kl, "objective": objective}

    def parameter_counts(self) -> dict[str, int]:
        return {"encoder": self.encoder.count_params(), "decoder": self.decoder.count_params()}


class VariationalAutoencoder(Autoencoder):
    """The encoder returns the mean and log-variance of a Gaussian posterior."""

    variational = True

    @property
    def kl_weight(self) -> float:
        return self.config.beta

    @property
    def kl_reduction(self) -> Reduction:
        return self.config.kl_reduction

    def posterior(self, images: tf.Tensor, training: bool = False) -> Posterior:
        mean, log_variance = self.encoder(images, training=training)
        return Posterior(mean=tf.cast(mean, tf.float32), log_variance=tf.cast(log_variance, tf.float32))

    def log_importance_weights(self, images: tf.Tensor, epsilon: tf.Tensor,
                               posterior: Posterior | None = None) -> tf.Tensor:
        """log p(x|z) + log p(z) - log q(z|x) for z = mean + std * epsilon, with ``epsilon`` standard
        normal noise shaped (samples, batch, latent_dim); the result is (samples, batch). ``posterior``:
        q(z|x) of ``images``, when the caller has it already.

        Their log-mean-exp over samples is the importance-weighted bound on log p(x) (Burda et al.,
        2016); their mean is a Monte Carlo ELBO.
        """
        posterior = posterior or self.posterior(images)
        z = posterior.mean + tf.exp(0.5 * posterior.log_variance) * epsilon
        logits = self.decode(tf.reshape(z, [-1, self.latent_dim]))
        samples = tf.shape(epsilon)[0]
        repeated = tf.tile(images, [samples, 1, 1, 1])  # sample-major, as z is reshaped
        log_likelihood = -tf.reshape(self.reconstruction_loss(repeated, logits), [samples, -1])
        return log_likelihood + standard_normal_log_density(z) - posterior.log_density_of_sample(epsilon)
