"""Stacked dense autoencoder (recipe B): the decoder mirrors the encoder's hidden layers. Its builders
serve the dense VAE too."""

from __future__ import annotations

import math

import keras

from vae_train.models.base import Autoencoder
from vae_train.models.registry import register_model


def dense_encoder(config, latent_dim: int, image_shape: tuple[int, int, int], head_names: tuple[str, ...],
                  head_activation: str | None = None) -> keras.Model:
    """The flattened images through ``config.hidden_units``, then one ``latent_dim`` head per name."""
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Flatten()(images)
    for units in config.hidden_units:
        x = keras.layers.Dense(units, activation=config.activation)(x)
    heads = [keras.layers.Dense(latent_dim, activation=head_activation, name=head)(x) for head in head_names]
    return keras.Model(images, heads if len(heads) > 1 else heads[0], name="encoder")


def dense_decoder(config, latent_dim: int, image_shape: tuple[int, int, int]) -> keras.Model:
    """The codes through ``config.hidden_units`` reversed, then one logit per pixel, shaped as the images."""
    codes = keras.Input((latent_dim,), name="codes")
    x = codes
    for units in reversed(config.hidden_units):
        x = keras.layers.Dense(units, activation=config.activation)(x)
    x = keras.layers.Dense(math.prod(image_shape), name="logits")(x)
    return keras.Model(codes, keras.layers.Reshape(image_shape)(x), name="decoder")


@register_model("dense_ae")
class DenseAutoencoder(Autoencoder):
    def build_encoder(self) -> keras.Model:
        return dense_encoder(self.config, self.latent_dim, self.image_shape, head_names=("code",),
                             head_activation=self.config.code_activation)

    def build_decoder(self) -> keras.Model:
        return dense_decoder(self.config, self.latent_dim, self.image_shape)
