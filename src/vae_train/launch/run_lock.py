"""One writer per run folder: an advisory lock that dies with its process.

Two ``vae-train`` processes on one folder (a SLURM job requeued while its first copy still runs, a
command started twice) would both train and interleave their checkpoints, event files and results.
The chief takes an exclusive ``flock`` on ``<run folder>/.vae-train.lock`` before the run writes
anything there and holds it until the run ends. The kernel releases it when the process dies, however
it dies, so a lock left by a killed run never blocks its resume; the file stays, naming the last
holder. ``vae-eval`` only reads and takes no lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from vae_train.errors import VaeTrainError

LOCK_FILE = ".vae-train.lock"


class RunFolderBusy(VaeTrainError):
    """Another live process holds the run folder's lock."""


class RunFolderLock:
    """The exclusive lock on one run folder, held from :meth:`acquire` to :meth:`release` (or exit)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunFolderBusy` naming its holder; nothing else is written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 4096, 0).decode(errors="replace").strip() or "an unnamed process"
            os.close(descriptor)
            raise RunFolderBusy(
                f"The run folder {self.path.parent} is in use by another vae-train process ({holder}), "
                "and two writers would interleave their checkpoints, event files and results. Wait for "
                "that run to end or stop that process, then run this command again to resume, or train "
                "into another folder with hydra.run.dir=<folder>. vae-eval can read the folder meanwhile.") from None
        holder = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, holder.encode(), 0)
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the last descriptor releases the flock
            self._descriptor = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None


# This process's locks by run folder: the preflight takes a single run's before Hydra writes into the
# folder, and the job finds it held; a multirun's jobs take and release their own in turn.
_held: dict[Path, RunFolderLock] = {}


def hold_run_folder(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock for this process, if this process is its cluster's chief (the other
    workers write nothing there). Raises :class:`RunFolderBusy` when another process holds it."""
    from vae_train.runtime.cluster import is_chief_process

    key = Path(run_dir).resolve()
    if key in _held or not is_chief_process():
        return
    lock = RunFolderLock(key)
    lock.acquire()
    _held[key] = lock


def release_run_folder(run_dir: Path) -> None:
    lock = _held.pop(Path(run_dir).resolve(), None)
    if lock is not None:
        lock.release()
