"""Shared fixtures: tiny IDX datasets written from the format spec, and config composition."""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from vae_train.data.sources.mnist import SPLIT_FILES
from vae_train.launch import train_cli as cli

# Quiet TensorFlow's C++ start-up chatter in test output and subprocesses.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The files whose tests take longest on 2 cores, in that order (make test --durations=0 on December 4, after
# the quieter runs: 229, 112, 107, 85, 78, 58, 46, 45, 43 and 35 s of 957). `make test` hands whole files to
# its two workers in collection order (--dist loadfile --no-loadscope-reorder); these go first, so the short
# files fill in around them and the workers end together, instead of one starting a long file while the
# other has nothing left.
LONGEST_FILES = ("test_reliability.py", "test_eval.py", "test_training.py", "test_levers.py", "test_distributed.py",
                 "test_objectives.py", "test_denoising_anomalies.py", "test_checkpoint_faults.py", "test_models.py",
                 "test_sweeps.py")
# The tiny datasets' images are MNIST-sized.
IMAGE_SHAPE = (28, 28, 1)
PIXELS_PER_IMAGE = 28 * 28


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> None:
    """A gzip IDX file: big-endian uint32 magic (0x0800 | ndim), the dimensions, then uint8 data."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x00000800 | array.ndim if magic is None else magic
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images with learnable structure: a bright bar whose position is set by the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count).astype(np.uint8)
    images = (rng.random((count, 28, 28)) * 40).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[4 + 2 * label: 6 + 2 * label, 4:24] = 255
    return images, labels


def make_idx_folder(folder: Path, train: int = 128, test: int = 64, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = synthetic_digits(train, seed)
    test_images, test_labels = synthetic_digits(test, seed + 1)
    for key, array in (("train_images", train_images), ("train_labels", train_labels),
                       ("test_images", test_images), ("test_labels", test_labels)):
        write_idx(folder / SPLIT_FILES[key], array)
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A read-only tiny dataset: 128 train and 64 test images. Copy it before damaging it."""
    return make_idx_folder(tmp_path_factory.mktemp("data") / "mnist")


def tiny_overrides(data_dir: Path, batch_size: int = 32) -> list[str]:
    """Overrides for a run on the tiny dataset that finishes in seconds."""
    return [
        f"data.root={data_dir}",
        "data.verify_checksums=false",
        f"data.batch_size={batch_size}",
        "trainer.epochs=1",
        "trainer.progress_bar=false",
    ]


def train_tiny(data_dir: Path, run_dir: Path, *overrides: str) -> dict:
    """A run on the tiny dataset through ``train()``, as the command line would set it up."""
    from vae_train.config import to_settings
    from vae_train.run.train import train  # TensorFlow

    return train(to_settings(compose([*tiny_overrides(data_dir), *overrides])), run_dir)


def tiny_data_config(root: Path, **values):
    """The data settings of the tiny dataset in ``root``, with ``values`` changed."""
    from vae_train.config import PublishedDataConfig

    defaults = {"name": "mnist", "root": str(root), "verify_checksums": False, "batch_size": 16}
    return PublishedDataConfig(**(defaults | values))


compose = cli.compose  # the config vae-train runs with, from the project's conf/


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by its path relative to it, with its contents: equal snapshots
    mean nothing was written, added or removed."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# Pictures, the likelihood bound and the representation probes off, for tests about something else: a
# tiny cvae run's end-of-run work alone is ~6 s of its ~15 (the bound with K = 50 most of it).
QUIET_EVALUATION = ["evaluation.reconstructions=0", "evaluation.samples=0", "evaluation.manifold.size=0",
                    "evaluation.projector=false", "evaluation.code_examples=0", "evaluation.iw_samples=0",
                    "evaluation.representation=false"]


# The finished run that the picture and evaluation tests share: three epochs of 4 steps, pictures
# after epochs 2 and 3, with histograms, the projector and a 20-sample likelihood bound.
FINISHED_RUN_OVERRIDES = [
    "trainer.epochs=3", "evaluation.every_n_epochs=2", "evaluation.reconstructions=6", "evaluation.samples=9",
    "evaluation.manifold.size=5", "evaluation.code_examples=40", "evaluation.histograms=true",
    "evaluation.iw_samples=20",
]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, worker_id) -> tuple[Path, dict]:
    """A cvae run folder as ``vae-train`` leaves it (with the saved config Hydra writes), and its
    results. Read-only: tests that change a run copy it. Trained once a session: make test's workers
    share it, the first to need it training it while the others wait (it costs ~20 s)."""
    import json

    from omegaconf import OmegaConf

    from vae_train.config import to_settings
    from vae_train.run.train import train

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    run_dir, trained = shared / "finished_run", shared / "finished_run.trained"
    with (shared / "finished_run.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not trained.exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # a worker that failed half way
            cfg = compose([*tiny_overrides(make_idx_folder(shared / "finished_run_data")), *FINISHED_RUN_OVERRIDES])
            (run_dir / ".hydra").mkdir(parents=True)
            (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
            train(to_settings(cfg), run_dir)
            trained.touch()
    return run_dir, json.loads((run_dir / "results.json").read_text())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (a stable sort: each file's tests keep their order)."""
    rank = {name: place for place, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))
