"""Hardware set-up: GPU memory growth, the compute precision and the distribution strategy."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from vae_train.errors import ConfigError

log = logging.getLogger(__name__)


def _enable_memory_growth() -> list:
    """Allocate GPU memory as needed, so parallel jobs can share a GPU instead of one taking it all."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialized, e.g. by an earlier run in the same process.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def _one_device() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _mirrored() -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy()


def _multi_worker() -> tf.distribute.Strategy:
    if "TF_CONFIG" not in os.environ:
        raise ConfigError(
            "trainer.strategy=multi_worker needs the TF_CONFIG environment variable describing the "
            "cluster (worker addresses and this worker's index); see the README's multi-machine section."
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _auto() -> tf.distribute.Strategy:
    return _mirrored() if len(tf.config.list_logical_devices("GPU")) > 1 else _one_device()


STRATEGIES: dict[str, Callable[[], tf.distribute.Strategy]] = {
    "auto": _auto,
    "one_device": _one_device,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}


def set_up_devices(strategy: str, mixed_precision: bool) -> tf.distribute.Strategy:
    """Configure the devices and return the strategy to build and train the model under."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"trainer.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}.")
    gpus = _enable_memory_growth()
    # Keras reads the policy when layers are created, so this precedes model building.
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed_precision else "float32")
    chosen = STRATEGIES[strategy]()
    log.info("Devices: %d GPU(s); strategy %s with %d replica(s); precision %s.",
             len(gpus), type(chosen).__name__, chosen.num_replicas_in_sync,
             "mixed_float16" if mixed_precision else "float32")
    return chosen
