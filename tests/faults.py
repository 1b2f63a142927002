"""Injected write faults for the tests of tests/test_checkpoint_faults.py and tests/test_reliability.py:
checkpoint saves that die as a real one does on a full or read-only disk, after TensorFlow's saver has
made its ``<checkpoint>_temp/`` folder and written part of the data into it.

Injected rather than real: a full disk needs a small file system mounted for the test, and a read-only
folder made with chmod does not stop the root user the tests run as.

Installed in this process (through pytest's monkeypatch), or in a vae-train subprocess:

    python tests/faults.py STEPS KIND [vae-train overrides...]

runs vae-train with the saves at the comma-separated STEPS failing with KIND (see ERRORS). No
TensorFlow at this module's import, so that vae-train starts TensorFlow itself, as it always does.
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
from collections.abc import Callable, Collection
from pathlib import Path

# The data file TensorFlow's saver writes first, inside <checkpoint>_temp/.
PARTIAL_DATA = "part-00000-of-00001.data-00000-of-00001"


def _no_space_from_tensorflow(partial: Path) -> Exception:
    import tensorflow as tf

    # What TensorFlow 2.21 raises when the disk fills during a save (its message, shortened).
    return tf.errors.ResourceExhaustedError(
        None, None, f"{partial / PARTIAL_DATA}.tempstate1234; No space left on device [Op:SaveV2]")


ERRORS: dict[str, Callable[[Path], Exception]] = {
    "no_space": lambda partial: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(partial / PARTIAL_DATA)),
    "no_space_tensorflow": _no_space_from_tensorflow,
    "read_only": lambda partial: PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(partial / PARTIAL_DATA)),
}


def failing_saves(steps: Collection[int], kind: str, before_failing: Callable[[Path], None] | None = None) -> Callable:
    """A stand-in for ``tf.train.Checkpoint._write`` (what CheckpointManager.save calls) whose saves at
    ``steps`` leave a partial ``_temp`` folder and raise ``ERRORS[kind]``; other saves are real.
    ``before_failing`` is called with the checkpoints folder as the failing save starts, to see it as it was."""
    import tensorflow as tf

    real_write = tf.train.Checkpoint._write

    def write(checkpoint, file_prefix, options=None):
        if int(str(file_prefix).rsplit("-", 1)[1]) not in steps:
            return real_write(checkpoint, file_prefix, options=options)
        if before_failing is not None:
            before_failing(Path(file_prefix).parent)
        partial = Path(f"{file_prefix}_temp")
        partial.mkdir(parents=True, exist_ok=True)
        (partial / PARTIAL_DATA).write_bytes(bytes(4096))
        raise ERRORS[kind](partial)

    return write


def fail_saves(setattr_: Callable, steps: Collection[int], kind: str,
               before_failing: Callable[[Path], None] | None = None) -> None:
    """Make the saves at ``steps`` fail; ``setattr_`` is pytest's ``monkeypatch.setattr``, or ``setattr``."""
    import tensorflow as tf

    setattr_(tf.train.Checkpoint, "_write", failing_saves(steps, kind, before_failing))


def _run_vae_train_with_failing_saves(steps: set[int], kind: str, overrides: list[str]) -> None:
    import vae_train.runtime.start as start

    start_tensorflow = start.start_tensorflow

    def start_then_fail_saves(verbose: bool = False) -> None:
        start_tensorflow(verbose)
        fail_saves(setattr, steps, kind)

    # Before the command line's module imports it by name.
    start.start_tensorflow = start_then_fail_saves
    sys.argv = ["vae-train", *overrides]
    runpy.run_module("vae_train.launch.train_cli", run_name="__main__")


if __name__ == "__main__":
    _run_vae_train_with_failing_saves({int(step) for step in sys.argv[1].split(",")}, sys.argv[2], sys.argv[3:])
