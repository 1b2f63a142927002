"""A finished run's encoder and decoder as standard ``.keras`` files, loadable with
``keras.saving.load_model`` in any Python with Keras, without this package.

``encoder.keras`` maps images (batch, 28, 28, 1) in [0, 1] to the code (a VAE: ``[z_mean,
z_log_var]``); ``decoder.keras`` maps codes to pixel probabilities (the sigmoid of the logits the
training decoder gives).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from vae_train.models import Autoencoder

EXPORT_DIR = "export"


def _save(model: keras.Model, path: Path) -> None:
    # Keras insists on the .keras suffix; the rename makes a kill leave the old file or the new.
    partial = path.with_name(f".partial.{path.name}")
    model.save(partial)
    os.replace(partial, path)


def export_models(model: Autoencoder, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(model.decoder.output)
    parts = {"encoder": model.encoder, "decoder": keras.Model(model.decoder.input, probabilities, name="decoder")}
    paths = {name: folder / f"{name}.keras" for name in parts}
    for name, part in parts.items():
        _save(part, paths[name])
    return paths
