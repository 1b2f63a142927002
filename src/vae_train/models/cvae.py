"""Convolutional VAE (recipes A and C): the conv autoencoder's layers with a Gaussian code.

It is also ``model=iwae``, the importance-weighted autoencoder of Burda et al. (2015): the same network,
whose schema (``IWAEConfig``) trains it on the bound of five importance samples by default. Any VAE does
so with ``model.train_samples`` > 1 (see :class:`~vae_train.models.base.VariationalAutoencoder`); the
name stays for the runs and commands that use it."""

from __future__ import annotations

import keras

from vae_train.models.base import VariationalAutoencoder
from vae_train.models.conv_ae import conv_decoder, conv_encoder
from vae_train.models.registry import register_model


@register_model("iwae")
@register_model("cvae")
class ConvVAE(VariationalAutoencoder):
    def build_encoder(self) -> keras.Model:
        return conv_encoder(self.config, self.latent_dim, self.image_shape, head_names=("z_mean", "z_log_var"))

    def build_decoder(self) -> keras.Model:
        return conv_decoder(self.config, self.latent_dim, self.image_shape)
