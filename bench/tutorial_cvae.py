"""Recipe A's reference: the TensorFlow "Convolutional Variational Autoencoder" tutorial's own training
loop, as a script, for ``make bench`` to time a whole run of it against ``vae-train
experiment=tf_cvae_tutorial``.

Written from shared/reference/seed-models.md: binarized MNIST (pixel >= 0.5), shuffled over the
whole training set, batches of 32; the inference net Conv2D(32, 3, 2, valid, relu) ->
Conv2D(64, 3, 2, valid, relu) -> Flatten -> Dense(2 * latent_dim); the generative net
Dense(7*7*32, relu) -> Reshape -> Conv2DTranspose(64, 3, 2, same, relu) -> Conv2DTranspose(32, 3, 2,
same, relu) -> Conv2DTranspose(1, 3, 1, same) (logits); the loss the single-sample Monte Carlo
negative ELBO; Adam 1e-4. After each epoch, as the tutorial: the test ELBO over the test set and a
4x4 picture of the decodings of 16 fixed test images, saved as a PNG.

    python bench/tutorial_cvae.py --data <folder of MNIST's IDX files> --epochs 10 --output <folder>
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf


def read_idx_images(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    count, rows, columns = (int.from_bytes(raw[4 * i:4 * i + 4], "big") for i in (1, 2, 3))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, columns)


def preprocess(images: np.ndarray) -> np.ndarray:
    images = images.reshape((images.shape[0], 28, 28, 1)) / 255.0
    return np.where(images >= 0.5, 1.0, 0.0).astype("float32")


class CVAE(tf.keras.Model):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = tf.keras.Sequential([
            tf.keras.layers.InputLayer(shape=(28, 28, 1)),
            tf.keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
            tf.keras.layers.Conv2D(64, 3, strides=2, activation="relu"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(latent_dim + latent_dim),
        ])
        self.decoder = tf.keras.Sequential([
            tf.keras.layers.InputLayer(shape=(latent_dim,)),
            tf.keras.layers.Dense(7 * 7 * 32, activation="relu"),
            tf.keras.layers.Reshape((7, 7, 32)),
            tf.keras.layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
            tf.keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
            tf.keras.layers.Conv2DTranspose(1, 3, strides=1, padding="same"),
        ])

    def encode(self, x):
        mean, logvar = tf.split(self.encoder(x), num_or_size_splits=2, axis=1)
        return mean, logvar

    def reparameterize(self, mean, logvar):
        eps = tf.random.normal(shape=tf.shape(mean))
        return eps * tf.exp(logvar * 0.5) + mean

    def decode(self, z, apply_sigmoid=False):
        logits = self.decoder(z)
        return tf.sigmoid(logits) if apply_sigmoid else logits


def log_normal_pdf(sample, mean, logvar, raxis=1):
    log2pi = tf.math.log(2.0 * math.pi)
    return tf.reduce_sum(-0.5 * ((sample - mean) ** 2.0 * tf.exp(-logvar) + logvar + log2pi), axis=raxis)


def compute_loss(model: CVAE, x):
    mean, logvar = model.encode(x)
    z = model.reparameterize(mean, logvar)
    x_logit = model.decode(z)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(logits=x_logit, labels=x)
    logpx_z = -tf.reduce_sum(cross_entropy, axis=[1, 2, 3])
    logpz = log_normal_pdf(z, 0.0, 0.0)
    logqz_x = log_normal_pdf(z, mean, logvar)
    return -tf.reduce_mean(logpx_z + logpz - logqz_x)


@tf.function
def train_step(model, x, optimizer):
    with tf.GradientTape() as tape:
        loss = compute_loss(model, x)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))


def save_picture(model: CVAE, test_sample, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    mean, logvar = model.encode(test_sample)
    predictions = model.decode(model.reparameterize(mean, logvar), apply_sigmoid=True)
    figure = plt.figure(figsize=(4, 4))
    for i in range(predictions.shape[0]):
        plt.subplot(4, 4, i + 1)
        plt.imshow(predictions[i, :, :, 0], cmap="gray")
        plt.axis("off")
    plt.savefig(path)
    plt.close(figure)


def parse_arguments(description: str) -> argparse.Namespace:
    """The reference scripts' arguments: the data folder, the epochs, the output folder, the seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments(__doc__.split("\n\n")[0])
    tf.random.set_seed(args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    train_images = preprocess(read_idx_images(args.data / "train-images-idx3-ubyte.gz"))
    test_images = preprocess(read_idx_images(args.data / "t10k-images-idx3-ubyte.gz"))
    batch_size = 32
    train_dataset = tf.data.Dataset.from_tensor_slices(train_images).shuffle(len(train_images)).batch(batch_size)
    test_dataset = tf.data.Dataset.from_tensor_slices(test_images).shuffle(len(test_images)).batch(batch_size)
    optimizer = tf.keras.optimizers.Adam(1e-4)
    model = CVAE(latent_dim=2)
    for test_batch in test_dataset.take(1):
        test_sample = test_batch[0:16, :, :, :]
    epochs = []
    for epoch in range(1, args.epochs + 1):
        start_time = time.time()
        for train_x in train_dataset:
            train_step(model, train_x, optimizer)
        end_time = time.time()
        loss = tf.keras.metrics.Mean()
        for test_x in test_dataset:
            loss(compute_loss(model, test_x))
        elbo = -float(loss.result())
        save_picture(model, test_sample, args.output / f"image_at_epoch_{epoch:04d}.png")
        epochs.append({"epoch": epoch, "test_elbo": elbo, "train_seconds": end_time - start_time,
                       "epoch_seconds": time.time() - start_time})
        print(f"Epoch: {epoch}, Test set ELBO: {elbo}, time elapse for current epoch: {end_time - start_time}",
              flush=True)
    (args.output / "results.json").write_text(json.dumps({"epochs": epochs}, indent=2))


if __name__ == "__main__":
    main()
