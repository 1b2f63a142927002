"""The two base classes every model derives from; losses are computed here and only here.

A model supplies ``build_encoder`` and ``build_decoder`` (plain ``keras.Model``s). The decoder
always returns logits, so the Bernoulli likelihood is a fused, stable sigmoid cross-entropy;
images come from ``sigmoid(logits)``. Every reported loss is in nats per image, summed over
pixels; the ``objective`` the optimizer minimizes may reduce its terms by a mean instead, as
some reference recipes do (``model.reconstruction_reduction``, ``model.kl_reduction``). A VAE's
objective is the negative ELBO, or with ``model.train_samples`` K > 1 the negative importance-weighted
bound of K posterior samples (Burda et al., 2015), whatever its network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from vae_train.config import Reduction
from vae_train.models.terms import TERMS

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
# |logits| below which the continuous Bernoulli's normalizer is taken from its series: there the
# exact form divides two vanishing numbers, and the series' next term (eta^4 / 1440) is below 1e-12.
CB_SERIES_BELOW = 1e-3


def bernoulli_nll(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits)
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def continuous_bernoulli_log_normalizer(logits: tf.Tensor) -> tf.Tensor:
    """log C(lambda) of the continuous Bernoulli with lambda = sigmoid(logits) (Loaiza-Ganem and
    Cunningham, 2019): C = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), which in the logits is
    eta / tanh(eta / 2). Near eta = 0, where both vanish, its series log 2 + eta^2 / 12."""
    magnitude = tf.abs(logits)
    small = magnitude < CB_SERIES_BELOW
    safe = tf.where(small, tf.ones_like(magnitude), magnitude)
    exact = tf.math.log(safe) - tf.math.log(tf.tanh(safe / 2.0))
    return tf.where(small, LOG_2 + tf.square(logits) / 12.0, exact)


def continuous_bernoulli_nll(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """-log p(x|z) of grey levels x in [0, 1] under the continuous Bernoulli: the Bernoulli cross-entropy
    less the log normalizing constant, summed over pixels (a density: it may be negative)."""
    per_pixel = (tf.nn.sigmoid_cross_entropy_with_logits(labels=images, logits=logits)
                 - continuous_bernoulli_log_normalizer(logits))
    return tf.reduce_sum(per_pixel, axis=[1, 2, 3])


def squared_error(images: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.square(tf.sigmoid(logits) - images), axis=[1, 2, 3])


def continuous_bernoulli_mean(logits: tf.Tensor) -> tf.Tensor:
    """E[x] of the continuous Bernoulli with lambda = sigmoid(logits): lambda / (2 lambda - 1) +
    1 / (2 atanh(1 - 2 lambda)), which in the logits x is sigmoid(x) / tanh(x / 2) - 1 / x. It is not
    lambda: the distribution's mass leans less to the ends. Near x = 0 both terms blow up and cancel;
    there its series, 1/2 + x / 12 (next term O(x^3)), is exact to float32."""
    small = tf.abs(logits) < 1e-2
    safe = tf.where(small, tf.ones_like(logits), logits)
    return tf.where(small, 0.5 + logits / 12.0, tf.sigmoid(safe) / tf.tanh(safe / 2.0) - 1.0 / safe)


# The images a decoder's logits stand for: its distribution's mean, by model.decoder_distribution.
MEAN_IMAGES: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "bernoulli": tf.sigmoid,
    "continuous_bernoulli": continuous_bernoulli_mean,
}

# By (model.reconstruction_loss, model.decoder_distribution); mse has no distribution.
RECONSTRUCTION_LOSSES: dict[tuple[str, str], Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    ("bernoulli", "bernoulli"): bernoulli_nll,
    ("bernoulli", "continuous_bernoulli"): continuous_bernoulli_nll,
    ("mse", "bernoulli"): squared_error,
}
# Reconstruction losses that are a negative log-likelihood -log p(x|z), so bounds on log p(x) exist.
LIKELIHOODS = frozenset({bernoulli_nll, continuous_bernoulli_nll})


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

    def kl_per_dimension(self) -> tf.Tensor:
        """KL(q(z_i|x) || N(0, 1)) per example and latent dimension, analytic."""
        if self.log_variance is None:
            return tf.zeros_like(self.mean)
        return 0.5 * (tf.exp(self.log_variance) + tf.square(self.mean) - 1.0 - self.log_variance)

    def kl_to_standard_normal(self) -> tf.Tensor:
        """KL(q(z|x) || N(0, I)) per example, analytic."""
        return tf.reduce_sum(self.kl_per_dimension(), axis=-1)


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
        self.reconstruction_loss = RECONSTRUCTION_LOSSES[(config.reconstruction_loss.value,
                                                          config.decoder_distribution.value)]
        # A generator rather than stateful random ops: its state is checkpointed, so a resumed
        # run draws the same noise an uninterrupted one would.
        self.noise = tf.random.Generator.from_seed(seed)

    def build_encoder(self) -> keras.Model:
        raise NotImplementedError

    def build_decoder(self) -> keras.Model:
        raise NotImplementedError

    # The per-example terms loss_terms reports (vae_train.models.terms); a model may add its own.
    reported_terms = TERMS

    @property
    def kl_weight(self) -> float:
        """The KL term's weight in the reported loss (beta)."""
        return 0.0

    def kl_weight_at(self, step: tf.Tensor | int) -> tf.Tensor | float:
        """The KL term's weight in the training objective at training step ``step`` (a warm-up)."""
        return self.kl_weight

    @property
    def kl_reduction(self) -> Reduction:
        return Reduction.sum

    @property
    def reports_recipe_loss(self) -> bool:
        """Whether the objective reduces a term by a mean (a recipe's own loss), reported beside ``loss``."""
        return not (self.config.reconstruction_reduction is Reduction.sum and self.kl_reduction is Reduction.sum)

    @property
    def has_likelihood(self) -> bool:
        return self.reconstruction_loss in LIKELIHOODS

    def kl_objective(self, posterior: Posterior) -> tf.Tensor:
        """The KL term of the training objective, per example: the KL itself, but for free bits."""
        return posterior.kl_to_standard_normal()

    def posterior(self, images: tf.Tensor, training: bool = False) -> Posterior:
        return Posterior(mean=tf.cast(self.encoder(images, training=training), tf.float32))

    def decode(self, codes: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits of p(x|z), float32 whatever the compute precision."""
        return tf.cast(self.decoder(codes, training=training), tf.float32)

    def mean_images(self, logits: tf.Tensor) -> tf.Tensor:
        """The images ``logits`` stand for (pictures, PSNR, anomaly maps): the decoder distribution's mean."""
        return MEAN_IMAGES[self.config.decoder_distribution.value](tf.cast(logits, tf.float32))

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Reconstruction logits from the posterior mean."""
        return self.decode(self.posterior(images, training).mean, training)

    def loss_terms(self, images: tf.Tensor, training: bool = False, noise: tf.random.Generator | None = None,
                   inputs: tf.Tensor | None = None, step: tf.Tensor | None = None,
                   posterior: Posterior | None = None) -> dict[str, tf.Tensor]:
        """Per-example ``loss``, ``reconstruction`` and ``kl`` in nats per image (the true figures,
        whatever the training objective does), and the ``objective`` the optimizer minimizes.

        ``noise`` draws the posterior sample; by default the model's own (checkpointed) stream.
        ``inputs``: what the encoder sees, when not ``images`` themselves (a corrupted copy, for a
        denoiser); the reconstruction is always scored against ``images``. ``step``: the training
        step, for a KL warm-up; in training, free bits apply to the objective's KL term. Outside
        training the objective is the recipe's loss: the figures reduced as configured. ``posterior``:
        q(z|inputs), when the caller has it already.
        """
        posterior = posterior or self.posterior(images if inputs is None else inputs, training)
        logits = self.decode(posterior.sample(noise or self.noise), training)
        reconstruction = self.reconstruction_loss(images, logits)
        kl = posterior.kl_to_standard_normal()
        terms = {"loss": reconstruction + self.kl_weight * kl, "reconstruction": reconstruction, "kl": kl}
        terms["objective"] = self.objective(terms, posterior, training, step)
        return terms

    def objective(self, terms: dict[str, tf.Tensor], posterior: Posterior, training: bool,
                  step: tf.Tensor | None) -> tf.Tensor:
        """What the optimizer minimizes per example: the reconstruction and the KL term reduced as
        configured, the KL weighed by the warm-up at ``step`` and under free bits in training."""
        kl_term, weight = terms["kl"], self.kl_weight
        if training:
            kl_term = self.kl_objective(posterior)
            weight = self.kl_weight_at(step) if step is not None else weight
        return (reduced(terms["reconstruction"], self.pixels, self.config.reconstruction_reduction)
                + weight * reduced(kl_term, self.latent_dim, self.kl_reduction))

    def parameter_counts(self) -> dict[str, int]:
        return {"encoder": self.encoder.count_params(), "decoder": self.decoder.count_params()}


class VariationalAutoencoder(Autoencoder):
    """The encoder returns the mean and log-variance of a Gaussian posterior."""

    variational = True
    # The importance-weighted objective's samples the decoder takes a pass in training; None: all K in one
    # pass. The run chooses it for its devices (:func:`vae_train.run.build.build_parts`).
    samples_per_decoder_pass: int | None = None

    @property
    def kl_weight(self) -> float:
        return self.config.beta

    def kl_weight_at(self, step: tf.Tensor | int) -> tf.Tensor | float:
        """beta, reached linearly from 0 over ``model.kl_warmup_steps`` training steps."""
        warmup = self.config.kl_warmup_steps
        if not warmup:
            return self.config.beta
        progress = tf.minimum(1.0, tf.cast(step, tf.float32) / float(warmup))
        return self.config.beta * progress

    @property
    def kl_reduction(self) -> Reduction:
        return self.config.kl_reduction

    def kl_objective(self, posterior: Posterior) -> tf.Tensor:
        """Free bits (Kingma et al., 2016): each latent dimension's KL counts for at least
        ``model.free_bits`` nats, so below that the objective does not push it down (its gradient is 0)."""
        if not self.config.free_bits:
            return posterior.kl_to_standard_normal()
        return tf.reduce_sum(tf.maximum(posterior.kl_per_dimension(), self.config.free_bits), axis=-1)

    @property
    def reported_terms(self) -> tuple[str, ...]:
        """The ELBO's terms, and the bound when the objective is the importance-weighted one."""
        return (*TERMS, "iw_bound") if self.config.train_samples > 1 else TERMS

    def loss_terms(self, images: tf.Tensor, training: bool = False, noise: tf.random.Generator | None = None,
                   inputs: tf.Tensor | None = None, step: tf.Tensor | None = None,
                   posterior: Posterior | None = None) -> dict[str, tf.Tensor]:
        """As :meth:`Autoencoder.loss_terms`, the objective being the ELBO's; with ``model.train_samples`` > 1,
        the terms of :meth:`importance_weighted_terms`, the objective being the bound."""
        if self.config.train_samples == 1:
            return super().loss_terms(images, training, noise, inputs, step, posterior)
        posterior = posterior or self.posterior(images if inputs is None else inputs, training)
        return self.importance_weighted_terms(images, self.config.train_samples, noise or self.noise, posterior,
                                              training)

    def importance_weighted_terms(self, images: tf.Tensor, samples: int, noise: tf.random.Generator,
                                  posterior: Posterior, training: bool = False) -> dict[str, tf.Tensor]:
        """Per example, from ``samples`` posterior samples drawn from ``noise``: ``iw_bound``, the negative of
        the importance-weighted bound log (1/K) sum_k p(x, z_k) / q(z_k|x), which is also the ``objective``
        (tighter than the ELBO as K grows; for K = 1, the single-sample ELBO); and ``loss``, ``reconstruction``
        and ``kl`` as the ELBO reports them (the reconstruction averaged over the K samples, the KL analytic),
        so runs on either objective compare."""
        epsilon = noise.normal([samples, tf.shape(images)[0], self.latent_dim])
        per_pass = self.samples_per_decoder_pass or samples
        passes = [self.importance_samples(images, epsilon[first:first + per_pass], posterior, training)
                  for first in range(0, samples, per_pass)]
        weights, reconstructions = (tf.concat(parts, axis=0) for parts in zip(*passes, strict=True))
        reconstruction = tf.reduce_mean(reconstructions, axis=0)
        kl = posterior.kl_to_standard_normal()
        bound = -(tf.reduce_logsumexp(weights, axis=0) - tf.math.log(float(samples)))
        return {"loss": reconstruction + self.kl_weight * kl, "reconstruction": reconstruction, "kl": kl,
                "iw_bound": bound, "objective": bound}

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
        return self.importance_samples(images, epsilon, posterior)[0]

    def importance_samples(self, images: tf.Tensor, epsilon: tf.Tensor, posterior: Posterior | None = None,
                           training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """The log importance weights of :meth:`log_importance_weights` and each sample's
        reconstruction loss -log p(x|z), both (samples, batch)."""
        posterior = posterior or self.posterior(images, training)
        z = posterior.mean + tf.exp(0.5 * posterior.log_variance) * epsilon
        logits = self.decode(tf.reshape(z, [-1, self.latent_dim]), training)
        samples = tf.shape(epsilon)[0]
        repeated = tf.tile(images, [samples, 1, 1, 1])  # sample-major, as z is reshaped
        reconstruction = tf.reshape(self.reconstruction_loss(repeated, logits), [samples, -1])
        weights = -reconstruction + standard_normal_log_density(z) - posterior.log_density_of_sample(epsilon)
        return weights, reconstruction
