"""TensorBoard's HParams dashboard for a sweep: the swept keys and their domains, each job's values
and its score, written with TensorBoard's pure-Python record writer (no TensorFlow)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import Any

# Each job's HParams session: the job's TensorBoard folder, whose train/ and test/ hold the metrics.
SESSION_FOLDER = "tensorboard"

# The metrics the HParams dashboard shows, as (group, tag, column title, description). group is
# the folder under a job's session folder that holds the scalar; "" is the session folder itself.
HPARAMS_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("", "sweep_score", "sweep score", "The test loss, or the negative ELBO for VAEs: what sweeps minimize."),
    ("test", "loss", "test loss", "Test loss, nats per image."),
    ("test", "elbo", "test ELBO", "Test evidence lower bound (VAEs), nats per image."),
    ("test", "reconstruction", "test reconstruction", "Test reconstruction loss, nats per image."),
    ("test", "kl", "test KL", "Test KL divergence to the prior (VAEs), nats per image."),
    ("train", "loss", "train loss", "Training loss of the last epoch, nats per image."),
    ("train", "images_per_second", "images/s", "Training throughput."),
)

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


def write_job_score(job_dir: Path, value: float, step: int) -> Path:
    """The sweep score as a scalar of the session itself, the dashboard's first metric."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag="sweep_score", tensor=tensor_util.make_tensor_proto(value, dtype="float32"),
        metadata=metadata.create_summary_metadata(display_name="sweep score", description=""))])
    return _write_events(Path(job_dir) / SESSION_FOLDER, [summary], step=step)
