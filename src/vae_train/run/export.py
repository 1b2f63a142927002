"""A finished run's encoder and decoder as standard ``.keras`` files, loadable with
``keras.saving.load_model`` in any Python with Keras, without this package.

``encoder.keras`` maps images (batch, height, width, 1) in [0, 1] to the code (a VAE: ``[z_mean,
z_log_var]``); ``decoder.keras`` maps codes to pixel probabilities (the sigmoid of the logits the
training decoder gives).
"""

from __future__ import annotations

from pathlib import Path

import keras

from vae_train.files import replace_atomically
from vae_train.models import Autoencoder


def _save(model: keras.Model, path: Path) -> None:
    # The rename makes a kill leave the old file or the new.
    replace_atomically(path, model.save)


def _float32(part: keras.Model) -> keras.Model:
    """The same layers and weights computing in float32: a mixed-precision run's layers compute in
    16 bits and return 16-bit tensors, slow or unsupported where the file is loaded."""
    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    if all(layer.dtype_policy.name == "float32" for layer in part.layers):
        return part
    copy = keras.models.clone_model(part, clone_function=clone)
    copy.set_weights(part.get_weights())
    return copy


def export_models(model: Autoencoder, folder: Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder, decoder = _float32(model.encoder), _float32(model.decoder)
    probabilities = keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(decoder.output)
    parts = {"encoder": encoder, "decoder": keras.Model(decoder.input, probabilities, name="decoder")}
    paths = {name: folder / f"{name}.keras" for name in parts}
    for name, part in parts.items():
        _save(part, paths[name])
    return paths
