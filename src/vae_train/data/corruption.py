"""Corrupted images for denoising (``corruption=gaussian|salt_pepper|masking``), drawn from a random
generator the caller owns: the trainer's is checkpointed, so a resumed run draws what an
uninterrupted one would; the evaluator's is reset to its seed, so every epoch's test inputs are the
same corrupted images."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

# images in [0, 1], the corruption's config, a generator -> the corrupted images, in [0, 1].
Corrupt = Callable[[tf.Tensor, tf.random.Generator], tf.Tensor]


def _gaussian(images: tf.Tensor, config, noise: tf.random.Generator) -> tf.Tensor:
    return tf.clip_by_value(images + config.std * noise.normal(tf.shape(images)), 0.0, 1.0)


def _salt_pepper(images: tf.Tensor, config, noise: tf.random.Generator) -> tf.Tensor:
    draw = noise.uniform(tf.shape(images))
    salted = tf.where(draw < config.rate / 2, 1.0, images)
    return tf.where((draw >= config.rate / 2) & (draw < config.rate), 0.0, salted)


def _masking(images: tf.Tensor, config, noise: tf.random.Generator) -> tf.Tensor:
    return tf.where(noise.uniform(tf.shape(images)) < config.rate, 0.0, images)


CORRUPTIONS: dict[str, Callable[[tf.Tensor, object, tf.random.Generator], tf.Tensor]] = {
    "gaussian": _gaussian,
    "salt_pepper": _salt_pepper,
    "masking": _masking,
}


def corruption_of(config) -> Corrupt | None:
    """The corruption ``config`` (``corruption.*``) describes, or None for clean inputs."""
    if config.name == "none":
        return None
    function = CORRUPTIONS[config.name]
    return lambda images, noise: function(images, config, noise)
