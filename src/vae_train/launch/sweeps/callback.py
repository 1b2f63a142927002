"""The sweep callback: one summary of a multirun's jobs, and TensorBoard's HParams dashboard for it.

:class:`SweepCallback`, registered under ``hydra.callbacks`` in ``conf/config.yaml``, does the
work at the sweep's start and end and around each job, so it serves every launcher (basic, joblib,
submitit) and every sweeper (basic, Optuna) alike:

- at the start, the sweep's hyperparameters (the swept keys, from the command line and
  ``hydra.sweeper.params``) and its metrics are declared once, at the sweep root;
- at each job's start, the declaration and the job's values go into the job's folder, an HParams
  session, so TensorBoard's table and parallel-coordinates views fill in while the sweep runs; at
  its end, its status and score;
- at each job's end and at the sweep's end, ``summary.csv`` and ``summary.md`` are rewritten at
  the sweep root from the job folders: one row per job, sorted by the sweep score, failed jobs
  with their error.

A job that fails in a multirun returns a :class:`FailedJob` instead of raising (see ``launch/train_cli.py``):
Hydra's basic sweeper raises at the end of a batch with a failed job, which would skip the
summary, while the Optuna sweeper records any non-number it gets back as a failed trial.

Nothing here imports TensorFlow: the callback also runs in the launching process of joblib and
submitit sweeps, which never trains. Event files are written with TensorBoard's pure-Python
record writer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vae_train.files import shown_path
from vae_train.launch.sweeps.hparams import (
    job_hyperparameters,
    swept_hyperparameters,
    write_hparams_config,
    write_job_end,
    write_job_hparams,
)
from vae_train.launch.sweeps.outcome import ERROR_FILE, FailedJob, describe_error, record_failure
from vae_train.launch.sweeps.summary import SUMMARY_CSV, SUMMARY_MD, shared_overrides, write_summary
from vae_train.runtime.cluster import is_chief_process

log = logging.getLogger(__name__)


def _in_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def _output_subdir(config: DictConfig) -> str:
    return OmegaConf.select(config, "hydra.output_subdir") or ".hydra"


class SweepCallback(Callback):
    """Summaries and HParams for multiruns; does nothing in a single run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper_params = OmegaConf.select(config, "hydra.sweeper.params")
        params = OmegaConf.to_container(sweeper_params) if sweeper_params is not None else None
        arguments = OmegaConf.to_container(config.hydra.overrides.task)
        hyperparameters = swept_hyperparameters(params, arguments)
        if hyperparameters:
            write_hparams_config(Path(config.hydra.sweep.dir), hyperparameters)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _in_multirun(config) or not is_chief_process():  # a job of several workers: the chief's
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        # A sweep run again into the same folder: this attempt's outcome replaces the last one's.
        (job_dir / ERROR_FILE).unlink(missing_ok=True)
        values = job_hyperparameters(OmegaConf.to_container(config.hydra.overrides.task))
        write_job_hparams(job_dir, values, Path(config.hydra.sweep.dir), trial_id=str(config.hydra.job.num))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _in_multirun(config) or not is_chief_process():
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        returned = job_return._return_value  # the property re-raises a failed job's exception
        if job_return.status == JobStatus.FAILED:
            record_failure(job_dir, describe_error(returned))
        elif isinstance(returned, FailedJob):
            record_failure(job_dir, returned.error)
        # Rewritten after every job, so a long sweep can be followed, and a sweep that stops
        # early (Ctrl-C, a crashed sweeper) still leaves a summary of what it did.
        rows = write_summary(Path(config.hydra.sweep.dir), _output_subdir(config))
        row = next((row for row in rows if row.folder.resolve() == job_dir.resolve()), None)
        if row is not None:
            write_job_end(job_dir, row.status, row.score, step=int(row.results.get("steps") or 0))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir, _output_subdir(config))
        finished = [row for row in rows if row.status == "ok"]
        if finished and finished[0].score is not None:
            best, shared = finished[0], shared_overrides(rows)
            log.info("Best of %d jobs: #%d (%s), score %.6g.", len(rows), best.number,
                     " ".join(f"{key}={value}" for key, value in best.overrides.items() if key not in shared),
                     best.score)
        not_finished = len(rows) - len(finished)
        if not_finished:
            log.warning("%d of %d jobs did not finish; their errors are in the summary.", not_finished, len(rows))
        shown = shown_path(sweep_dir)
        log.info("Sweep summary: %s/%s and %s/%s; tensorboard --logdir %s",
                 shown, SUMMARY_MD, shown, SUMMARY_CSV, shown)
