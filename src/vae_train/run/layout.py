"""The run folder's files, named once. No TensorFlow here: the sweep summary reads run folders
from the launching process."""

from __future__ import annotations

from pathlib import Path

RESULTS_FILE = "results.json"  # the run's final figures
RUN_INFO_FILE = "run_info.json"  # what produced the run, one entry per session
SAVED_CONFIG = ".hydra/config.yaml"  # the composed config, as Hydra saves it
CHECKPOINTS_DIR = "checkpoints"
EXPORT_DIR = "export"  # encoder.keras and decoder.keras
EVAL_DIR = "eval"  # what vae-eval writes
METRICS_FILE = "metrics.json"  # vae-eval's figures
TENSORBOARD_DIR = "tensorboard"  # the event files: train/ and test/


def checkpoint_signature(settings) -> dict:
    """What must match for a checkpoint to be restorable into this run's model."""
    return {"model": settings.model.name, "latent_dim": settings.latent_dim}


def tensorboard_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR
