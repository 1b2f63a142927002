"""Hardware set-up: CPU threads, GPU pinning and memory growth, the compute precision and the
distribution strategy."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from vae_train.config import Precision
from vae_train.errors import ConfigError
from vae_train.runtime.cluster import is_chief_task, slurm_step_tasks
from vae_train.runtime.precision import ComputePrecision, resolve_precision
from vae_train.runtime.slurm import slurm_cluster_resolver

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


@dataclass(frozen=True)
class WorkerOptions:
    """How the workers of a multi-worker run meet (trainer.worker_port, trainer.worker_timeout_seconds)."""

    port: int = 8888
    timeout_seconds: float = 300.0


def _check_port_free(resolver) -> None:
    """Refuse, naming the port, when another process listens on the one this worker must take: gRPC
    would otherwise fail later with a message about the server, or the workers would wait."""
    address = resolver.cluster_spec().task_address(resolver.task_type, resolver.task_id)
    port = int(address.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as err:
            raise ConfigError(
                f"Port {port} on {socket.gethostname()}, where worker {resolver.task_id} of this run must "
                f"listen ({address}), is taken ({err.strerror or err}): another job, or a run still exiting. "
                "Under SLURM, give every task another first port with trainer.worker_port=<port>; with "
                "TF_CONFIG, change this worker's address there.") from None


def _cluster_resolver(options: WorkerOptions):
    """The cluster of a multi-worker run: TF_CONFIG's, else the SLURM job step's (several tasks)."""
    if "TF_CONFIG" in os.environ:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    elif slurm_step_tasks() > 1:
        resolver = slurm_cluster_resolver(options.port)
    else:
        raise ConfigError(
            "trainer.strategy=multi_worker needs a cluster: run it in a SLURM job step of several tasks "
            "(srun, or hydra/launcher=submitit_slurm with hydra.launcher.nodes or tasks_per_node above 1), "
            "or set the TF_CONFIG environment variable describing the workers' addresses and this one's "
            "index; see the README's \"Scaling out\" section.")
    _check_port_free(resolver)
    return resolver


def _multi_worker(resolver, options: WorkerOptions) -> tf.distribute.Strategy:
    # A worker that dies, or never comes, fails the others' collective ops after the timeout
    # instead of leaving them waiting.
    communication = tf.distribute.experimental.CommunicationOptions(timeout_seconds=options.timeout_seconds)
    cluster = resolver.cluster_spec()
    workers = sum(len(cluster.job_tasks(job)) for job in cluster.jobs)
    source = f"SLURM job {os.environ.get('SLURM_JOB_ID', '?')}" if isinstance(
        resolver, tf.distribute.cluster_resolver.SlurmClusterResolver) else "TF_CONFIG"
    role = "the chief" if is_chief_task(resolver.task_type, resolver.task_id, cluster.jobs) else "not the chief"
    log.info("Worker: %s %d of %d workers (%s) at %s on %s, %s.", resolver.task_type, resolver.task_id, workers,
             source, cluster.task_address(resolver.task_type, resolver.task_id), socket.gethostname(), role)
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=communication)


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


# multi_worker is not here: it needs its cluster, resolved before TensorFlow lists the GPUs.
STRATEGIES: dict[str, Callable[[], tf.distribute.Strategy]] = {
    "auto": _auto,
    "one_device": _one_device,
    "mirrored": _mirrored,
}
STRATEGY_NAMES = (*STRATEGIES, "multi_worker")


@dataclass(frozen=True)
class Devices:
    strategy: tf.distribute.Strategy  # what the model is built and trained under
    precision: ComputePrecision


def set_up_devices(strategy: str, precision: Precision, cpu_threads: int | None = None,
                   gpu: int | None = None, workers: WorkerOptions = WorkerOptions()) -> Devices:
    """Configure the devices; the strategy to build and train the model under, and the compute
    precision ``precision`` (``trainer.precision``) resolves to for these devices. ``auto`` in a SLURM
    job step of several tasks is ``multi_worker``."""
    if strategy not in STRATEGY_NAMES:
        raise ConfigError(f"trainer.strategy={strategy!r} is not one of {', '.join(STRATEGY_NAMES)}.")
    if strategy == "auto" and slurm_step_tasks() > 1:
        strategy = "multi_worker"
    # These only take effect before TensorFlow initializes its runtime, so they come first; the
    # cluster too, as SLURM's resolver may choose this task's GPUs.
    _limit_cpu_threads(cpu_threads)
    resolver = _cluster_resolver(workers) if strategy == "multi_worker" else None
    _pin_gpu(gpu)
    gpus = _enable_memory_growth()
    chosen = _multi_worker(resolver, workers) if resolver is not None else STRATEGIES[strategy]()
    resolved = resolve_precision(precision, gpus=len(gpus), replicas=chosen.num_replicas_in_sync)
    log.info("Devices: %d GPU(s); CPU threads: %s; strategy %s with %d replica(s); precision %s.",
             len(gpus), tf.config.threading.get_intra_op_parallelism_threads() or "all",
             type(chosen).__name__, chosen.num_replicas_in_sync, resolved.policy)
    return Devices(chosen, resolved)
