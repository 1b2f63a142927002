"""The reference: recipe C of shared/reference/seed-models.md, the Keras "Variational AutoEncoder"
example applied to Fashion-MNIST, trained the way its source trains it: a ``keras.Model`` subclass
with a custom ``train_step``, ``compile(optimizer=RMSprop())`` and ``Model.fit`` on a NumPy array,
batch 64.

Written from the recipe's facts: encoder Conv2D(32, 3, 2, same, relu) -> Conv2D(64, 3, 2, same,
relu) -> Flatten -> Dense(16, relu) -> z_mean, z_log_var (Dense(latent_dim)) -> a sampling layer;
decoder Dense(7*7*64, relu) -> Reshape -> Conv2DTranspose(64, 3, 2, same, relu) ->
Conv2DTranspose(32, 3, 2, same, relu) -> Conv2DTranspose(1, 3, same, sigmoid). Loss: mean binary
cross-entropy x 784 plus -0.5 * mean(1 + z_log_var - z_mean^2 - exp(z_log_var)), the mean running
over the batch and the latent dimensions.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

PIXELS = 28 * 28


class Sampling(layers.Layer):
    """z = z_mean + exp(0.5 * z_log_var) * epsilon, epsilon ~ N(0, I)."""

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def build_encoder(latent_dim: int, seed: int) -> keras.Model:
    images = keras.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(images)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(seed)([z_mean, z_log_var])
    return keras.Model(images, [z_mean, z_log_var, z], name="encoder")


def build_decoder(latent_dim: int) -> keras.Model:
    codes = keras.Input((latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(codes)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
    probabilities = layers.Conv2DTranspose(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(codes, probabilities, name="decoder")


class ReferenceVAE(keras.Model):
    def __init__(self, latent_dim: int = 2, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = build_encoder(latent_dim, seed)
        self.decoder = build_decoder(latent_dim)
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = PIXELS * ops.mean(keras.losses.binary_crossentropy(data, reconstruction))
            kl_loss = -0.5 * ops.mean(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def build_reference(latent_dim: int = 2, seed: int = 0) -> ReferenceVAE:
    """Built in float32, as its source trains it, whatever the process's global policy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        model = ReferenceVAE(latent_dim, seed)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    model.compile(optimizer=keras.optimizers.RMSprop())
    return model


def copy_weights(source: tuple[keras.Model, keras.Model], target: tuple[keras.Model, keras.Model]) -> None:
    """Copy the weights of one (encoder, decoder) pair into another of the same layers, e.g.
    vae-train's conv VAE into the reference or back.

    The decoders differ only in where the sigmoid is: vae-train's last layer returns logits and
    applies the sigmoid inside its loss; the reference's applies it in the layer. The kernels are the same.
    """
    for mine, theirs in zip(source, target, strict=True):
        my_layers = [layer for layer in mine.layers if layer.trainable_weights]
        their_layers = [layer for layer in theirs.layers if layer.trainable_weights]
        if len(my_layers) != len(their_layers):
            raise ValueError(f"{mine.name}: {len(my_layers)} layers with weights, the other {len(their_layers)}")
        for layer, other in zip(my_layers, their_layers, strict=True):
            weights = layer.get_weights()
            if [w.shape for w in weights] != [w.shape for w in other.get_weights()]:
                raise ValueError(f"{layer.name} and {other.name} have different shapes")
            other.set_weights(weights)


def parts(model: ReferenceVAE) -> tuple[keras.Model, keras.Model]:
    return model.encoder, model.decoder


def as_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 (count, 28, 28), as the IDX files hold them, or (count, 28, 28, 1), as vae-train's data sets do
    -> float32 (count, 28, 28, 1) in [0, 1], as the recipe scales them."""
    if images.ndim == 3:
        images = np.expand_dims(images, -1)
    return images.astype("float32") / 255.0
