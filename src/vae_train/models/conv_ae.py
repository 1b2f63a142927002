"""Convolutional autoencoder with a dense bottleneck; its builders serve the conv VAE too."""

from __future__ import annotations

import keras

from vae_train.models.base import IMAGE_SHAPE, Autoencoder
from vae_train.models.registry import register_model


def conv_encoder(config, latent_dim: int, head_names: tuple[str, ...], name: str = "encoder") -> keras.Model:
    """Strided convolutions, optional dense layers, then one ``latent_dim`` head per name."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = images
    for filters in config.encoder_filters:
        x = keras.layers.Conv2D(filters, config.kernel_size, strides=2, padding=config.encoder_padding,
                                activation=config.activation)(x)
    x = keras.layers.Flatten()(x)
    for units in config.hidden_units:
        x = keras.layers.Dense(units, activation=config.activation)(x)
    heads = [keras.layers.Dense(latent_dim, name=head)(x) for head in head_names]
    return keras.Model(images, heads if len(heads) > 1 else heads[0], name=name)


def conv_decoder(config, latent_dim: int, name: str = "decoder") -> keras.Model:
    """Dense to a small feature map, then transposed convolutions doubling it up to 28x28."""
    start = IMAGE_SHAPE[0] // 2 ** len(config.decoder_filters)
    codes = keras.Input((latent_dim,), name="codes")
    x = keras.layers.Dense(start * start * config.decoder_start_channels, activation=config.activation)(codes)
    x = keras.layers.Reshape((start, start, config.decoder_start_channels))(x)
    for filters in config.decoder_filters:
        x = keras.layers.Conv2DTranspose(filters, config.kernel_size, strides=2, padding="same",
                                         activation=config.activation)(x)
    logits = keras.layers.Conv2DTranspose(IMAGE_SHAPE[-1], config.kernel_size, padding="same",
                                          name="logits")(x)
    return keras.Model(codes, logits, name=name)


@register_model("conv_ae")
class ConvAutoencoder(Autoencoder):
    def build_encoder(self) -> keras.Model:
        return conv_encoder(self.config, self.latent_dim, head_names=("code",))

    def build_decoder(self) -> keras.Model:
        return conv_decoder(self.config, self.latent_dim)
