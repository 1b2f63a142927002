"""Keras optimizers by config name; every config field but ``name`` and the schedule's keys is a
constructor argument."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras

from vae_train.config import Schedule
from vae_train.runtime.precision import ComputePrecision

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}
SCHEDULE_KEYS = ("schedule", "warmup_steps", "final_learning_rate_fraction")

# (optimizer config, total training steps) -> the learning rate Keras is given.
SCHEDULES: dict[Schedule, Callable[[object, int], float | keras.optimizers.schedules.LearningRateSchedule]] = {
    Schedule.constant: lambda config, total_steps: config.learning_rate,
    Schedule.cosine: lambda config, total_steps: keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, total_steps), alpha=config.final_learning_rate_fraction),
    Schedule.warmup_cosine: lambda config, total_steps: keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - config.warmup_steps), alpha=config.final_learning_rate_fraction,
        warmup_target=config.learning_rate, warmup_steps=config.warmup_steps),
}


def build_optimizer(config, precision: ComputePrecision, total_steps: int = 0) -> keras.optimizers.Optimizer:
    """The optimizer of ``config`` for a model computing in ``precision``; a schedule decays over
    ``total_steps``, the run's training steps."""
    arguments = {key: value for key, value in dataclasses.asdict(config).items()
                 if key != "name" and key not in SCHEDULE_KEYS and value is not None}
    arguments["learning_rate"] = SCHEDULES[config.schedule](config, total_steps)
    optimizer = OPTIMIZERS[config.name](**arguments)
    # The wrapper scales the loss up and the gradients back down, so float16 gradients do not underflow.
    return keras.optimizers.LossScaleOptimizer(optimizer) if precision.loss_scaling else optimizer
