"""Convolutional autoencoder with a dense bottleneck; its builders serve the conv VAE too."""

from __future__ import annotations

import keras

from vae_train.config import Downsampling
from vae_train.errors import ConfigError
from vae_train.models.base import Autoencoder
from vae_train.models.registry import register_model


def _layer(layer_class, config, *args, **kwargs):
    """``layer_class(*args)`` with the model's activation; with ``model.batch_norm``, without bias and
    followed by batch normalization, then the activation."""
    def apply(x):
        if not config.batch_norm:
            return layer_class(*args, activation=config.activation, **kwargs)(x)
        x = layer_class(*args, use_bias=False, **kwargs)(x)
        x = keras.layers.BatchNormalization()(x)
        return keras.layers.Activation(config.activation)(x)

    return apply


def _downsample(x, filters: int, config):
    """Halve the feature map: a strided convolution, or a convolution then 2x2 max-pooling."""
    strided = config.downsampling is Downsampling.strided
    x = _layer(keras.layers.Conv2D, config, filters, config.kernel_size, strides=2 if strided else 1,
               padding=config.encoder_padding)(x)
    return x if strided else keras.layers.MaxPooling2D(2)(x)


def conv_encoder(config, latent_dim: int, image_shape: tuple[int, int, int], head_names: tuple[str, ...],
                 name: str = "encoder") -> keras.Model:
    """Downsampling convolutions, optional dense layers, then one ``latent_dim`` head per name."""
    images = keras.Input(image_shape, name="images")
    x = images
    for filters in config.encoder_filters:
        x = _downsample(x, filters, config)
    x = keras.layers.Flatten()(x)
    for units in config.hidden_units:
        x = _layer(keras.layers.Dense, config, units)(x)
    heads = [keras.layers.Dense(latent_dim, name=head)(x) for head in head_names]
    return keras.Model(images, heads if len(heads) > 1 else heads[0], name=name)


def _start_size(image_shape: tuple[int, int, int], doublings: int) -> tuple[int, int]:
    """The decoder's first feature map, which ``doublings`` transposed convolutions grow to the images."""
    height, width, _ = image_shape
    factor = 2 ** doublings
    if height % factor or width % factor:
        raise ConfigError(
            f"model.decoder_filters has {doublings} layers, each doubling the feature map, so the images' "
            f"{height}x{width} pixels must divide by {factor}; use fewer decoder layers for these images.")
    return height // factor, width // factor


def conv_decoder(config, latent_dim: int, image_shape: tuple[int, int, int], name: str = "decoder") -> keras.Model:
    """Optional dense layers, dense to a small feature map, then transposed convolutions doubling it
    up to the images' size."""
    start_height, start_width = _start_size(image_shape, len(config.decoder_filters))
    codes = keras.Input((latent_dim,), name="codes")
    x = codes
    for units in config.decoder_hidden_units:
        x = _layer(keras.layers.Dense, config, units)(x)
    x = _layer(keras.layers.Dense, config, start_height * start_width * config.decoder_start_channels)(x)
    x = keras.layers.Reshape((start_height, start_width, config.decoder_start_channels))(x)
    for filters in config.decoder_filters:
        x = _layer(keras.layers.Conv2DTranspose, config, filters, config.kernel_size, strides=2, padding="same")(x)
    logits = keras.layers.Conv2DTranspose(image_shape[-1], config.kernel_size, padding="same",
                                          name="logits")(x)
    return keras.Model(codes, logits, name=name)


@register_model("conv_ae")
class ConvAutoencoder(Autoencoder):
    def build_encoder(self) -> keras.Model:
        return conv_encoder(self.config, self.latent_dim, self.image_shape, head_names=("code",))

    def build_decoder(self) -> keras.Model:
        return conv_decoder(self.config, self.latent_dim, self.image_shape)
