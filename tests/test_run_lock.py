"""One writer per run folder: the lock names its holder, dies with it, and is the chief's alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vae_train.launch.run_lock import LOCK_FILE, RunFolderBusy, RunFolderLock, hold_run_folder, release_run_folder

HOLDER = ("import sys; from vae_train.launch.run_lock import RunFolderLock\n"
          "RunFolderLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()")


def start_holder(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock until its stdin closes or it is killed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_folder_is_refused_naming_the_holder_and_a_killed_holder_blocks_nothing(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(RunFolderBusy, match=rf"in use by another vae-train process \(pid {holder.pid} on "):
            RunFolderLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    lock = RunFolderLock(tmp_path)
    lock.acquire()  # the kernel dropped the dead holder's lock; its file is still there
    assert lock.held
    assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")
    lock.release()


def test_a_released_lock_is_free_for_the_next_process(tmp_path):
    hold_run_folder(tmp_path)
    hold_run_folder(tmp_path)  # the same process again: already its own
    release_run_folder(tmp_path)

    holder = start_holder(tmp_path)
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0


@pytest.mark.parametrize("environment", [
    {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})},
    {"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"},
])
def test_only_the_chief_takes_the_lock(tmp_path, monkeypatch, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    hold_run_folder(tmp_path)

    assert not (tmp_path / LOCK_FILE).exists()
    holder = start_holder(tmp_path)  # the chief can take it
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
