"""Keras optimizers by config name; every config field but ``name`` is a constructor argument."""

from __future__ import annotations

import dataclasses

import keras

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}


def build_optimizer(config, precision: str) -> keras.optimizers.Optimizer:
    """``precision``: the run's Keras dtype policy name."""
    arguments = {key: value for key, value in dataclasses.asdict(config).items()
                 if key != "name" and value is not None}
    optimizer = OPTIMIZERS[config.name](**arguments)
    # float16 gradients underflow without loss scaling; the wrapper scales and unscales them.
    # bfloat16 has float32's exponent range and needs none.
    return keras.optimizers.LossScaleOptimizer(optimizer) if precision == "mixed_float16" else optimizer
