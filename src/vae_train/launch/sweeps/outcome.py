"""A job's outcome as a sweep sees it: the score sweepers minimize, and the marker and record of a
failed job. No TensorFlow here.

A job that fails in a multirun returns a :class:`FailedJob` instead of raising (see
``launch/train_cli.py``): Hydra's basic sweeper raises at the end of a batch with a failed job,
which would skip the summary, while the Optuna sweeper records any non-number it gets back as a
failed trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vae_train.files import write_atomically

ERROR_FILE = "error.json"


def sweep_score(results: dict) -> float:
    """What sweepers minimize (what ``vae-train`` returns to Hydra): the negative ELBO for VAEs
    (whatever ``model.beta`` weighs the KL term by), else the test loss. Both are nats per image, so
    different models compare."""
    if results.get("test_elbo") is not None:
        return -float(results["test_elbo"])
    return float(results["test_loss"])


@dataclass(frozen=True)
class FailedJob:
    """What a multirun job returns instead of its score when it failed.

    Not a number on purpose: the Optuna sweeper marks the trial failed and samples on, and
    Hydra's basic sweeper, which ignores return values, runs the remaining jobs.
    """

    error: str

    def __str__(self) -> str:
        return f"no score, the job failed: {self.error}"


def describe_error(error: BaseException) -> str:
    """``Type: message`` on one line, as the summary shows it."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def record_failure(job_dir: Path, error: str) -> None:
    """Leave the job's error in its folder, where the summary finds it."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(job_dir / ERROR_FILE, json.dumps({"error": error}, indent=2) + "\n")
