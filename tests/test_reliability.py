"""Reliability: kills and signals lose nothing, numerical faults stop cleanly, runs reproduce,
and every kind of bad input gets one clear paragraph and a non-zero exit."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    IMAGE_SHAPE,
    QUIET_EVALUATION,
    compose,
    folder_bytes,
    make_idx_folder,
    tiny_overrides,
    train_tiny,
    write_idx,
)
from vae_train.config import to_settings
from vae_train.errors import TrainingError
from vae_train.launch.run_lock import LOCK_FILE
from vae_train.models import build_model
from vae_train.run.train import train
from vae_train.training.interrupts import StopRequest

CLI = [sys.executable, "-m", "vae_train.launch.train_cli"]


def cli_env() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("VAE_TRAIN_DATA", None)
    env.pop("TF_CONFIG", None)
    return env


def latest_step(run_dir: Path) -> int:
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0


def checkpoint_tensors(run_dir: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.fixture(scope="module")
def longer_data_dir(tmp_path_factory) -> Path:
    """512 training images: 32 steps per epoch at batch 16, long enough to be interrupted."""
    return make_idx_folder(tmp_path_factory.mktemp("longer") / "mnist", train=512, test=64, seed=5)


def deterministic_overrides(data_dir: Path, epochs: int) -> list[str]:
    return [*tiny_overrides(data_dir, batch_size=16), f"trainer.epochs={epochs}", "trainer.deterministic=true",
            "trainer.checkpoint_every_steps=3", "trainer.log_every_steps=5", "model=conv_ae"]


STEPS_PER_EPOCH = 512 // 16  # longer_data_dir at batch 16


def writing_a_checkpoint(run_dir: Path) -> bool:
    """Whether TensorFlow is in the middle of writing a checkpoint (its temporary files exist)."""
    folder = run_dir / "checkpoints"
    return folder.is_dir() and any("_temp" in path.name for path in folder.iterdir())


def kill_at(process: subprocess.Popen, run_dir: Path, kind: str, step: int, rng: random.Random) -> bool:
    """SIGKILL ``process`` once its latest checkpoint reaches ``step``: ``anywhere`` after a random
    pause (mid-step, mid-evaluation...), ``checkpoint_write`` inside the next checkpoint's write, or
    ``epoch_end`` inside the epoch-end work (test figures, pictures) after an epoch's checkpoint."""
    deadline = time.monotonic() + 120
    while latest_step(run_dir) < step and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    if kind == "checkpoint_write":
        while not writing_a_checkpoint(run_dir) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
    else:
        time.sleep(rng.uniform(0, 0.05) if kind == "anywhere" else rng.uniform(0, 0.3))
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return True


def assert_killed_runs_resume_exactly(data_dir: Path, tmp_path: Path, points: list[tuple[str, int]],
                                      rng: random.Random, extra: tuple[str, ...] = ()) -> int:
    """Train straight through, and again killed at each of ``points`` and resumed each time: the
    same steps, figures and checkpoint tensors, bit for bit, and no checkpoint lost. The kills made."""
    overrides = [*deterministic_overrides(data_dir, epochs=3), *extra]
    straight = tmp_path / "straight"
    subprocess.run([*CLI, *overrides, f"hydra.run.dir={straight}"], env=cli_env(), check=True,
                   capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    kills = 0
    for kind, step in points:
        before = latest_step(killed)
        process = subprocess.Popen([*CLI, *overrides, f"hydra.run.dir={killed}"], env=cli_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kills += kill_at(process, killed, kind, step, rng)
        assert latest_step(killed) >= before, "a kill lost a checkpoint"
    subprocess.run([*CLI, *overrides, f"hydra.run.dir={killed}"], env=cli_env(), check=True,
                   capture_output=True, timeout=600)
    assert_same_run(straight, killed, steps=3 * STEPS_PER_EPOCH)
    return kills


def assert_same_run(straight: Path, resumed_dir: Path, steps: int) -> None:
    """The run in ``resumed_dir`` ended as the uninterrupted one in ``straight``: its steps, its figures
    and every checkpoint tensor, bit for bit."""
    expected, resumed = (json.loads((d / "results.json").read_text()) for d in (straight, resumed_dir))
    assert resumed["steps"] == expected["steps"] == steps
    for key in ("train_loss", "test_loss", "test_reconstruction"):
        assert resumed[key] == expected[key], key
    expected_tensors, resumed_tensors = checkpoint_tensors(straight), checkpoint_tensors(resumed_dir)
    assert expected_tensors.keys() == resumed_tensors.keys()
    for name, value in expected_tensors.items():
        np.testing.assert_array_equal(resumed_tensors[name], value, err_msg=name)


def test_killed_runs_resume_to_exactly_the_uninterrupted_result(longer_data_dir, tmp_path):
    rng = random.Random(7)
    points = [("anywhere", step) for step in sorted(rng.sample(range(3, 90), 2))]
    # Mid-epoch kills (steps 22 and 44 of 96): the epoch-end work is the slow test's, which keeps it on.
    kills = assert_killed_runs_resume_exactly(longer_data_dir, tmp_path, points, rng, extra=tuple(QUIET_EVALUATION))
    assert kills >= 1, "the run finished before it could be killed; the test lost its point"


@pytest.mark.slow
def test_ten_random_kills_over_a_full_epoch_resume_exactly(longer_data_dir, tmp_path):
    """Ten seeded points over the second epoch: inside the epoch-end work (test figures, pictures,
    projector) at both its ends, and between them anywhere or inside a checkpoint's write; a denoiser,
    whose corruption's random state is in the checkpoint too."""
    rng = random.Random(2026)
    inside = sorted(rng.sample(range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH), 8))
    kinds = ["anywhere", "checkpoint_write"] * 4
    rng.shuffle(kinds)
    points = [("epoch_end", STEPS_PER_EPOCH), *zip(kinds, inside, strict=True), ("epoch_end", 2 * STEPS_PER_EPOCH)]
    kills = assert_killed_runs_resume_exactly(longer_data_dir, tmp_path, points, rng,
                                              extra=("corruption=masking", "corruption.rate=0.3"))
    assert kills == 10


def wait_for_checkpoint(run_dir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while latest_step(run_dir) == 0:
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)


@pytest.mark.parametrize("sent", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_signal_saves_a_checkpoint_marks_results_unfinished_and_resume_continues(
        longer_data_dir, tmp_path, sent):
    overrides = [*tiny_overrides(longer_data_dir, batch_size=16), *QUIET_EVALUATION, "trainer.epochs=1000",
                 "trainer.checkpoint_every_steps=2"]
    process = subprocess.Popen([*CLI, *overrides, f"hydra.run.dir={tmp_path}"], env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(tmp_path, process)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + sent, stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["finished"] is False and results["stopped_by"] == sent.name
    assert latest_step(tmp_path) == results["steps"]  # the checkpoint is at the step it stopped at
    assert "Traceback" not in stderr

    # Finishing the interrupted epoch takes exactly the steps it had left: none repeated, none skipped.
    finish = [*overrides[:-2], f"trainer.epochs={results['epochs'] + 1}"]
    subprocess.run([*CLI, *finish, f"hydra.run.dir={tmp_path}"], env=cli_env(), check=True,
                   capture_output=True, timeout=300)
    finished = json.loads((tmp_path / "results.json").read_text())
    assert finished["finished"] is True
    assert finished["steps"] == (results["epochs"] + 1) * 32


def test_a_second_signal_gets_the_default_action():
    stop = StopRequest()
    previous = signal.getsignal(signal.SIGINT)
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not stop.requested and time.monotonic() < deadline:
            time.sleep(0.001)
        assert stop.signal_name == "SIGINT"
        # The next Ctrl-C terminates at once instead of waiting for the checkpoint.
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is previous


def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path, "model=dense_ae", "optimizer=sgd", *QUIET_EVALUATION)
    good = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    with pytest.raises(TrainingError, match=rf"by step \d+.*{good}.*learning_rate") as error:
        train_tiny(tiny_data_dir, tmp_path, "model=dense_ae", "optimizer=sgd", "optimizer.learning_rate=1e30",
                   "trainer.epochs=3")
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == good
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["finished"] is False and results["error"] == str(error.value)


def test_skip_batch_keeps_the_weights_finite(tiny_data_dir, tmp_path, caplog):
    from vae_train.run.evaluate import restore_model

    overrides = ["model=dense_ae", "optimizer=sgd", "optimizer.learning_rate=1e30", "trainer.on_nan=skip_batch"]
    results = train_tiny(tiny_data_dir, tmp_path, *overrides, *QUIET_EVALUATION)
    assert results["finished"] is True
    assert "Skipped" in caplog.text
    tensors = checkpoint_tensors(tmp_path)
    weights = {name: value for name, value in tensors.items() if name.startswith("model_weights/")}
    assert weights and all(np.all(np.isfinite(value)) for value in weights.values())
    # Skipped batches are steps of the run but not of the optimizer; vae-eval reports the run's.
    assert tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] < results["steps"]
    _, origin = restore_model(to_settings(compose([*tiny_overrides(tiny_data_dir), *overrides])), tmp_path,
                              IMAGE_SHAPE)
    assert origin["steps"] == results["steps"]


def test_clipnorm_bounds_each_update(tiny_data_dir, tmp_path):
    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), "model=dense_ae", "optimizer=sgd",
                                    "optimizer.momentum=0", "optimizer.learning_rate=1",
                                    "optimizer.clipnorm=0.001", "data.max_train_examples=32"]))
    keras.utils.set_random_seed(settings.seed)  # as train() does, so this is its initial model
    initial = build_model(settings.model, settings.latent_dim, IMAGE_SHAPE, settings.seed).weights
    train(settings, tmp_path)  # one step of 32 images
    trained = checkpoint_tensors(tmp_path)
    assert trained["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    moved = [np.linalg.norm(trained[f"model_weights/{index}/.ATTRIBUTES/VARIABLE_VALUE"] - weight.numpy())
             for index, weight in enumerate(initial)]
    # With learning rate 1 an unclipped step moves the weights by far more than 0.001.
    assert all(0 < distance <= 0.001 * (1 + 1e-4) for distance in moved), moved


@pytest.mark.slow  # the kill test checks determinism bit for bit; this, the curves of two whole runs
def test_same_seed_gives_identical_loss_curves(tiny_data_dir, tmp_path):
    overrides = ["trainer.deterministic=true", "trainer.log_every_steps=1", "trainer.epochs=2"]
    first = train_tiny(tiny_data_dir, tmp_path / "a", *overrides)
    second = train_tiny(tiny_data_dir, tmp_path / "b", *overrides)
    from test_training import read_scalars

    curves = [read_scalars(tmp_path / run / "train")["loss/total"] for run in ("a", "b")]
    assert len(curves[0]) == 8 and curves[0] == curves[1]
    assert first["test_loss"] == second["test_loss"]
    third = train_tiny(tiny_data_dir, tmp_path / "c", *overrides, "seed=7")
    assert third["test_loss"] != first["test_loss"]


@pytest.mark.slow  # two runs; every run's record is checked to exist by the faults' tests
def test_run_info_records_versions_and_hardware_per_session(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path)
    train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=2")
    sessions = json.loads((tmp_path / "run_info.json").read_text())["sessions"]
    assert len(sessions) == 2
    session = sessions[-1]
    assert session["libraries"]["tensorflow"] == tf.__version__
    assert session["vae_train"] and session["cpu_count"] == os.cpu_count() and session["cpu"]
    assert "git_commit" in session and isinstance(session["gpus"], list)


# --- the bad-input catalogue (docs/reliability.md, Troubleshooting) ------------------------------


def _damaged_copy(source: Path, target: Path, damage) -> Path:
    make_idx_folder(target)  # same tiny files as the session dataset
    damage(target)
    return target


def _truncate(folder: Path) -> None:
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])


def _wrong_magic(folder: Path) -> None:
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)), magic=0x00000801)


def _wrong_size(folder: Path) -> None:
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((128, 32, 32)))


def _missing_file(folder: Path) -> None:
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()


def _png(path: Path, height: int = 8, width: int = 8, level: int = 128) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width), level, np.uint8)).save(path)


def _images_in_classes(folder: Path, classes: dict[str, int], height: int = 8, width: int = 8) -> None:
    for name, count in classes.items():
        for index in range(count):
            _png(folder / name / f"{index}.png", height, width, level=20 * index)


def _truncated_image(folder: Path) -> None:
    _images_in_classes(folder, {"a": 4, "b": 4})
    path = folder / "b" / "0.png"
    path.write_bytes(path.read_bytes()[:40])


def _mixed_sizes(folder: Path) -> None:
    _images_in_classes(folder, {"a": 4, "b": 4})
    _png(folder / "b" / "tall.png", height=12)


def _lonely_class(folder: Path) -> None:
    _images_in_classes(folder, {"a": 6, "b": 1})


def _unknown_test_class(folder: Path) -> None:
    _images_in_classes(folder / "train", {"a": 4, "b": 4})
    _images_in_classes(folder / "test", {"a": 2, "c": 2})


def _odd_size(folder: Path) -> None:
    _images_in_classes(folder, {"a": 6, "b": 6}, height=30, width=30)


def _cache_of_another_version(folder: Path) -> None:
    """A folder whose cache (in data.cache_dir, FOLDER_CACHE below) says it was written by another format."""
    from vae_train.config import FolderDataConfig
    from vae_train.data.sources import ReadContext, read_source

    _images_in_classes(folder, {"a": 4, "b": 4})
    read_source(FolderDataConfig(name="folder", root=str(folder), cache_dir=str(folder / FOLDER_CACHE),
                                 test_fraction=0.5), ReadContext())
    for sidecar in (folder / FOLDER_CACHE).rglob("*.json"):
        sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"format_version": 0}))


def _no_train_good(folder: Path) -> None:
    _images_in_classes(folder / "test", {"good": 2, "crack": 2})


def _stray_mask(folder: Path) -> None:
    _images_in_classes(folder / "train", {"good": 6})
    _images_in_classes(folder / "test", {"good": 2, "crack": 2})
    _png(folder / "ground_truth" / "crack" / "7_mask.png", level=255)


FOLDER_CACHE = ".cache"  # inside the images' folder: hidden, so not scanned as images
# Every case of data=folder reads its images from the damaged folder, with this cache.
FOLDER_OVERRIDES = ["data=folder", "data.batch_size=2", "trainer.epochs=1", "trainer.progress_bar=false"]
MVTEC_OVERRIDES = ["data=mvtec", "data.image_size=[8,8]", "data.batch_size=2", "trainer.epochs=1",
                   "trainer.progress_bar=false"]
IMAGE_SOURCES = ("data=folder", "data=mvtec")

CATALOGUE = {
    # name: (overrides, data damage or None, a phrase the message must contain)
    "unknown choice": (["model=nope"], None, "Available options in 'model'"),
    "unknown key": (["model.nope=1"], None, "Key 'nope' not in"),
    "wrong type": (["latent_dim=two"], None, "could not be converted to Integer"),
    "latent_dim zero": (["latent_dim=0"], None, "latent_dim must be an integer in 1..4096"),
    "latent_dim huge": (["latent_dim=1000000"], None, "latent_dim must be an integer in 1..4096"),
    "batch size zero": (["data.batch_size=0"], None, "data.batch_size must be positive"),
    "learning rate zero": (["optimizer.learning_rate=0"], None, "optimizer.learning_rate must be positive"),
    "test figures every 0 epochs": (["evaluation.test_every_n_epochs=0"], None,
                                    "evaluation.test_every_n_epochs must be positive"),
    "missing data folder": (["data.root=/nonexistent/mnist"], None, "/nonexistent/mnist does not exist"),
    "missing file": ([], _missing_file, "lacks t10k-labels-idx1-ubyte.gz"),
    "truncated gzip": ([], _truncate, "truncated"),
    "wrong magic": ([], _wrong_magic, "magic number 0x00000801"),
    "wrong image size": ([], _wrong_size, "32x32"),
    "checksum mismatch": (["data.verify_checksums=true"], None, "Checksum mismatch"),
    "checkpoint of another model": (["model=conv_ae", "latent_dim=3"], None,
                                    "are from model cvae, latent_dim 2, but this run is model conv_ae, latent_dim 3"),
    "multi_worker without TF_CONFIG": (["trainer.strategy=multi_worker"], None, "TF_CONFIG"),
    "unwritable output folder": (["hydra.run.dir=/proc/vae-train-run"], None, "Cannot write the run folder"),
    "negative noise": (["corruption=gaussian", "corruption.std=-1"], None, "corruption.std must be >= 0"),
    "unknown training class": (["data.train_classes=[11]"], None, "labels are 0 to 9"),
    "no neighbours": (["evaluation.knn_k=0"], None, "evaluation.knn_k must be a positive number"),
    "folder without data.root": (["data=folder", "data.root=???"], None, "data.root has no value and needs one"),
    "folder without images": (FOLDER_OVERRIDES, None, "holds no image file"),
    "truncated image": (FOLDER_OVERRIDES, _truncated_image, "data.skip_unreadable=true"),
    "no readable image": (FOLDER_OVERRIDES + ["data.skip_unreadable=true"],
                          lambda folder: (folder / "a").mkdir() or (folder / "a" / "x.png").write_text("no"),
                          "None of the 1 image files"),
    "images of mixed sizes": (FOLDER_OVERRIDES, _mixed_sizes, "data.image_size=[H,W]"),
    "a class of one image": (FOLDER_OVERRIDES, _lonely_class, "fewer than 2 readable images"),
    "a test class training lacks": (FOLDER_OVERRIDES + ["data.test_root={data}/test"], _unknown_test_class,
                                    "has classes the training folder"),
    "conv layers that cannot draw the images": (
        FOLDER_OVERRIDES + ["model.encoder_filters=[32,64]", "model.decoder_filters=[64,32]"], _odd_size,
        "cannot draw 30x30 images"),
    "a cache of another version": (FOLDER_OVERRIDES, _cache_of_another_version, "format version 0"),
    "missing CIFAR-10 folder": (["data=cifar10", "data.root=/nonexistent/cifar10"], None, "/nonexistent/cifar10"),
    "an inspection folder without train/good": (MVTEC_OVERRIDES, _no_train_good, "train/good"),
    "a mask of no test image": (MVTEC_OVERRIDES, _stray_mask, "7_mask.png"),
    "a top-k share outside (0, 1]": (["evaluation.anomaly_top_k=0"], None, "evaluation.anomaly_top_k must be"),
    "a combined score of one score": (["evaluation.anomaly_combined=[reconstruction]"], None,
                                      "evaluation.anomaly_combined sums two or more"),
    "a combined score of an unknown score": (["evaluation.anomaly_combined=[reconstruction,psnr]"], None,
                                             "expected one of [reconstruction, latent_knn, latent_mahalanobis]"),
}


@pytest.fixture(scope="module")
def finished_run(tiny_data_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished")
    subprocess.run([*CLI, *tiny_overrides(tiny_data_dir), *QUIET_EVALUATION, f"hydra.run.dir={run_dir}"],
                   env=cli_env(), check=True, capture_output=True, timeout=300)
    return run_dir


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Hashes of what a run produced. Not among them: Hydra's record of the latest invocation
    (.hydra/), the log, which only grows (checked separately), and the lock file, which names the
    last process to hold the folder."""
    return {name: hashlib.md5(contents).hexdigest() for name, contents in folder_bytes(run_dir).items()
            if not name.startswith(".hydra/") and not name.endswith(".log") and Path(name).name != LOCK_FILE}


# Damaged data files and folders are each refused in-process by tests/test_data.py and
# tests/test_folder_data.py, another model's checkpoint by tests/test_training.py and multi_worker
# without a cluster by tests/test_distributed.py; through the command line, the default run checks the
# cases refused before TensorFlow starts, and make test-slow the rest.
SLOW_CASES = {"missing data folder", "missing file", "checkpoint of another model", "multi_worker without TF_CONFIG",
              "truncated gzip", "wrong magic", "wrong image size", "checksum mismatch", "unknown training class",
              "folder without images", "no readable image", "a class of one image", "a test class training lacks",
              "a cache of another version", "missing CIFAR-10 folder", "images of mixed sizes",
              "an inspection folder without train/good", "truncated image", "a mask of no test image",
              "conv layers that cannot draw the images"}


def _case_arguments(overrides: list[str], damage, tiny_data_dir: Path, tmp_path: Path) -> list[str]:
    """A case's command line: a damaged copy of the tiny IDX set, or for data=folder and data=mvtec a
    folder of images that the damage wrote (``{data}`` in an override stands for it)."""
    if not set(IMAGE_SOURCES) & set(overrides):
        data_dir = _damaged_copy(tiny_data_dir, tmp_path / "mnist", damage) if damage else tiny_data_dir
        return [*tiny_overrides(data_dir), *overrides]
    folder = tmp_path / "images"
    folder.mkdir()
    if damage:
        damage(folder)
    return [f"data.root={folder}", f"data.cache_dir={folder / FOLDER_CACHE}",
            *(override.format(data=folder) for override in overrides)]


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.slow) if case in SLOW_CASES else case
                                  for case in CATALOGUE])
def test_bad_input_gets_one_paragraph_and_a_non_zero_exit(case, finished_run, tiny_data_dir, tmp_path):
    overrides, damage, phrase = CATALOGUE[case]
    before = fingerprint(finished_run)
    log_before = (finished_run / "vae-train.log").read_text()
    arguments = _case_arguments(overrides, damage, tiny_data_dir, tmp_path)
    if not any(argument.startswith("hydra.run.dir=") for argument in overrides):
        arguments.append(f"hydra.run.dir={finished_run}")
    result = subprocess.run([*CLI, *arguments], env=cli_env(), capture_output=True, text=True, timeout=300)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert phrase in output
    assert "Traceback" not in output
    # One message, not a cascade (TensorFlow's own C++ start-up lines are not ours to count).
    ours = [line for line in output.splitlines() if "][ERROR]" in line or phrase in line]
    assert len(ours) == 1, output
    assert fingerprint(finished_run) == before
    assert (finished_run / "vae-train.log").read_text().startswith(log_before)


def _truncate_every_checkpoint(run_dir: Path) -> None:
    for data_file in (run_dir / "checkpoints").glob("*.data-*"):
        data_file.write_bytes(data_file.read_bytes()[:100])


FAULTS = Path(__file__).parent / "faults.py"  # vae-train with checkpoint saves made to fail
RUN_INFO = "run_info.json"  # the record of sessions, which any run that starts adds to
# Faults of a run folder (a copy of finished_run, resumed for a second epoch), which CATALOGUE's cases
# cannot set up. name: (the saves to fail and how, as tests/faults.py takes them, or None; a preparation
# of the run folder, or None; the exit status; a phrase the message must contain).
RUN_FOLDER_FAULTS = {
    "a full disk during a checkpoint save": (["8", "no_space"], None, 75, "no space left on device"),
    "a read-only run folder": (["8", "read_only"], None, 75, "the file system is read-only"),
    "no checkpoint that reads": (None, _truncate_every_checkpoint, 1, "Cannot restore any checkpoint"),
}
# tests/test_checkpoint_faults.py has a read-only folder stop in-process.
SLOW_FAULTS = {"a read-only run folder", "no checkpoint that reads"}


@pytest.mark.parametrize("case", [pytest.param(case, marks=pytest.mark.slow) if case in SLOW_FAULTS else case
                                  for case in RUN_FOLDER_FAULTS])
def test_run_folder_faults_get_one_paragraph_and_their_exit_status(case, finished_run, tiny_data_dir, tmp_path):
    fault, prepare, status, phrase = RUN_FOLDER_FAULTS[case]
    run_dir = Path(shutil.copytree(finished_run, tmp_path / "run"))
    if prepare:
        prepare(run_dir)
    before = fingerprint(run_dir)
    command = [sys.executable, str(FAULTS), *fault] if fault else CLI
    result = subprocess.run([*command, *tiny_overrides(tiny_data_dir), "trainer.epochs=2", f"hydra.run.dir={run_dir}"],
                            env=cli_env(), capture_output=True, text=True, timeout=300)

    output = result.stdout + result.stderr
    assert result.returncode == status, output
    assert phrase in output
    assert "Traceback" not in output
    ours = [line for line in output.splitlines() if "][ERROR]" in line or phrase in line]
    assert len(ours) == 1, output
    # Nothing lost: every file of the run is there as it was, but the record of its sessions.
    after = fingerprint(run_dir)
    assert {name: after.get(name) for name in before if name != RUN_INFO} == \
        {name: digest for name, digest in before.items() if name != RUN_INFO}
    assert not list((run_dir / "checkpoints").glob("*_temp"))


def test_a_second_process_on_a_running_folder_is_refused_before_it_writes(finished_run, tiny_data_dir, tmp_path):
    from test_run_lock import start_holder

    run_dir = Path(shutil.copytree(finished_run, tmp_path / "run"))
    holder = start_holder(run_dir)  # stands for a vae-train still writing there
    before = folder_bytes(run_dir)
    try:
        result = subprocess.run([*CLI, *tiny_overrides(tiny_data_dir), "trainer.epochs=2", f"hydra.run.dir={run_dir}"],
                                env=cli_env(), capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"in use by another vae-train process (pid {holder.pid} on " in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1
    # Untouched, Hydra's record of the invocation and the log included.
    assert folder_bytes(run_dir) == before


def test_more_examples_asked_than_exist_is_a_warning(tiny_data_dir, tmp_path, caplog):
    results = train_tiny(tiny_data_dir, tmp_path, "data.max_train_examples=1000000", *QUIET_EVALUATION)
    assert results["finished"] is True
    assert "exceeds the 128 training examples" in caplog.text


def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = subprocess.run([*CLI, "data.root=/nonexistent/mnist", f"hydra.run.dir={tmp_path}"],
                            env={**cli_env(), "HYDRA_FULL_ERROR": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "DataError" in result.stderr


def test_mixed_precision_resumes_each_epoch_at_the_right_batch(tiny_data_dir, tmp_path):
    # A loss-scaling optimizer leaves overflow-skipped steps out of its own count; the loop's
    # step counter must still count every batch, or epoch 2 looks like a foreign checkpoint.
    results = train_tiny(tiny_data_dir, tmp_path, "model=dense_ae", "trainer.precision=mixed_float16",
                         "trainer.epochs=2", *QUIET_EVALUATION)
    assert results["finished"] is True and results["steps"] == 2 * (128 // 32)
    assert np.isfinite(results["test_loss"])
    # The case in point: the loss scale's first overflows skipped some of the steps, not all.
    applied = checkpoint_tensors(tmp_path)["optimizer/inner_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]
    assert 0 < applied < results["steps"]


def test_skip_batch_with_several_replicas_is_refused_clearly(tiny_data_dir, tmp_path):
    from types import SimpleNamespace

    from vae_train.errors import ConfigError
    from vae_train.training.loop import Trainer

    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), "trainer.on_nan=skip_batch"]))
    two_replicas = SimpleNamespace(num_replicas_in_sync=2)
    with pytest.raises(ConfigError, match="skip_batch works on one device only"):
        Trainer(None, None, two_replicas, None, settings.trainer, None, tmp_path, {}, evaluator=None)
