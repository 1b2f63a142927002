"""Stacked dense autoencoder (recipe B): the decoder mirrors the encoder's hidden layers."""

from __future__ import annotations

import keras

from vae_train.models.base import Autoencoder
from vae_train.models.registry import register_model


@register_model("dense_ae")
class DenseAutoencoder(Autoencoder):
    def build_encoder(self) -> keras.Model:
        images = keras.Input(self.image_shape, name="images")
        x = keras.layers.Flatten()(images)
        for units in self.config.hidden_units:
            x = keras.layers.Dense(units, activation=self.config.activation)(x)
        code = keras.layers.Dense(self.latent_dim, activation=self.config.code_activation, name="code")(x)
        return keras.Model(images, code, name="encoder")

    def build_decoder(self) -> keras.Model:
        codes = keras.Input((self.latent_dim,), name="codes")
        x = codes
        for units in reversed(self.config.hidden_units):
            x = keras.layers.Dense(units, activation=self.config.activation)(x)
        x = keras.layers.Dense(self.pixels, name="logits")(x)
        return keras.Model(codes, keras.layers.Reshape(self.image_shape)(x), name="decoder")
