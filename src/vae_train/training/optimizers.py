"""Keras optimizers by config name; every config field but ``name`` is a constructor argument."""

from __future__ import annotations

import dataclasses

import keras

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}


def build_optimizer(config, mixed_precision: bool) -> keras.optimizers.Optimizer:
    arguments = {key: value for key, value in dataclasses.asdict(config).items()
                 if key != "name" and value is not None}
    optimizer = OPTIMIZERS[config.name](**arguments)
    # float16 gradients underflow without loss scaling; the wrapper scales and unscales them.
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer
