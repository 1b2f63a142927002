"""The channels-last lever: recipe C's convolutions trained in NHWC (Keras's default, what
vae-train's models use) against the same layers in NCHW.

vae-train's models have no layout switch, because the measurement below is why: on CPUs, oneDNN's
convolutions want channels last, and on GPUs TensorFlow's layout optimizer picks cuDNN's layout
itself. The stack is the recipe's convolutional layers only (its dense layers have no layout).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

LAYOUTS = ("channels_last", "channels_first")


def channels_first_runs_here() -> bool:
    """Whether this CPU's TensorFlow build convolves NCHW tensors (oneDNN does on some CPUs; the plain
    Eigen kernels only take NHWC)."""
    try:
        tf.nn.conv2d(tf.zeros((1, 1, 4, 4)), tf.zeros((3, 3, 1, 1)), strides=1, padding="SAME", data_format="NCHW")
        return True
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False


def conv_stack(data_format: str, seed: int = 0) -> keras.Model:
    """Recipe C's encoder convolutions, then its decoder's transposed convolutions, on logits."""
    keras.utils.set_random_seed(seed)
    shape = (28, 28, 1) if data_format == "channels_last" else (1, 28, 28)
    images = keras.Input(shape)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", data_format=data_format)(images)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    logits = layers.Conv2DTranspose(1, 3, padding="same", data_format=data_format)(x)
    return keras.Model(images, logits)


def training_steps(data_format: str, images: tf.Tensor, seed: int = 0):
    """A compiled function running ``count`` RMSprop steps of the stack on ``images`` (NHWC)."""
    model = conv_stack(data_format, seed)
    optimizer = keras.optimizers.RMSprop()
    if data_format == "channels_first":
        images = tf.transpose(images, [0, 3, 1, 2])

    @tf.function
    def steps(count: tf.Tensor) -> tf.Tensor:
        loss = tf.constant(0.0)
        for _ in tf.range(count):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(images, logits))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return steps
