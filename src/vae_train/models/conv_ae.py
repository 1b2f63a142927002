"""Convolutional autoencoder with a dense bottleneck; its builders serve the conv VAE too."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


# The automatic layout halves the images until the longer side is at most this many pixels.
AUTO_SMALLEST_SIDE = 8
AUTO_FILTERS = (32, 64, 128, 256)  # the first layers' filters; deeper layers keep the last


@dataclass(frozen=True)
class ConvLayout:
    """The filters of each layer and the decoder's first feature map, for one image size."""

    encoder_filters: tuple[int, ...]
    decoder_filters: tuple[int, ...]
    decoder_start: tuple[int, int, int]  # (height, width, channels) of the decoder's first feature map


def auto_halvings(height: int, width: int) -> int:
    """How often the images are halved when the layers follow their size: while both sides are even
    and the longer one exceeds AUTO_SMALLEST_SIDE (28x28 and 32x32: twice; 256x256: five times)."""
    halvings = 0
    while height % 2 == 0 and width % 2 == 0 and max(height, width) > AUTO_SMALLEST_SIDE:
        height, width, halvings = height // 2, width // 2, halvings + 1
    return halvings


def conv_layout(config, image_shape: tuple[int, int, int]) -> ConvLayout:
    """The layers of ``config`` for images of ``image_shape``: the keys left null follow the image size;
    pinned ones are checked against it (a ConfigError naming the keys when they cannot fit)."""
    height, width, _ = image_shape
    encoder = config.encoder_filters
    if encoder is None:
        encoder = [AUTO_FILTERS[min(layer, len(AUTO_FILTERS) - 1)] for layer in range(auto_halvings(height, width))]
    _check_encoder_fits(config, encoder, height, width)
    decoder = list(reversed(encoder)) if config.decoder_filters is None else config.decoder_filters
    factor = 2 ** len(decoder)
    if height % factor or width % factor:
        fitting = auto_halvings(height, width)
        raise ConfigError(
            f"The decoder cannot draw {height}x{width} images: model.decoder_filters has {len(decoder)} layers, "
            f"each doubling the feature map, so both sides must divide by {factor}. Leave model.encoder_filters and "
            f"model.decoder_filters null to follow the image size ({fitting} layers here), give "
            "model.decoder_filters a number of layers whose power of two divides both sides, or resize the images "
            f"to sides that {factor} divides (data.image_size).")
    channels = config.decoder_start_channels or (encoder[-1] if encoder else decoder[0] if decoder else 32)
    return ConvLayout(tuple(encoder), tuple(decoder), (height // factor, width // factor, channels))


def _check_encoder_fits(config, filters: list[int], height: int, width: int) -> None:
    """Each downsampling layer roughly halves the feature map; too many leave nothing to convolve."""
    valid = config.encoder_padding == "valid"
    for layer in range(len(filters)):
        if valid:
            height, width = height - config.kernel_size + 1, width - config.kernel_size + 1
        if min(height, width) < 2:  # nothing left to halve
            raise ConfigError(
                f"model.encoder_filters has {len(filters)} downsampling layers, more than these images allow: "
                f"layer {layer + 1} gets a feature map of {max(height, 0)}x{max(width, 0)} pixels. Use fewer "
                "layers, leave model.encoder_filters null to follow the image size, or use larger images "
                "(data.image_size).")
        height, width = (height + 1) // 2, (width + 1) // 2


def conv_encoder(config, latent_dim: int, image_shape: tuple[int, int, int], head_names: tuple[str, ...],
                 name: str = "encoder") -> keras.Model:
    """Downsampling convolutions, optional dense layers, then one ``latent_dim`` head per name."""
    images = keras.Input(image_shape, name="images")
    x = images
    for filters in conv_layout(config, image_shape).encoder_filters:
        x = _downsample(x, filters, config)
    x = keras.layers.Flatten()(x)
    for units in config.hidden_units:
        x = _layer(keras.layers.Dense, config, units)(x)
    heads = [keras.layers.Dense(latent_dim, name=head)(x) for head in head_names]
    return keras.Model(images, heads if len(heads) > 1 else heads[0], name=name)


def conv_decoder(config, latent_dim: int, image_shape: tuple[int, int, int], name: str = "decoder") -> keras.Model:
    """Optional dense layers, dense to a small feature map, then transposed convolutions doubling it
    up to the images' size."""
    layout = conv_layout(config, image_shape)
    codes = keras.Input((latent_dim,), name="codes")
    x = codes
    for units in config.decoder_hidden_units:
        x = _layer(keras.layers.Dense, config, units)(x)
    x = _layer(keras.layers.Dense, config, math.prod(layout.decoder_start))(x)
    x = keras.layers.Reshape(layout.decoder_start)(x)
    for filters in layout.decoder_filters:
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
