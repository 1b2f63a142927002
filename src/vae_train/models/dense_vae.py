"""The MLP VAE of Kingma and Welling (2014) and Burda et al. (2015): the dense autoencoder's layers with
a Gaussian code (a mean and a log-variance head) and Bernoulli logits. Its losses, KL and, with
``model.train_samples`` > 1, the importance-weighted bound come from the VAE base class."""

from __future__ import annotations

import keras

from vae_train.models.base import VariationalAutoencoder
from vae_train.models.dense_ae import dense_decoder, dense_encoder
from vae_train.models.registry import register_model


@register_model("dense_vae")
class DenseVAE(VariationalAutoencoder):
    def build_encoder(self) -> keras.Model:
        return dense_encoder(self.config, self.latent_dim, self.image_shape, head_names=("z_mean", "z_log_var"))

    def build_decoder(self) -> keras.Model:
        return dense_decoder(self.config, self.latent_dim, self.image_shape)
