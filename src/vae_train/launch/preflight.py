"""The preflight check, a Hydra callback that runs in the launching process before any job. No
TensorFlow here."""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from vae_train.config import to_settings
from vae_train.errors import ConfigError
from vae_train.launch.run_lock import RunFolderBusy, hold_run_folder


def _fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    # SystemExit, because Hydra turns an Exception raised by a callback into a warning.
    raise SystemExit(1)


def _check_writable(folder: str, key: str) -> None:
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        _fail(f"Cannot write the run folder {path} ({err.strerror or err}). Pick a writable place with "
              f"{key}=<folder>, or fix the folder's permissions.")


def _check_settings(config: DictConfig) -> None:
    app_config = copy.deepcopy(config)  # keeps the schema's types, unlike masked_copy
    with open_dict(app_config):
        del app_config["hydra"]
    try:
        to_settings(app_config)
    except ConfigError as err:
        _fail(str(err))


def _hold(folder: str) -> None:
    try:
        hold_run_folder(Path(folder))
    except RunFolderBusy as err:
        _fail(str(err))


class Preflight(Callback):
    """Refuse a run whose settings are out of range, whose folder cannot be written or whose folder
    another process is writing, before Hydra writes anything into that folder, so a mistyped re-run
    cannot damage a finished run and a second copy cannot damage a running one."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _check_settings(config)
        _check_writable(config.hydra.run.dir, "hydra.run.dir")
        _hold(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _check_writable(config.hydra.sweep.dir, "hydra.sweep.dir")
