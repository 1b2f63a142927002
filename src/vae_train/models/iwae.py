"""The importance-weighted autoencoder (Burda et al., 2015): the conv VAE's layers and likelihood,
trained on the bound log (1/K) sum_k p(x, z_k) / q(z_k|x) with K = ``model.train_samples`` posterior
samples, which is tighter than the ELBO (K = 1). The reported loss, reconstruction and KL stay the
ELBO's (the reconstruction averaged over the K samples); the bound itself is reported as ``iw_bound``,
nats per image, as the negative of the bound."""

from __future__ import annotations

import tensorflow as tf

from vae_train.models.base import Posterior
from vae_train.models.cvae import ConvVAE
from vae_train.models.registry import register_model
from vae_train.models.terms import TERMS


@register_model("iwae")
class IWAE(ConvVAE):
    reported_terms = (*TERMS, "iw_bound")

    def loss_terms(self, images: tf.Tensor, training: bool = False, noise: tf.random.Generator | None = None,
                   inputs: tf.Tensor | None = None, step: tf.Tensor | None = None,
                   posterior: Posterior | None = None) -> dict[str, tf.Tensor]:
        posterior = posterior or self.posterior(images if inputs is None else inputs, training)
        samples = self.config.train_samples
        epsilon = (noise or self.noise).normal([samples, tf.shape(images)[0], self.latent_dim])
        weights, reconstructions = self.importance_samples(images, epsilon, posterior, training)
        reconstruction = tf.reduce_mean(reconstructions, axis=0)
        kl = posterior.kl_to_standard_normal()
        bound = -(tf.reduce_logsumexp(weights, axis=0) - tf.math.log(float(samples)))
        return {"loss": reconstruction + self.kl_weight * kl, "reconstruction": reconstruction, "kl": kl,
                "iw_bound": bound, "objective": bound}
