"""Recipe C's reference as a whole run: the Keras "Variational AutoEncoder" example's ``Model.fit`` on
Fashion-MNIST's training and test images together (bench/reference.py builds its model), for
``make bench`` to time against ``vae-train experiment=keras_vae_fashion``. The example reports its
training losses and evaluates nothing per epoch; at the end this script computes the test set's
negative ELBO (the reconstruction and the KL summed over latent dimensions, one posterior sample) so
the two runs' figures compare.

    python bench/keras_vae_fit.py --data <folder of Fashion-MNIST's IDX files> --epochs 10 --output <folder>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    from bench.tutorial_cvae import parse_arguments, read_idx_images

    args = parse_arguments(__doc__.split("\n\n")[0])
    import keras
    import tensorflow as tf

    from bench.reference import PIXELS, as_float_images, build_reference

    keras.utils.set_random_seed(args.seed)
    train = read_idx_images(args.data / "train-images-idx3-ubyte.gz")
    test = read_idx_images(args.data / "t10k-images-idx3-ubyte.gz")
    images = as_float_images(np.concatenate([train, test]))
    vae = build_reference(latent_dim=2, seed=args.seed)
    history = vae.fit(images, epochs=args.epochs, batch_size=64, verbose=2)
    test_images = as_float_images(test)
    z_mean, z_log_var, z = vae.encoder.predict(test_images, batch_size=500, verbose=0)
    reconstruction = vae.decoder.predict(z, batch_size=500, verbose=0)
    bce = keras.losses.binary_crossentropy(tf.constant(test_images), tf.constant(reconstruction))
    reconstruction_loss = float(np.mean(np.sum(bce.numpy().reshape(len(test_images), -1), axis=1)))
    kl = float(np.mean(np.sum(-0.5 * (1 + z_log_var - z_mean ** 2 - np.exp(z_log_var)), axis=1)))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps({
        "train_loss_last_epoch": float(history.history["loss"][-1]), "test_reconstruction": reconstruction_loss,
        "test_kl": kl, "test_loss": reconstruction_loss + kl, "pixels": PIXELS}, indent=2))


if __name__ == "__main__":
    main()
