"""The model zoo. Every module in this package is imported here so its models register."""

import importlib
import pkgutil

from vae_train.models.base import Autoencoder, VariationalAutoencoder
from vae_train.models.registry import get_model_class, register_model, registered_models

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_model(config, latent_dim: int, seed: int) -> Autoencoder:
    """The registered model named ``config.name``, with its encoder and decoder built."""
    return get_model_class(config.name)(config, latent_dim=latent_dim, seed=seed)


__all__ = [
    "Autoencoder", "VariationalAutoencoder", "build_model", "get_model_class",
    "register_model", "registered_models",
]
