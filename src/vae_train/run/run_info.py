"""``run_info.json``: what produced a run (versions, commit, hardware), one entry per session.

A resumed run appends a session rather than replacing the record, so a run trained across two
machines or two package versions says so.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import tensorflow as tf

import vae_train
from vae_train.files import read_json_object, write_atomically
from vae_train.run.layout import RUN_INFO_FILE
from vae_train.runtime.host_cpu import cpu_model

LIBRARIES = ("tensorflow", "keras", "numpy", "hydra-core", "omegaconf", "tensorboard")


def _git_commit() -> str | None:
    """The commit of the source tree the package runs from, if it is a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(vae_train.__file__).parent,
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def session_info() -> dict:
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "vae_train": vae_train.__version__,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in LIBRARIES},
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
    }


def record_session(run_dir: Path) -> None:
    path = Path(run_dir) / RUN_INFO_FILE
    # An unreadable record is replaced rather than blocking the run.
    sessions = (read_json_object(path) or {}).get("sessions", [])
    sessions.append(session_info())
    write_atomically(path, json.dumps({"sessions": sessions}, indent=2) + "\n")
