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
    "representation_seconds": "speed/representation_seconds",
}
# Groups of figures by the start of their names: (start, group, whether the start stays in the tag).
TAG_GROUPS = (
    ("anomaly_", "anomaly", False),  # anomaly_auroc_reconstruction -> anomaly/auroc_reconstruction
    ("denoising_", "denoising", True), ("corrupted_", "denoising", True),
    ("probe_", "representation", True), ("knn_", "representation", True), ("kmeans_", "representation", True),
    ("umap_gmm_", "representation", True), ("pca_", "representation", True), ("active_units", "representation", True),
)


def scalar_tag(name: str) -> str:
    """The TensorBoard tag of the figure ``name`` (its results.json key, without ``test_``): grouped
    as above; a name that names its group already as it is; any other under ``metrics/``."""
    name = name.removeprefix("test_")
    if name in SCALAR_TAGS:
        return SCALAR_TAGS[name]
    for start, group, kept in TAG_GROUPS:
        if name.startswith(start):
            return f"{group}/{name if kept else name.removeprefix(start)}"
    return name if "/" in name else f"metrics/{name}"


def checkpoint_signature(settings) -> dict:
    """What must match for a checkpoint to be restorable into this run's model: a denoiser's also holds
    its corruption's random state (runs without one keep the signature they always had)."""
    signature = {"model": settings.model.name, "latent_dim": settings.latent_dim}
    if settings.corruption.name != "none":
        signature["corruption"] = settings.corruption.name
    return signature


def tensorboard_dir(run_dir: Path) -> Path:
    """The folder holding the run's ``train/`` and ``test/`` event folders: the run folder itself, or
    ``tensorboard/`` in a run folder made before the run folder held them directly."""
    old = Path(run_dir) / OLD_TENSORBOARD_DIR
    return old if old.is_dir() else Path(run_dir)
