"""TensorBoard's HParams dashboard for a sweep: the swept keys and their domains, each job's values,
its score and its status, written with TensorBoard's pure-Python record writer (no TensorFlow).

Each job folder is an HParams session (TensorBoard names it by the job's folder, ``3``), and its
``train/`` and ``test/`` folders hold the metrics (``3/train``, ``3/test``). The sweep's declaration
of its hyperparameters and metrics is written at the start into a file at the sweep root that
TensorBoard does not read, and copied into each session: an event file at the root would show up
as an empty run.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import Any

from vae_train.run.layout import scalar_tag

# The sweep's declaration, read by each job as it starts (the jobs of a launcher run elsewhere).
EXPERIMENT_FILE = "hparams_experiment.pb"
SCORE_TAG = "sweep_score"

# The metrics the HParams dashboard shows, as (group, figure, column title, description). group is
# the folder under a job's folder that holds the scalar; "" is the job's folder itself.
HPARAMS_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("", SCORE_TAG, "sweep score", "The test loss, or the negative ELBO for VAEs: what sweeps minimize."),
    ("test", "loss", "test loss", "Test loss, nats per image."),
    ("test", "elbo", "test ELBO", "Test evidence lower bound (VAEs), nats per image."),
    ("test", "reconstruction", "test reconstruction", "Test reconstruction loss, nats per image."),
    ("test", "kl", "test KL", "Test KL divergence to the prior (VAEs), nats per image."),
    ("train", "loss", "train loss", "Training loss of the last epoch, nats per image."),
    ("train", "images_per_second", "images/s", "Training throughput."),
    ("test", "nll_iw", "test NLL bound", "The importance-weighted bound on the test negative log-likelihood (VAEs)."),
    ("test", "probe_accuracy", "probe accuracy", "A logistic regression on the codes, test accuracy."),
    ("test", "pca_probe_accuracy", "PCA probe accuracy", "The same on PCA's codes of the same size."),
    ("test", "knn_accuracy", "k-NN accuracy", "k-nearest neighbours among the training codes, test accuracy."),
    ("test", "kmeans_accuracy", "k-means accuracy", "k-means on the test codes, clusters matched to classes."),
    ("test", "kmeans_nmi", "k-means NMI", "The normalized mutual information of k-means' clusters and the classes."),
    ("test", "active_units", "active units", "Latent dimensions whose posterior mean varies (VAEs)."),
    ("test", "anomaly_auroc_reconstruction", "AUROC (reconstruction)", "One-class runs: its AUROC."),
)
# A job's outcome (the summary's status) as the dashboard's session status; a job stopped by a
# signal, which the same command resumes, stays unknown.
SESSION_STATUS = {"ok": "STATUS_SUCCESS", "failed": "STATUS_FAILURE"}

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


def _hparams_summary(tag: str, plugin_data) -> Any:
    """A ``Summary`` holding one message of the HParams plugin, as TensorBoard's own summaries build it."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import metadata

    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(plugin_data), tensor=metadata.NULL_TENSOR)
    return summary


def write_hparams_config(sweep_dir: Path, hyperparameters: dict[str, Any]) -> Path:
    """Declare the sweep's hyperparameters and metrics, for its jobs to copy into their sessions."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = [hp.HParam(name, domain) for name, domain in hyperparameters.items()]
    metrics = [hp.Metric(scalar_tag(figure) if group else figure, group=group, display_name=title,
                         description=description)
               for group, figure, title, description in HPARAMS_METRICS]
    path = Path(sweep_dir) / EXPERIMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(hp.hparams_config_pb(hparams=hparams, metrics=metrics).SerializeToString())
    return path


def _sweep_declaration(sweep_dir: Path) -> list:
    """The declaration written at the sweep's start, as a list of one summary; empty if there is none."""
    from tensorboard.compat.proto import summary_pb2

    try:
        return [summary_pb2.Summary.FromString((Path(sweep_dir) / EXPERIMENT_FILE).read_bytes())]
    except OSError:
        return []


def write_job_hparams(job_dir: Path, values: dict[str, bool | float | str], sweep_dir: Path,
                      trial_id: str | None = None) -> Path:
    """The job's hyperparameter values, with the sweep's declaration, in its session (its folder)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    return _write_events(Path(job_dir), [*_sweep_declaration(sweep_dir), hp.hparams_pb(values, trial_id=trial_id)])


def write_job_end(job_dir: Path, status: str, score: float | None, step: int) -> Path:
    """The session's end: its status (a summary status, see SESSION_STATUS) and its sweep score, the
    dashboard's first metric, as a scalar of the session itself."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.util import tensor_util

    summaries = []
    if score is not None:
        summaries.append(summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=SCORE_TAG, tensor=tensor_util.make_tensor_proto(score, dtype="float32"),
            metadata=scalar_metadata.create_summary_metadata(display_name="sweep score", description=""))]))
    if status in SESSION_STATUS:
        end = plugin_data_pb2.SessionEndInfo(status=getattr(api_pb2, SESSION_STATUS[status]), end_time_secs=time.time())
        summaries.append(_hparams_summary(metadata.SESSION_END_INFO_TAG,
                                          plugin_data_pb2.HParamsPluginData(session_end_info=end)))
    return _write_events(Path(job_dir), summaries, step=step)
