"""Training end to end: the CLI on tiny data, the run folder it leaves, resuming, and failures."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import PROJECT_ROOT, QUIET_EVALUATION, folder_bytes, tiny_overrides, train_tiny
from vae_train.errors import CheckpointError, TrainingError


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {tag: [(event.step, float(tf.make_ndarray(event.tensor_proto))) for event in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]
            if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}


def run_cli(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("VAE_TRAIN_DATA", None)
    return subprocess.run([sys.executable, "-m", "vae_train.launch.train_cli", *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_and_fills_the_run_folder(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(*tiny_overrides(tiny_data_dir), "trainer.epochs=2", "trainer.log_every_steps=2",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"] == "cvae" and results["data"] == "mnist" and results["latent_dim"] == 2
    assert results["epochs"] == 2 and results["steps"] == 2 * (128 // 32)
    for key in ("train_loss", "test_loss", "images_per_second", "test_elbo", "test_reconstruction", "test_kl"):
        assert isinstance(results[key], float), key
    assert results["test_elbo"] == pytest.approx(-(results["test_reconstruction"] + results["test_kl"]))

    checkpoints = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    assert checkpoints.model_checkpoint_path.endswith("ckpt-8")

    # The event files sit in the run folder's train/ and test/, which TensorBoard names run/train, run/test.
    train_scalars = read_scalars(run_dir / "train")
    test_scalars = read_scalars(run_dir / "test")
    assert {"loss/total", "loss/reconstruction", "loss/kl", "optimization/learning_rate",
            "speed/images_per_second", "speed/epoch_seconds", "speed/between_epochs_seconds"} <= set(train_scalars)
    assert [step for step, _ in train_scalars["loss/total"]] == [2, 4, 6, 8]
    assert train_scalars["optimization/learning_rate"][-1][1] == pytest.approx(1e-3)
    assert [step for step, _ in test_scalars["loss/total"]] == [4, 8]
    assert test_scalars["loss/total"][-1][1] == pytest.approx(results["test_loss"], rel=1e-5)
    assert {"loss/elbo", "loss/kl", "loss/reconstruction"} <= set(test_scalars)
    # Curves only: the epoch is the x axis and the parameter counts are text, not scalar series.
    tags = set(train_scalars) | set(test_scalars)
    assert not {tag for tag in tags if tag.split("/")[-1] == "epoch" or tag.startswith("parameters/")}
    # The composed config and the model with its parameter counts are in TensorBoard as text...
    accumulator = EventAccumulator(str(run_dir / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert b"latent_dim: 2" in tf.make_ndarray(accumulator.Tensors("config")[0].tensor_proto).item()
    model_text = tf.make_ndarray(accumulator.Tensors("model")[0].tensor_proto).item().decode()
    assert f"{results['parameters']:,} in all" in model_text
    # ...the log file is in the run folder, and the run ends with a line of its figures and places.
    assert "epoch 2/2" in (run_dir / "vae-train.log").read_text()
    closing = result.stderr.strip().splitlines()[-1]
    assert "Finished in" in closing and f"test loss {results['test_loss']:.4g}" in closing
    assert f"ELBO {results['test_elbo']:.4g}" in closing and f"NLL bound (K=50) {results['test_nll_iw']:.4g}" in closing
    assert "Run folder run (results in run/results.json); tensorboard --logdir run" in closing
    # A quiet console: none of TensorFlow's C++ start-up lines, one line of ours about the devices.
    for line in ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub", "failed call to cuInit"):
        assert line not in result.stderr, line
    assert sum("Devices: " in line for line in result.stderr.splitlines()) == 1
    assert "First training step" in result.stderr


@pytest.mark.slow  # folders made before 0.2
def test_a_run_folder_of_the_older_layout_resumes_into_its_own_event_folders(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=1")
    (tmp_path / "tensorboard").mkdir()  # as runs before the event folders moved up wrote them
    for split in ("train", "test"):
        (tmp_path / split).rename(tmp_path / "tensorboard" / split)
    resumed = train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=2")
    assert resumed["steps"] == 8
    assert not (tmp_path / "train").exists() and not (tmp_path / "test").exists()
    steps = [step for step, _ in read_scalars(tmp_path / "tensorboard" / "test")["loss/total"]]
    assert steps == [4, 8]


def test_resuming_gives_the_same_run_as_training_straight_through(tiny_data_dir, tmp_path):
    straight = train_tiny(tiny_data_dir, tmp_path / "straight", "trainer.epochs=2", *QUIET_EVALUATION)
    train_tiny(tiny_data_dir, tmp_path / "resumed", "trainer.epochs=1", *QUIET_EVALUATION)
    resumed = train_tiny(tiny_data_dir, tmp_path / "resumed", "trainer.epochs=2", *QUIET_EVALUATION)
    assert resumed["steps"] == straight["steps"] == 8
    assert resumed["epochs"] == 2
    # Same data order per epoch and the noise generator restored from the checkpoint.
    assert resumed["test_loss"] == pytest.approx(straight["test_loss"], rel=1e-5)
    assert resumed["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-5)


def test_the_wall_time_account_counts_work_outside_any_timed_phase(tiny_data_dir, tmp_path, monkeypatch):
    from vae_train.data.pipeline import ImagePipelines

    # A cost where none of the loop's timers looks: making each epoch's pipeline.
    make_epoch = ImagePipelines.train
    monkeypatch.setattr(ImagePipelines, "train", lambda self, epoch: time.sleep(0.5) or make_epoch(self, epoch))
    results = train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=2", "evaluation.iw_samples=0")

    parts = ("wall_startup_seconds", "wall_training_steps_seconds", "wall_between_epochs_seconds",
             "wall_end_of_run_seconds")
    assert sum(results[part] for part in parts) == pytest.approx(results["wall_seconds"], abs=0.01)
    assert results["wall_between_epochs_seconds"] >= 2 * 0.5
    assert results["between_epochs_seconds"] >= 0.5  # each epoch's mean counts it too
    assert results["wall_training_steps_seconds"] == pytest.approx(2 * results["epoch_seconds"], rel=1e-3)
    # The finer parts lie inside the four: start-up's, the work between steps, the end of the run's.
    parts = results["wall_parts"]
    startup = ("devices", "data", "model", "evaluation_set_up", "restore")
    between = ("test_figures", "checkpoints", "epoch_pictures")
    assert set(startup + between + ("first_call_of_the_steps", "end_of_run_figures", "export")) <= set(parts)
    assert all(seconds >= 0 for seconds in parts.values())
    # Every figure is rounded to the millisecond, so a sum of parts may exceed its whole by their roundings.
    rounding = 0.0005 * 6
    assert sum(parts[name] for name in startup) <= results["wall_startup_seconds"] + rounding
    assert sum(parts[name] for name in between) <= results["wall_between_epochs_seconds"] - 2 * 0.5 + rounding
    assert parts["first_call_of_the_steps"] <= results["wall_training_steps_seconds"] + rounding
    assert parts["end_of_run_figures"] + parts["export"] <= results["wall_end_of_run_seconds"] + rounding


def test_no_pipeline_runs_tf_data_autotuning(tiny_data_dir):
    # Its model thread held up the deletion of each epoch's iterator by seconds (see without_autotuning).
    from conftest import tiny_data_config
    from vae_train.config.schema.data import Binarize
    from vae_train.data.pipeline import ImagePipelines, load_dataset

    for binarize in (Binarize.static, Binarize.dynamic):
        config = tiny_data_config(tiny_data_dir, binarize=binarize)
        pipelines = ImagePipelines(load_dataset(config), config, seed=0)
        for dataset in (pipelines.train(0), pipelines.test(), pipelines.in_order("train"),
                        pipelines.test_batches().dataset()):
            assert dataset.options().autotune.enabled is False


def test_test_figures_follow_their_own_cadence_and_a_stopped_run_reports_its_weights(tiny_data_dir, tmp_path,
                                                                                    monkeypatch):
    every = train_tiny(tiny_data_dir, tmp_path / "every", "trainer.epochs=3", *QUIET_EVALUATION)
    sparse = train_tiny(tiny_data_dir, tmp_path / "sparse", "trainer.epochs=3", "evaluation.test_every_n_epochs=2",
                        *QUIET_EVALUATION)
    curves = {run: dict(read_scalars(tmp_path / run / "test")["loss/total"]) for run in ("every", "sparse")}
    assert list(curves["every"]) == [4, 8, 12]
    assert list(curves["sparse"]) == [8, 12]  # epoch 2, and the last
    # Skipping them changes nothing of the training.
    assert [curves["sparse"][step] for step in (8, 12)] == pytest.approx([curves["every"][step] for step in (8, 12)],
                                                                        rel=1e-6)
    for key in ("train_loss", "test_loss"):
        assert sparse[key] == pytest.approx(every[key], rel=1e-6), key

    # Stopped (SIGTERM) after epoch 1, which had no test figures: the results hold its weights' figures.
    from vae_train.run.epoch_pictures import TensorBoardPictures

    hook = TensorBoardPictures.__call__
    monkeypatch.setattr(TensorBoardPictures, "__call__",
                        lambda self, record: (hook(self, record), os.kill(os.getpid(), signal.SIGTERM)))
    stopped = train_tiny(tiny_data_dir, tmp_path / "stopped", "trainer.epochs=3", "evaluation.test_every_n_epochs=2",
                         *QUIET_EVALUATION)
    assert stopped["stopped_by"] == "SIGTERM" and stopped["epochs"] == 1 and not stopped["finished"]
    assert stopped["test_loss"] == pytest.approx(curves["every"][4], rel=1e-6)
    assert "loss/total" not in read_scalars(tmp_path / "stopped" / "test")  # none logged for epoch 1


def test_resuming_a_finished_run_trains_nothing_more(tiny_data_dir, tmp_path):
    first = train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=1", *QUIET_EVALUATION)
    again = train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=1", *QUIET_EVALUATION)
    assert again["steps"] == first["steps"]
    assert again["test_loss"] == pytest.approx(first["test_loss"], rel=1e-5)


def test_resuming_with_another_model_names_both_and_writes_nothing(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=1", *QUIET_EVALUATION)
    before = folder_bytes(tmp_path)
    with pytest.raises(CheckpointError, match=r"model cvae, latent_dim 2.*model cvae, latent_dim 3"):
        train_tiny(tiny_data_dir, tmp_path, "latent_dim=3")  # the projector on, which the first run had off
    assert folder_bytes(tmp_path) == before


def test_unreadable_checkpoint_is_a_clear_error(tiny_data_dir, tmp_path):
    train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=1", *QUIET_EVALUATION)
    for data_file in (tmp_path / "checkpoints").glob("*.data-*"):
        data_file.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="Cannot restore"):
        train_tiny(tiny_data_dir, tmp_path, "trainer.epochs=2")


@pytest.fixture(scope="module")
def untrained_test_loss(tiny_data_dir, tmp_path_factory) -> dict[str, float]:
    """Each model's test loss before any step; the same seed gives the same initial weights."""
    return {model: train_tiny(tiny_data_dir, tmp_path_factory.mktemp(model), f"model={model}",
                              "trainer.epochs=0", *QUIET_EVALUATION)["test_loss"]
            for model in ("dense_ae", "conv_ae", "cvae")}


# One pair per model and per optimizer in the default run; the other six re-check the same paths.
DIAGONAL = {("dense_ae", "sgd"), ("conv_ae", "rmsprop"), ("cvae", "adam")}


@pytest.mark.parametrize(("model", "optimizer"), [
    pytest.param(model, optimizer, marks=() if (model, optimizer) in DIAGONAL else pytest.mark.slow)
    for model, optimizer in itertools.product(["dense_ae", "conv_ae", "cvae"], ["sgd", "adam", "rmsprop"])])
def test_every_model_learns_with_every_optimizer_at_its_defaults(
        tiny_data_dir, tmp_path, untrained_test_loss, model, optimizer):
    # 32 steps: a default learning rate too high for losses summed over 784 pixels (as SGD's once
    # was) shows here as a test loss above the untrained model's, or as a NaN.
    results = train_tiny(tiny_data_dir, tmp_path, f"model={model}", f"optimizer={optimizer}",
                         "data.batch_size=8", "trainer.epochs=2", *QUIET_EVALUATION)
    assert results["steps"] == 32
    assert 0 < results["test_loss"] < untrained_test_loss[model]
    assert ("test_elbo" in results) == (model == "cvae")


def test_non_finite_loss_stops_without_saving(tiny_data_dir, tmp_path):
    with pytest.raises(TrainingError, match=r"non-finite.*step \d+.*learning rate"):
        train_tiny(tiny_data_dir, tmp_path, "model=dense_ae", "optimizer=sgd", "optimizer.learning_rate=1e30")
    assert not (tmp_path / "checkpoints" / "checkpoint").exists()


def test_config_folder_is_found_from_an_installed_layout(tmp_path):
    """A wheel puts conf/ inside the package; the source tree keeps it at the root."""
    from vae_train.launch import train_cli as cli

    assert Path(cli.config_dir()) == PROJECT_ROOT / "conf"
    package = tmp_path / "vae_train"
    shutil.copytree(PROJECT_ROOT / "src" / "vae_train", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "conf").mkdir()
    code = "from vae_train.launch.train_cli import config_dir; print(config_dir())"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == str(package / "conf"), result.stderr
