"""Convolutional VAE (recipes A and C): the conv autoencoder's layers with a Gaussian code."""

from __future__ import annotations

import keras

from vae_train.models.base import VariationalAutoencoder
from vae_train.models.conv_ae import conv_decoder, conv_encoder
from vae_train.models.registry import register_model


@register_model("cvae")
class ConvVAE(VariationalAutoencoder):
    def build_encoder(self) -> keras.Model:
        return conv_encoder(self.config, self.latent_dim, self.image_shape, head_names=("z_mean", "z_log_var"))

    def build_decoder(self) -> keras.Model:
        return conv_decoder(self.config, self.latent_dim, self.image_shape)
