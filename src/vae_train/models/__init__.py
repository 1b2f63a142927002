"""The model zoo. Every module in this package is imported here so its models register."""

import importlib
import pkgutil

from vae_train.models.base import Autoencoder, VariationalAutoencoder
from vae_train.models.registry import get_model_class, register_model, registered_models
from vae_train.runtime.precision import ComputePrecision

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_model(config, latent_dim: int, image_shape: tuple[int, int, int], seed: int,
                precision: ComputePrecision | None = None) -> Autoencoder:
    """The registered model named ``config.name`` for images of ``image_shape`` (the data's), its
    encoder and decoder built to compute in ``precision`` (float32 if None)."""
    model_class = get_model_class(config.name)
    with (precision or ComputePrecision("float32")).building_layers():
        return model_class(config, latent_dim=latent_dim, image_shape=image_shape, seed=seed)


__all__ = [
    "Autoencoder", "VariationalAutoencoder", "build_model", "get_model_class",
    "register_model", "registered_models",
]
