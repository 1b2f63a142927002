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
# Runs before 0.2 kept their event files in <run>/tensorboard/{train,test}; a resumed one keeps doing
# so. Newer runs write <run>/train and <run>/test, which TensorBoard names <run>/train and <run>/test.
OLD_TENSORBOARD_DIR = "tensorboard"

# The TensorBoard tag of each figure. TensorBoard groups tags by what precedes their "/" and orders
# the groups alphabetically, so the losses open first (after the denoising and anomaly figures, in the
# runs made for them); results.json keeps the plain names (test_loss, ...).
SCALAR_TAGS = {
    "loss": "loss/total",
    "reconstruction": "loss/reconstruction",
    "kl": "loss/kl",
    "elbo": "loss/elbo",
    "recipe_loss": "loss/recipe",
    "iw_bound": "loss/iw_bound",
    "nll_iw": "loss/nll_iw",
    "learning_rate": "optimization/learning_rate",
    "kl_weight": "optimization/kl_weight",
    "images_per_second": "speed/images_per_second",
    "epoch_seconds": "speed/epoch_seconds",
    "between_epochs_seconds": "speed/between_epochs_seconds",
}


def scalar_tag(name: str) -> str:
    """The TensorBoard tag of the figure ``name``: grouped as above; a name that names its group
    already (``representation/probe_accuracy``) as it is; any other under ``metrics/``."""
    return SCALAR_TAGS.get(name) or (name if "/" in name else f"metrics/{name}")


def checkpoint_signature(settings) -> dict:
    """What must match for a checkpoint to be restorable into this run's model."""
    return {"model": settings.model.name, "latent_dim": settings.latent_dim}


def tensorboard_dir(run_dir: Path) -> Path:
    """The folder holding the run's ``train/`` and ``test/`` event folders: the run folder itself, or
    ``tensorboard/`` in a run folder made before the run folder held them directly."""
    old = Path(run_dir) / OLD_TENSORBOARD_DIR
    return old if old.is_dir() else Path(run_dir)
