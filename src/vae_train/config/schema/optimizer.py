"""The optimizer group: every field but ``name`` and the schedule's keys goes to the Keras optimizer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING

from vae_train.config.schema.common import option_schema, require, require_positive


class Schedule(Enum):
    """The learning rate over training (Keras' schedules); it ends at trainer.epochs."""

    constant = "constant"
    cosine = "cosine"  # cosine decay from optimizer.learning_rate
    warmup_cosine = "warmup_cosine"  # linear warm-up from 0 over optimizer.warmup_steps, then cosine decay


@dataclass
class OptimizerConfig:
    """Every field but ``name`` is passed to the Keras optimizer of that name."""

    name: str = MISSING
    learning_rate: float = MISSING
    # Clip each variable's gradient to this norm (Keras clips per variable); null: no clipping.
    clipnorm: float | None = None
    # The schedule's keys; build_optimizer reads them, the Keras optimizer does not get them.
    schedule: Schedule = Schedule.constant
    warmup_steps: int = 0
    # cosine schedules end at this fraction of optimizer.learning_rate (Keras' alpha).
    final_learning_rate_fraction: float = 0.0

    def __post_init__(self) -> None:
        require_positive(self.learning_rate, "optimizer.learning_rate")
        require_positive(self.clipnorm, "optimizer.clipnorm")
        require(self.warmup_steps >= 0, f"optimizer.warmup_steps must be >= 0, got {self.warmup_steps}.")
        require(self.schedule is not Schedule.warmup_cosine or self.warmup_steps > 0,
                "optimizer.schedule=warmup_cosine needs optimizer.warmup_steps > 0.")
        require(0.0 <= self.final_learning_rate_fraction <= 1.0,
                 f"optimizer.final_learning_rate_fraction must be in [0, 1], got {self.final_learning_rate_fraction}.")


@option_schema("optimizer", "sgd")
@dataclass
class SGDConfig(OptimizerConfig):
    # Losses are summed over the pixels, so gradients are large: 1e-2 diverges.
    learning_rate: float = 3.0e-4
    momentum: float = 0.9
    nesterov: bool = False


@option_schema("optimizer", "adam")
@dataclass
class AdamConfig(OptimizerConfig):
    learning_rate: float = 1.0e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7


@option_schema("optimizer", "rmsprop")
@dataclass
class RMSpropConfig(OptimizerConfig):
    learning_rate: float = 1.0e-3
    rho: float = 0.9
    momentum: float = 0.0
    epsilon: float = 1e-7
