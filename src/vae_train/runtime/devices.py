"""Hardware set-up: CPU threads, GPU pinning and memory growth, the compute precision and the
distribution strategy."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from vae_train.config import Precision
from vae_train.errors import ConfigError
from vae_train.runtime.precision import ComputePrecision, resolve_precision

log = logging.getLogger(__name__)

# Room for the group keys of one strategy's collective ops (TensorFlow's tests use the same).
_COLLECTIVE_KEYS_PER_STRATEGY = 100_000


def _limit_cpu_threads(threads: int | None) -> None:
    """Cap TensorFlow's thread pools, so parallel jobs on one machine do not oversubscribe it."""
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow is already running in this process (a worker reused by joblib, or an
        # earlier run); its pools keep the size the first run set.
        log.info("CPU threads stay at %d: TensorFlow was initialized earlier in this process.",
                 tf.config.threading.get_intra_op_parallelism_threads())


def gpu_for_job(gpu: int, gpu_count: int) -> int:
    """The GPU a run asked for as ``trainer.gpu`` (for parallel jobs: its job number), modulo the
    number of GPUs, so job k of a parallel sweep on n GPUs runs on GPU k mod n."""
    return gpu % gpu_count


def _pin_gpu(gpu: int | None) -> None:
    """Show this process only one GPU; must precede any use of a GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpu is None or not gpus:
        return
    chosen = gpus[gpu_for_job(gpu, len(gpus))]
    try:
        tf.config.set_visible_devices([chosen], "GPU")
    except RuntimeError:
        # Already initialized in this process (a reused joblib worker): it keeps its first GPU.
        log.info("GPU pinning unchanged: TensorFlow was initialized earlier in this process.")


def _enable_memory_growth() -> list:
    """Allocate GPU memory as needed, so parallel jobs can share a GPU instead of one taking it all."""
    gpus = tf.config.get_visible_devices("GPU")
    for gpu in gpus:
        # RuntimeError: already initialized, e.g. by an earlier run in the same process.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    return gpus


def _one_device() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _mirrored() -> tf.distribute.Strategy:
    # Every MirroredStrategy numbers its collective ops from the same key, so the second one in a
    # process (the next job of a multirun on the basic launcher) reused the first one's keys with
    # other shapes and failed: "Shape mismatch in the collective instance 100" (tensorflow#62790).
    # A fresh key range per strategy, as TensorFlow's own tests do, keeps them apart.
    tf.distribute.MirroredStrategy._collective_key_base += _COLLECTIVE_KEYS_PER_STRATEGY
    # Without GPUs, every logical CPU device: one unless configured, and two in the tests, which
    # check that replicas train exactly like one device.
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def _multi_worker() -> tf.distribute.Strategy:
    if "TF_CONFIG" not in os.environ:
        raise ConfigError(
            "trainer.strategy=multi_worker needs the TF_CONFIG environment variable describing the "
            "cluster (worker addresses and this worker's index); see the README's multi-machine section."
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _auto() -> tf.distribute.Strategy:
    return _mirrored() if len(tf.config.list_logical_devices("GPU")) > 1 else _one_device()


def trains_on_host_cpu(strategy: tf.distribute.Strategy) -> bool:
    """One replica on the host's CPU: the input needs no distributing to reach it."""
    devices = strategy.extended.worker_devices
    return (isinstance(strategy, tf.distribute.OneDeviceStrategy) and len(devices) == 1
            and tf.DeviceSpec.from_string(devices[0]).device_type == "CPU")


def distribute_input(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """``dataset`` as the strategy's steps read it: distributed over the replicas, or as it is when
    one replica trains on the host CPU. There distributing moves nothing and costs ~0.2 ms per
    batch, which capped the training input at ~5x dense_ae's training rate."""
    if trains_on_host_cpu(strategy):
        return dataset
    return strategy.experimental_distribute_dataset(dataset)


STRATEGIES: dict[str, Callable[[], tf.distribute.Strategy]] = {
    "auto": _auto,
    "one_device": _one_device,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}


@dataclass(frozen=True)
class Devices:
    strategy: tf.distribute.Strategy  # what the model is built and trained under
    precision: ComputePrecision


def set_up_devices(strategy: str, precision: Precision, cpu_threads: int | None = None,
                   gpu: int | None = None) -> Devices:
    """Configure the devices; the strategy to build and train the model under, and the compute
    precision ``precision`` (``trainer.precision``) resolves to for these devices."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"trainer.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}.")
    # Both only take effect before TensorFlow initializes its runtime, so they come first.
    _limit_cpu_threads(cpu_threads)
    _pin_gpu(gpu)
    gpus = _enable_memory_growth()
    chosen = STRATEGIES[strategy]()
    resolved = resolve_precision(precision, gpus=len(gpus), replicas=chosen.num_replicas_in_sync)
    log.info("Devices: %d GPU(s); CPU threads: %s; strategy %s with %d replica(s); precision %s.",
             len(gpus), tf.config.threading.get_intra_op_parallelism_threads() or "all",
             type(chosen).__name__, chosen.num_replicas_in_sync, resolved.policy)
    return Devices(chosen, resolved)
