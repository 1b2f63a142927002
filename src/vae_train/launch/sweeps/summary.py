"""``summary.csv`` and ``summary.md`` at a sweep's root, from its job folders: one row per job, sorted
by the sweep score, failed jobs with their error. No TensorFlow here."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vae_train.files import read_json_object, shown_path, write_atomically
from vae_train.launch.sweeps.outcome import ERROR_FILE, sweep_score
from vae_train.run.layout import RESULTS_FILE

log = logging.getLogger(__name__)

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
# The order of the summary's metric columns; results.json keys not named here follow.
_LEADING_METRICS = ("test_loss", "test_elbo", "test_reconstruction", "test_kl", "train_loss")
_TRAILING_METRICS = ("epochs", "steps", "parameters", "images_per_second")
# The end-of-run figures of results.json, by the start of their names: anomaly detection, the codes'.
_ANALYSIS_FIGURES = ("anomaly_", "probe_", "knn_", "kmeans_", "pca_", "active_units")
_SUMMARY_ERROR_CHARS = 300



@dataclass
class JobRow:
    number: int
    folder: Path
    overrides: dict[str, str]
    status: str  # ok, failed, stopped (by a signal, resumable) or unfinished (no results yet)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def score(self) -> float | None:
        if self.status != "ok":
            return None
        try:
            return sweep_score(self.results)
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
    """Finished jobs by score (best first), then stopped, unfinished and failed ones by number."""
    order = {"ok": 0, "stopped": 1, "unfinished": 2, "failed": 3}

    def key(row: JobRow):
        value = row.score
        return (order[row.status], value is None or math.isnan(value),
                value if value is not None and not math.isnan(value) else 0.0, row.number)

    return sorted(rows, key=key)


def _metric_columns(rows: Sequence[JobRow]) -> list[str]:
    present: dict[str, None] = {}
    for row in rows:
        for key, value in row.results.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                present[key] = None
    metrics = [key for key in present
               if key.startswith(("test_", "train_", *_ANALYSIS_FIGURES)) or key in _TRAILING_METRICS]
    leading = [key for key in _LEADING_METRICS if key in metrics]
    trailing = [key for key in _TRAILING_METRICS if key in metrics]
    middle = sorted(key for key in metrics if key not in leading and key not in trailing)
    return leading + middle + trailing


def _override_columns(rows: Sequence[JobRow]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.overrides))
    return list(keys)


def shared_overrides(rows: Sequence[JobRow]) -> dict[str, str]:
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
    header = ["job", "status", "score", *override_keys, *metric_keys, "error", "folder"]
    table = []
    for row in rows:
        folder = os.path.relpath(row.folder, sweep_dir)
        table.append([row.number, row.status, row.score,
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
    lines = [f"# {title}", "", f"{len(rows)} jobs: {tally or 'none yet'}. Sorted by the score (the test loss, "
             "or the negative ELBO for VAEs; lower is better); jobs that did not finish come last.", ""]
    # An override every job shares says nothing about the ranking: state it once, above the table.
    shared = shared_overrides(rows)
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
    write_atomically(sweep_dir / SUMMARY_MD, _markdown_text(rows, header, table, f"Sweep {shown_path(sweep_dir)}"))
    return rows
