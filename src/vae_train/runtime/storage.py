"""Writes that fail for want of room or access (a full disk, a quota, a read-only or vanished folder):
told as a :class:`~vae_train.errors.StorageError` naming what was being written, where, why, and the
space free there; and that free space itself, for the warning given before checkpoints stop fitting.

Any other error passes unchanged: it is a bug, and its traceback is what a report of it needs.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from vae_train.errors import StorageError
from vae_train.files import shown_path


@dataclass(frozen=True)
class WriteFailure:
    """Why a write failed, as a user reads it, and what to do before running the same command again."""

    reason: str
    remedy: str


NO_SPACE = WriteFailure("no space left on device", "Free some space there, or move the run folder to a disk "
                        "with room, and run the same command again.")
QUOTA = WriteFailure("the disk quota is exceeded", "Free some of your space there, or get a larger quota, and run "
                     "the same command again.")
READ_ONLY = WriteFailure("the file system is read-only", "Remount it writable, or move the run folder to a writable "
                         "disk, and run the same command again.")
NO_PERMISSION = WriteFailure("permission denied", "Make the folder writable for this user and run the same "
                             "command again.")
VANISHED = WriteFailure("the folder is gone or no longer a folder (deleted, or its disk unmounted)",
                        "Bring it back (remount the disk) and run the same command again.")
DISK_FAILURE = WriteFailure("an input/output error (a failing disk or network file system)",
                            "Check the disk and run the same command again.")

FAILURES_BY_ERRNO = {
    errno.ENOSPC: NO_SPACE,
    errno.EDQUOT: QUOTA,
    errno.EROFS: READ_ONLY,
    errno.EACCES: NO_PERMISSION,
    errno.EPERM: NO_PERMISSION,
    errno.ENOENT: VANISHED,
    errno.ESTALE: VANISHED,
    errno.EIO: DISK_FAILURE,
}
# TensorFlow's file systems turn errno into these classes (ENOSPC and EDQUOT both into ResourceExhausted,
# EROFS into PermissionDenied) and keep strerror's text in the message: the text is looked for first.
FAILURES_BY_TENSORFLOW_ERROR = {
    tf.errors.ResourceExhaustedError: NO_SPACE,
    tf.errors.PermissionDeniedError: NO_PERMISSION,
    tf.errors.NotFoundError: VANISHED,
    tf.errors.FailedPreconditionError: VANISHED,
}
# What a write raises when it fails; which of these are storage failures is decided by write_failure.
WRITE_ERRORS = (OSError, tf.errors.OpError)


def write_failure(error: BaseException) -> WriteFailure | None:
    """Why the write that raised ``error`` failed, if for want of room or access; None for anything else."""
    if isinstance(error, OSError):
        return FAILURES_BY_ERRNO.get(error.errno)
    if isinstance(error, tf.errors.OpError):
        message = str(error)
        # ResourceExhausted is also TensorFlow's out-of-memory error, which can strike at a write too.
        if "OOM" in message or "memory" in message.lower():
            return None
        for code, failure in FAILURES_BY_ERRNO.items():
            if os.strerror(code) in message:
                return failure
        return next((failure for kind, failure in FAILURES_BY_TENSORFLOW_ERROR.items() if isinstance(error, kind)),
                    None)
    return None


def free_bytes(path: Path) -> int | None:
    """The space free to this user on the disk of ``path``, or of its nearest existing parent (the folder
    may not exist yet, or be gone); None when even that cannot be asked."""
    path = Path(path).absolute()
    for place in (path, *path.parents):
        if place.exists():
            try:
                return shutil.disk_usage(place).free
            except OSError:
                return None
    return None


def size_text(count: float) -> str:
    """``count`` bytes as a person reads them: 812 bytes, 3.4 MB, 1.2 GB (powers of 1000, as df -H)."""
    if count < 1000:
        return f"{count:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:.1f} TB"


def storage_error(error: BaseException, what: str, where: Path, aftermath: str = "",
                  run_state: str = "") -> StorageError | None:
    """The StorageError telling that writing ``what`` into the folder ``where`` failed with ``error``; None
    when ``error`` is no failure for want of room or access. ``aftermath``: what was cleaned up after it."""
    failure = write_failure(error)
    if failure is None:
        return None
    free = free_bytes(where)
    free_text = "" if free is None else f"; {size_text(free)} free there"
    problem = f"Could not write {what} in {shown_path(where)}: {failure.reason}{free_text}."
    return StorageError(" ".join(part for part in (problem, aftermath) if part), failure.remedy, run_state)


@contextmanager
def writing(what: str, where: Path, run_state: str = "") -> Iterator[None]:
    """Turn a write inside that fails for want of room or access into a StorageError about ``what`` in the
    folder ``where``; ``run_state`` says what is safe on disk and how the same command goes on."""
    try:
        yield
    except WRITE_ERRORS as err:
        storage = storage_error(err, what, where, run_state=run_state)
        if storage is None:
            raise
        raise storage from err
