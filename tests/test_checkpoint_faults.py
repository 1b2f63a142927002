"""Faults a long run meets (docs/reliability.md): a disk that fills or turns read-only while the run
writes, and checkpoints damaged on disk. Each loses no work still on disk, says so in one paragraph or
one log line, and the same command goes on.

The write faults are injected (tests/faults.py). The runs are the tiny ones of tests/conftest.py: a
dense autoencoder of 4 steps per epoch, so three epochs save ckpt-4, ckpt-8 and ckpt-12.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from conftest import PROJECT_ROOT, QUIET_EVALUATION, compose, tiny_overrides, train_tiny
from faults import fail_saves
from test_reliability import (
    CLI,
    STEPS_PER_EPOCH,
    assert_same_run,
    cli_env,
    deterministic_overrides,
    latest_step,
    longer_data_dir,  # noqa: F401 (a fixture)
)
from vae_train.config import to_settings
from vae_train.errors import CheckpointError, StorageError, exit_status

FAULTS = [sys.executable, str(PROJECT_ROOT / "tests" / "faults.py")]
# The fastest run that still saves a checkpoint per epoch: no pictures, no end-of-run analyses.
FAST = [*QUIET_EVALUATION, "model=dense_ae"]
EPOCHS = 3
STEPS = 4  # per epoch: 128 training images in batches of 32
DATA_FILE = "data-00000-of-00001"


def fast_run(data_dir: Path, run_dir: Path, *overrides: str) -> dict:
    return train_tiny(data_dir, run_dir, *FAST, f"trainer.epochs={EPOCHS}", *overrides)


@pytest.fixture(scope="module")
def straight_run(tiny_data_dir, tmp_path_factory) -> Path:
    """Three epochs trained straight through: ckpt-4, ckpt-8, ckpt-12 and the figures every interrupted
    run must end with. Read-only: tests copy it."""
    run_dir = tmp_path_factory.mktemp("straight")
    fast_run(tiny_data_dir, run_dir)
    return run_dir


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def hashes(folder: Path) -> dict[str, str]:
    """The files directly in ``folder`` (a checkpoints folder), by name, with a hash of their contents."""
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.is_file()}


def recorded(run_dir: Path) -> tuple[str | None, list[str]]:
    """The state file's latest checkpoint and the checkpoints it keeps, by name."""
    state = tf.train.get_checkpoint_state(str(run_dir / "checkpoints"))
    if state is None:
        return None, []
    return Path(state.model_checkpoint_path).name, [Path(path).name for path in state.all_model_checkpoint_paths]


def checkpoints_on_disk(run_dir: Path) -> set[str]:
    return {path.name.split(".")[0] for path in (run_dir / "checkpoints").glob("ckpt-*.index")}


def partial_saves(run_dir: Path) -> list[Path]:
    return list((run_dir / "checkpoints").glob("*_temp"))


def fallback_lines(caplog) -> list[str]:
    """The log lines of restores that did not take the recorded latest checkpoint."""
    messages = [record.getMessage() for record in caplog.records]
    return [message for message in messages if "the newest checkpoint that reads" in message]


# --- writes that fail for want of room or access --------------------------------------------------------


@pytest.mark.parametrize(("kind", "failing_step"), [
    ("no_space_tensorflow", STEPS),  # the first checkpoint: nothing complete yet
    pytest.param("no_space", STEPS, marks=pytest.mark.slow),
    pytest.param("no_space_tensorflow", 2 * STEPS, marks=pytest.mark.slow),
    ("no_space", 3 * STEPS),  # a later one: the one before stays the latest
])
def test_a_save_on_a_full_disk_stops_in_one_paragraph_and_the_same_command_resumes(
        kind, failing_step, straight_run, tiny_data_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    before: dict[str, str] = {}
    fail_saves(monkeypatch.setattr, {failing_step}, kind, before_failing=lambda folder: before.update(hashes(folder)))
    with pytest.raises(StorageError) as error:
        fast_run(tiny_data_dir, run_dir)

    message = str(error.value)
    assert exit_status(error.value) == 75
    assert "\n" not in message
    assert f"Could not write checkpoint ckpt-{failing_step}" in message
    assert "no space left on device" in message and "free there" in message
    assert "partial files were removed" in message
    previous = failing_step - STEPS
    if previous:
        assert f"The last complete checkpoint is {run_dir / 'checkpoints' / f'ckpt-{previous}'} (step {previous})" \
            in message
    else:
        assert "No checkpoint is complete yet" in message
    assert not partial_saves(run_dir)
    # Nothing lost, nothing half-written left: the folder is as it was when the failing save began.
    assert hashes(run_dir / "checkpoints") == before
    assert recorded(run_dir)[0] == (f"ckpt-{previous}" if previous else None)

    monkeypatch.undo()
    resumed = fast_run(tiny_data_dir, run_dir)
    expected = results_of(straight_run)
    assert resumed["steps"] == expected["steps"] == EPOCHS * STEPS
    assert resumed["test_loss"] == pytest.approx(expected["test_loss"], abs=1e-6)


@pytest.mark.slow  # the catalogue's run-folder faults check the exit status through the command line in the default run
def test_a_full_disk_through_the_command_line_exits_75_and_the_same_command_resumes(
        straight_run, tiny_data_dir, tmp_path):
    overrides = [*tiny_overrides(tiny_data_dir), *FAST, f"trainer.epochs={EPOCHS}", f"hydra.run.dir={tmp_path}"]
    failed = subprocess.run([*FAULTS, str(2 * STEPS), "no_space", *overrides], env=cli_env(), capture_output=True,
                            text=True, timeout=300)
    output = failed.stdout + failed.stderr
    assert failed.returncode == 75, output
    assert "Traceback" not in output
    paragraphs = [line for line in output.splitlines() if "Could not write" in line]
    assert len(paragraphs) == 1, output
    assert "no space left on device" in paragraphs[0] and f"(step {STEPS}): the same command resumes" in paragraphs[0]
    assert not partial_saves(tmp_path)
    assert latest_step(tmp_path) == STEPS

    # The same run resumed in this process: the figures of the run trained straight through.
    resumed = fast_run(tiny_data_dir, tmp_path)
    assert resumed["test_loss"] == pytest.approx(results_of(straight_run)["test_loss"], abs=1e-6)


def _fail_writing_results(monkeypatch) -> None:
    import vae_train.run.train as run_train

    def read_only(path: Path, text: str) -> None:
        if path.name == "results.json":
            raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        write_atomically(path, text)

    write_atomically = run_train.write_atomically
    monkeypatch.setattr(run_train, "write_atomically", read_only)


# chmod cannot make a read-only run folder here: the tests run as root, whom permission bits do not stop.
# The writers are made to fail instead, with the error a read-only mount gives (EROFS).
@pytest.mark.parametrize(("failing_write", "written", "resumes_from"), [
    ("checkpoint", f"checkpoint ckpt-{2 * STEPS}", STEPS),
    pytest.param("results", "results.json", EPOCHS * STEPS, marks=pytest.mark.slow),
])
def test_a_read_only_run_folder_stops_in_one_paragraph_and_the_same_command_resumes(
        failing_write, written, resumes_from, straight_run, tiny_data_dir, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    if failing_write == "checkpoint":
        fail_saves(monkeypatch.setattr, {2 * STEPS}, "read_only")
    else:
        _fail_writing_results(monkeypatch)
    with pytest.raises(StorageError) as error:
        fast_run(tiny_data_dir, run_dir)

    message = str(error.value)
    assert exit_status(error.value) == 75 and "\n" not in message
    assert f"Could not write {written}" in message and "the file system is read-only" in message
    assert f"(step {resumes_from}): the same command resumes from it" in message and "Remount it writable" in message
    assert not partial_saves(run_dir) and latest_step(run_dir) == resumes_from

    monkeypatch.undo()
    resumed = fast_run(tiny_data_dir, run_dir)
    assert resumed["test_loss"] == pytest.approx(results_of(straight_run)["test_loss"], abs=1e-6)


def test_a_disk_short_of_room_for_the_checkpoints_is_warned_about_once(tiny_data_dir, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))

    def warnings() -> list[str]:
        return [record.getMessage() for record in caplog.records if "Only 1.0 KB free" in record.getMessage()]

    # A save every step: four checks of the space in this session, one warning.
    fast_run(tiny_data_dir, tmp_path, "trainer.epochs=1", "trainer.checkpoint_every_steps=1")
    assert len(warnings()) == 1
    assert "trainer.checkpoints_to_keep=3" in warnings()[0] and "4 of" in warnings()[0]

    # A resumed run is warned before it trains.
    caplog.clear()
    fast_run(tiny_data_dir, tmp_path, "trainer.epochs=2")
    assert len(warnings()) == 1
    messages = [record.getMessage() for record in caplog.records]
    assert messages.index(warnings()[0]) < next(index for index, message in enumerate(messages)
                                                if message.startswith("epoch 2/2"))


# --- damaged checkpoints --------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


DAMAGE = {
    # name: (damage to the checkpoints folder, the files moved to damaged/, the step resumed from)
    "truncated data": (lambda folder: _truncate(folder / f"ckpt-12.{DATA_FILE}"),
                       {f"ckpt-12.{DATA_FILE}", "ckpt-12.index"}, 8),
    "deleted index": (lambda folder: (folder / "ckpt-12.index").unlink(), {f"ckpt-12.{DATA_FILE}"}, 8),
    # The state file is what is damaged: the newest checkpoint on disk is whole, and taken.
    "garbled state file": (lambda folder: (folder / "checkpoint").write_bytes(b"\x00model_checkpoint_path: \xff"),
                           {"checkpoint"}, 12),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_newest_that_reads(
        case, straight_run, tiny_data_dir, tmp_path, caplog):
    damage, moved, resumed_from = DAMAGE[case]
    run_dir = copy_of(straight_run, tmp_path)
    damage(run_dir / "checkpoints")

    results = fast_run(tiny_data_dir, run_dir, "trainer.epochs=4")

    assert results["finished"] is True and results["steps"] == 4 * STEPS
    damaged = run_dir / "checkpoints" / "damaged"
    assert {path.name for path in damaged.iterdir()} == moved
    [line] = fallback_lines(caplog)
    assert f"ckpt-{resumed_from} (step {resumed_from})" in line and "damaged" in line
    # The manager's bookkeeping follows: the state file lists the checkpoints on disk, the oldest swept.
    latest, kept = recorded(run_dir)
    assert latest == "ckpt-16" and set(kept) == checkpoints_on_disk(run_dir) == {"ckpt-8", "ckpt-12", "ckpt-16"}


def test_when_no_checkpoint_reads_the_run_is_refused_naming_the_files_tried(straight_run, tiny_data_dir, tmp_path):
    run_dir = copy_of(straight_run, tmp_path)
    for data_file in (run_dir / "checkpoints").glob("*.data-*"):
        _truncate(data_file)
    before = hashes(run_dir / "checkpoints")
    with pytest.raises(CheckpointError) as error:
        fast_run(tiny_data_dir, run_dir, "trainer.epochs=4")
    message = str(error.value)
    assert "\n" not in message and exit_status(error.value) == 1
    assert "Cannot restore any checkpoint" in message
    for step in (4, 8, 12):
        assert f"ckpt-{step} (ckpt-{step}.{DATA_FILE}, ckpt-{step}.index: Read less bytes than requested)" in message
    assert hashes(run_dir / "checkpoints") == before and not (run_dir / "checkpoints" / "damaged").exists()


def test_a_checkpoint_of_another_model_is_refused_not_set_aside(straight_run, tiny_data_dir, tmp_path):
    run_dir = copy_of(straight_run, tmp_path)
    before = hashes(run_dir / "checkpoints")
    with pytest.raises(CheckpointError, match="are from model dense_ae, latent_dim 2, but this run is"):
        fast_run(tiny_data_dir, run_dir, "latent_dim=3")
    # Its files read but do not fit: a refusal, not damage.
    with pytest.raises(CheckpointError, match="Cannot restore .*ckpt-12: .*reads, but is from a different model"):
        fast_run(tiny_data_dir, run_dir, "model.hidden_units=[8]")
    assert hashes(run_dir / "checkpoints") == before


def test_vae_eval_evaluates_the_newest_checkpoint_that_reads_and_says_so(straight_run, tiny_data_dir, tmp_path,
                                                                           caplog):
    from vae_train.run.evaluate import evaluate_run

    run_dir = copy_of(straight_run, tmp_path)
    _truncate(run_dir / "checkpoints" / f"ckpt-12.{DATA_FILE}")
    before = hashes(run_dir / "checkpoints")
    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), *FAST, f"trainer.epochs={EPOCHS}"]))
    with caplog.at_level(logging.INFO):
        results = evaluate_run(settings, run_dir, output=tmp_path / "eval")

    assert Path(results["checkpoint"]).name == "ckpt-8" and results["steps"] == 8
    [line] = fallback_lines(caplog)
    assert line.startswith("Read ") and "ckpt-12 (Read less bytes than requested)" in line and "left in place" in line
    assert any(record.getMessage().startswith(f"Evaluated {run_dir / 'checkpoints' / 'ckpt-8'} (epoch 2, step 8)")
               for record in caplog.records)
    # vae-eval only reads: a run may be saving into the folder.
    assert hashes(run_dir / "checkpoints") == before and not (run_dir / "checkpoints" / "damaged").exists()


def test_vae_eval_on_a_full_disk_stops_in_one_paragraph(straight_run, tiny_data_dir, tmp_path, monkeypatch):
    import vae_train.run.evaluate as evaluate

    def no_space(path: Path, picture) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(evaluate, "write_png", no_space)
    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), *FAST, "evaluation.reconstructions=4",
                                    f"trainer.epochs={EPOCHS}"]))
    with pytest.raises(StorageError) as error:
        evaluate.evaluate_run(settings, straight_run, output=tmp_path / "eval")
    message = str(error.value)
    assert exit_status(error.value) == 75 and "\n" not in message
    assert f"Could not write vae-eval's results in {tmp_path / 'eval'}: no space left on device" in message
    assert "checkpoints were only read" in message


# --- make test-slow -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_full_disks_over_a_denoisers_epoch_lose_nothing(longer_data_dir, tmp_path):  # noqa: F811
    """The disk fills at ten seeded saves of a denoiser's second epoch (of 12: every 3 steps and its end),
    each through the command line: exit 75, one paragraph, no partial files, the latest checkpoint
    the one before; then the same command finishes the run with exactly the uninterrupted one's
    weights and figures (as the kill test checks for kills)."""
    rng = random.Random(2024)
    overrides = [*deterministic_overrides(longer_data_dir, epochs=3), "corruption=masking", "corruption.rate=0.3"]
    saves = [step for step in range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1)
             if step % 3 == 0 or step == 2 * STEPS_PER_EPOCH]
    points = sorted(rng.sample(saves, 10))
    straight = tmp_path / "straight"
    subprocess.run([*CLI, *overrides, f"hydra.run.dir={straight}"], env=cli_env(), check=True, capture_output=True,
                   timeout=600)

    run_dir = tmp_path / "full"
    for number, step in enumerate(points):
        before = latest_step(run_dir)
        kind = rng.choice(["no_space", "no_space_tensorflow"])
        result = subprocess.run([*FAULTS, str(step), kind, *overrides, f"hydra.run.dir={run_dir}"], env=cli_env(),
                                capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        assert result.returncode == 75, output[-3000:]
        assert "Traceback" not in output
        assert sum("Could not write" in line for line in output.splitlines()) == 1, output[-3000:]
        assert number == 0 or "Resumed from" in output
        previous_save = max(save for save in (*saves, STEPS_PER_EPOCH) if save < step)
        assert before <= latest_step(run_dir) == previous_save, "a full disk lost a checkpoint"
        assert not partial_saves(run_dir)
    subprocess.run([*CLI, *overrides, f"hydra.run.dir={run_dir}"], env=cli_env(), check=True, capture_output=True,
                   timeout=600)

    assert_same_run(straight, run_dir, steps=3 * STEPS_PER_EPOCH)
