"""Sweeps: one summary of a multirun's jobs, and TensorBoard's HParams dashboard for it.

:class:`SweepCallback`, registered under ``hydra.callbacks`` in ``conf/config.yaml``, does the
work at the sweep's start and end and around each job, so it serves every launcher (basic, joblib,
submitit) and every sweeper (basic, Optuna) alike:

- at the start, the sweep's hyperparameters (the swept keys, from the command line and
  ``hydra.sweeper.params``) and its metrics are declared once in an event file at the sweep root;
- at each job's start, the job's values go into ``<job>/tensorboard``, so TensorBoard's table and
  parallel-coordinates views fill in while the sweep runs;
- at each job's end and at the sweep's end, ``summary.csv`` and ``summary.md`` are rewritten at
  the sweep root from the job folders: one row per job, sorted by the objective, failed jobs
  with their error.

A job that fails in a multirun returns a :class:`FailedJob` instead of raising (see ``cli.py``):
Hydra's basic sweeper raises at the end of a batch with a failed job, which would skip the
summary, while the Optuna sweeper records any non-number it gets back as a failed trial.

Nothing here imports TensorFlow: the callback also runs in the launching process of joblib and
submitit sweeps, which never trains. Event files are written with TensorBoard's pure-Python
record writer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vae_train.files import read_json_object, write_atomically

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
ERROR_FILE = "error.json"
RESULTS_FILE = "results.json"  # written by vae_train.train; read here without importing it (TensorFlow)
# Each job's HParams session: the job's TensorBoard folder, whose train/ and test/ hold the metrics.
SESSION_FOLDER = "tensorboard"

# The metrics the HParams dashboard shows, as (group, tag, column title, description). group is
# the folder under a job's session folder that holds the scalar; "" is the session folder itself.
HPARAMS_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("", "objective", "objective", "The test loss, or the negative ELBO for VAEs: what sweeps minimize."),
    ("test", "loss", "test loss", "Test loss, nats per image."),
    ("test", "elbo", "test ELBO", "Test evidence lower bound (VAEs), nats per image."),
    ("test", "reconstruction", "test reconstruction", "Test reconstruction loss, nats per image."),
    ("test", "kl", "test KL", "Test KL divergence to the prior (VAEs), nats per image."),
    ("train", "loss", "train loss", "Training loss of the last epoch, nats per image."),
    ("train", "images_per_second", "images/s", "Training throughput."),
)

# The order of the summary's metric columns; results.json keys not named here follow.
_LEADING_METRICS = ("test_loss", "test_elbo", "test_reconstruction", "test_kl", "train_loss")
_TRAILING_METRICS = ("epochs", "steps", "parameters", "images_per_second")
_SUMMARY_ERROR_CHARS = 300


def objective(results: dict) -> float:
    """What sweepers minimize: the negative ELBO for VAEs (whatever ``model.beta`` weighs the KL
    term by), else the test loss. Both are nats per image, so different models compare."""
    if results.get("test_elbo") is not None:
        return -float(results["test_elbo"])
    return float(results["test_loss"])


@dataclass(frozen=True)
class FailedJob:
    """What a multirun job returns instead of its objective when it failed.

    Not a number on purpose: the Optuna sweeper marks the trial failed and samples on, and
    Hydra's basic sweeper, which ignores return values, runs the remaining jobs.
    """

    error: str

    def __str__(self) -> str:
        return f"no objective, the job failed: {self.error}"


def describe_error(error: BaseException) -> str:
    """``Type: message`` on one line, as the summary shows it."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def record_failure(job_dir: Path, error: str) -> None:
    """Leave the job's error in its folder, where the summary finds it."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(job_dir / ERROR_FILE, json.dumps({"error": error}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# The summary


@dataclass
class JobRow:
    number: int
    folder: Path
    overrides: dict[str, str]
    status: str  # ok, failed, stopped (by a signal, resumable) or unfinished (no results yet)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def objective(self) -> float | None:
        if self.status != "ok":
            return None
        try:
            return objective(self.results)
        except (KeyError, TypeError, ValueError):
            return None


def _split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _read_job(folder: Path, output_subdir: str) -> JobRow:
    hydra_dir = folder / output_subdir
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    try:
        number = int(yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]["job"]["num"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        number = int(folder.name) if folder.name.isdigit() else -1
    row = JobRow(number, folder, dict(_split_override(str(item)) for item in overrides), "unfinished")
    failure = read_json_object(folder / ERROR_FILE)
    results = read_json_object(folder / RESULTS_FILE)
    if results is not None:
        row.results = results
    if failure is not None:
        row.status, row.error = "failed", str(failure.get("error"))
    elif results is None:
        row.error = "no results.json: the job is running, or was killed; see its log"
    elif results.get("error"):
        row.status, row.error = "failed", str(results["error"])
    elif results.get("finished") is False:
        row.status = "stopped"
        row.error = f"stopped by {results.get('stopped_by', 'a signal')}; the same command resumes it"
    else:
        row.status = "ok"
    return row


def collect_jobs(sweep_dir: Path, output_subdir: str = ".hydra") -> list[JobRow]:
    """Every job folder under the sweep root (any ``hydra.sweep.subdir`` layout), by job number."""
    sweep_dir = Path(sweep_dir)
    folders = sorted({path.parent.parent for path in sweep_dir.glob(f"**/{output_subdir}/overrides.yaml")})
    rows = []
    for folder in folders:
        try:
            rows.append(_read_job(folder, output_subdir))
        except (OSError, yaml.YAMLError) as err:  # a folder being written right now
            log.debug("Skipping %s: %s", folder, err)
    return sorted(rows, key=lambda row: (row.number, str(row.folder)))


def rank(rows: Iterable[JobRow]) -> list[JobRow]:
    """Finished jobs by objective (best first), then stopped, unfinished and failed ones by number."""
    order = {"ok": 0, "stopped": 1, "unfinished": 2, "failed": 3}

    def key(row: JobRow):
        value = row.objective
        return (order[row.status], value is None or math.isnan(value),
                value if value is not None and not math.isnan(value) else 0.0, row.number)

    return sorted(rows, key=key)


def _metric_columns(rows: Sequence[JobRow]) -> list[str]:
    present: dict[str, None] = {}
    for row in rows:
        for key, value in row.results.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                present[key] = None
    metrics = [key for key in present if key.startswith(("test_", "train_")) or key in _TRAILING_METRICS]
    leading = [key for key in _LEADING_METRICS if key in metrics]
    trailing = [key for key in _TRAILING_METRICS if key in metrics]
    middle = sorted(key for key in metrics if key not in leading and key not in trailing)
    return leading + middle + trailing


def _override_columns(rows: Sequence[JobRow]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.overrides))
    return list(keys)


def _shared_overrides(rows: Sequence[JobRow]) -> dict[str, str]:
    """Overrides with one value in every job of a sweep of several."""
    shared = {}
    for key in _override_columns(rows):
        values = {row.overrides.get(key) for row in rows}
        if len(values) == 1 and len(rows) > 1:
            shared[key] = values.pop()
    return shared


def _table(rows: Sequence[JobRow], sweep_dir: Path) -> tuple[list[str], list[list[Any]]]:
    override_keys = _override_columns(rows)
    metric_keys = _metric_columns(rows)
    header = ["job", "status", "objective", *override_keys, *metric_keys, "error", "folder"]
    table = []
    for row in rows:
        folder = os.path.relpath(row.folder, sweep_dir)
        table.append([row.number, row.status, row.objective,
                      *(row.overrides.get(key, "") for key in override_keys),
                      *(row.results.get(key) if row.status == "ok" else None for key in metric_keys),
                      row.error or "", folder])
    return header, table


def _csv_text(header: list[str], table: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in line] for line in table])
    return buffer.getvalue()


def _markdown_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = " ".join(str(value).split())
    if len(text) > _SUMMARY_ERROR_CHARS:
        text = text[:_SUMMARY_ERROR_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def _markdown_text(rows: Sequence[JobRow], header: list[str], table: list[list[Any]], title: str) -> str:
    counts = {status: sum(row.status == status for row in rows) for status in ("ok", "failed", "stopped", "unfinished")}
    tally = ", ".join(f"{number} {status}" for status, number in counts.items() if number)
    lines = [f"# {title}", "", f"{len(rows)} jobs: {tally or 'none yet'}. Sorted by the objective (the test loss, "
             "or the negative ELBO for VAEs; lower is better); jobs that did not finish come last.", ""]
    # An override every job shares says nothing about the ranking: state it once, above the table.
    shared = _shared_overrides(rows)
    if shared:
        lines += ["Every job: `" + " ".join(f"{key}={value}" for key, value in shared.items()) + "`", ""]
    keep = [index for index, name in enumerate(header) if name not in shared]
    if all(not line[header.index("error")] for line in table):
        keep.remove(header.index("error"))
    lines.append("| " + " | ".join(header[index] for index in keep) + " |")
    lines.append("|" + "|".join("---" for _ in keep) + "|")
    for line in table:
        lines.append("| " + " | ".join(_markdown_cell(line[index]) for index in keep) + " |")
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, output_subdir: str = ".hydra") -> list[JobRow]:
    """Rewrite ``summary.csv`` and ``summary.md`` at the sweep root; returns the ranked rows."""
    sweep_dir = Path(sweep_dir)
    rows = rank(collect_jobs(sweep_dir, output_subdir))
    header, table = _table(rows, sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(sweep_dir / SUMMARY_CSV, _csv_text(header, table))
    write_atomically(sweep_dir / SUMMARY_MD, _markdown_text(rows, header, table, f"Sweep {sweep_dir}"))
    return rows


# ---------------------------------------------------------------------------------------------
# TensorBoard's HParams dashboard

_event_files = count()


def _write_events(folder: Path, summaries: Sequence[Any], step: int = 0) -> Path:
    """One event file holding ``summaries`` (``Summary`` protos), named as TensorFlow names them."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    path = folder / f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}.{next(_event_files)}.v2"
    with path.open("wb") as handle:
        writer = RecordWriter(handle)
        writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        for summary in summaries:
            writer.write(event_pb2.Event(wall_time=now, step=step, summary=summary).SerializeToString())
    return path


def _parse(overrides: Sequence[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _same_type_values(values: list) -> list | None:
    """Values of one HParams type (numbers, booleans or strings), else None."""
    if all(isinstance(value, bool) for value in values):
        return values
    if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return [float(value) for value in values]
    if all(isinstance(value, str) for value in values):
        return values
    return None


def _domain(override):
    """The HParams domain of a sweep override: an interval, or the discrete values of a choice
    or range; None where the values do not share one type (or a glob, listed only at run time)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    if override.is_interval_sweep():
        sweep = override.value()
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):
            return hp.IntInterval(sweep.start, sweep.end)
        return hp.RealInterval(float(sweep.start), float(sweep.end))
    if override.is_choice_sweep() or override.is_range_sweep():
        values = _same_type_values(list(override.sweep_iterator()))
        return hp.Discrete(values) if values else None
    return None


def swept_hyperparameters(sweeper_params: dict[str, str] | None, arguments: Sequence[str]) -> dict[str, Any]:
    """Each swept key with its domain (or None), as the sweepers read them: ``hydra.sweeper.params``
    first, then the command line, where a fixed value takes the key out of the sweep."""
    swept: dict[str, Any] = {}
    entries = [f"{key}={value}" for key, value in (sweeper_params or {}).items()] + list(arguments)
    for override in _parse(entries):
        if override.is_delete():
            continue
        key = override.get_key_element().lstrip("+~")
        if override.is_sweep_override():
            swept[key] = _domain(override)
        else:
            swept.pop(key, None)
    return swept


def _hparam_value(value: Any) -> bool | float | str:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return "null" if value is None else str(value)


def job_hyperparameters(overrides: Sequence[str]) -> dict[str, bool | float | str]:
    """The values one job of a sweep was given, typed as Hydra parsed them."""
    values = {}
    for override in _parse(overrides):
        if override.is_delete() or override.is_sweep_override():
            continue
        values[override.get_key_element().lstrip("+~")] = _hparam_value(override.value())
    return values


def write_hparams_config(sweep_dir: Path, hyperparameters: dict[str, Any]) -> Path:
    """Declare the sweep's hyperparameters and metrics once, at the sweep root."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = [hp.HParam(name, domain) for name, domain in hyperparameters.items()]
    metrics = [hp.Metric(tag, group=group, display_name=title, description=description)
               for group, tag, title, description in HPARAMS_METRICS]
    return _write_events(Path(sweep_dir), [hp.hparams_config_pb(hparams=hparams, metrics=metrics)])


def write_job_hparams(job_dir: Path, values: dict[str, bool | float | str], trial_id: str | None = None) -> Path:
    """The job's hyperparameter values, in its HParams session folder."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    return _write_events(Path(job_dir) / SESSION_FOLDER, [hp.hparams_pb(values, trial_id=trial_id)])


def write_job_objective(job_dir: Path, value: float, step: int) -> Path:
    """The objective as a scalar of the session itself, the dashboard's first metric."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag="objective", tensor=tensor_util.make_tensor_proto(value, dtype="float32"),
        metadata=metadata.create_summary_metadata(display_name="objective", description=""))])
    return _write_events(Path(job_dir) / SESSION_FOLDER, [summary], step=step)


# ---------------------------------------------------------------------------------------------
# The Hydra callback


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
        if not _in_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        # A sweep run again into the same folder: this attempt's outcome replaces the last one's.
        (job_dir / ERROR_FILE).unlink(missing_ok=True)
        values = job_hyperparameters(OmegaConf.to_container(config.hydra.overrides.task))
        write_job_hparams(job_dir, values, trial_id=str(config.hydra.job.num))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _in_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        returned = job_return._return_value  # the property re-raises a failed job's exception
        if job_return.status == JobStatus.FAILED:
            record_failure(job_dir, describe_error(returned))
        elif isinstance(returned, FailedJob):
            record_failure(job_dir, returned.error)
        else:
            results = read_json_object(job_dir / RESULTS_FILE) or {}
            # No test figures (a run stopped by a signal): the summary says so; no objective to plot.
            with contextlib.suppress(KeyError, TypeError, ValueError):
                write_job_objective(job_dir, objective(results), step=int(results.get("steps") or 0))
        # Rewritten after every job, so a long sweep can be followed, and a sweep that stops
        # early (Ctrl-C, a crashed sweeper) still leaves a summary of what it did.
        write_summary(Path(config.hydra.sweep.dir), _output_subdir(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir, _output_subdir(config))
        finished = [row for row in rows if row.status == "ok"]
        if finished and finished[0].objective is not None:
            best, shared = finished[0], _shared_overrides(rows)
            log.info("Best of %d jobs: #%d (%s), objective %.6g.", len(rows), best.number,
                     " ".join(f"{key}={value}" for key, value in best.overrides.items() if key not in shared),
                     best.objective)
        not_finished = len(rows) - len(finished)
        if not_finished:
            log.warning("%d of %d jobs did not finish; their errors are in the summary.", not_finished, len(rows))
        log.info("Sweep summary: %s and %s", sweep_dir / SUMMARY_MD, sweep_dir / SUMMARY_CSV)
