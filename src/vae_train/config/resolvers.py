"""Sharing one machine between the parallel jobs of a sweep.

``trainer.cpu_threads`` and ``trainer.gpu`` default to the config resolvers registered here, which
read the launcher's settings from the job's Hydra config: under ``hydra/launcher=joblib`` each of
the ``n_jobs`` parallel jobs gets an equal share of the cores, and the GPU of its job number;
under submitit, ``hydra.launcher.cpus_per_task`` threads (the scheduler gives each job its GPUs).
A single run, and a multirun on the basic launcher, which runs one job at a time, get None:
TensorFlow's own choice of all cores and all GPUs.

No TensorFlow here: the resolvers run while Hydra composes and resolves the config.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

CPU_THREADS_RESOLVER = "vae_train.cpu_threads_per_job"
GPU_RESOLVER = "vae_train.gpu_per_job"


def available_cores() -> int:
    """Cores this process may run on (a SLURM or taskset CPU mask counts, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def concurrent_jobs(n_jobs: int | None, cores: int) -> int:
    """How many jobs joblib runs at once for ``n_jobs``: -1 is one per core, -2 all cores but one..."""
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return n_jobs


def threads_per_job(parallel_jobs: int, cores: int) -> int | None:
    """An equal share of the cores, at least one thread; None (no limit) for a job on its own."""
    if parallel_jobs <= 1:
        return None
    return max(1, cores // parallel_jobs)


def _launcher_and_job():
    """The job's launcher config and number, or None outside a multirun job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return hydra_config.launcher, OmegaConf.select(hydra_config, "job.num")


def _joblib_parallelism(launcher) -> int:
    if "n_jobs" not in launcher:  # not joblib
        return 1
    return concurrent_jobs(launcher.n_jobs, available_cores())


def cpu_threads_per_job() -> int | None:
    found = _launcher_and_job()
    if found is None:
        return None
    launcher, _ = found
    if "n_jobs" in launcher:
        return threads_per_job(_joblib_parallelism(launcher), available_cores())
    return OmegaConf.select(launcher, "cpus_per_task", default=None)


def gpu_per_job() -> int | None:
    found = _launcher_and_job()
    if found is None:
        return None
    launcher, job_number = found
    return job_number if _joblib_parallelism(launcher) > 1 else None


def register_resolvers() -> None:
    for name, resolver in ((CPU_THREADS_RESOLVER, cpu_threads_per_job), (GPU_RESOLVER, gpu_per_job)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
