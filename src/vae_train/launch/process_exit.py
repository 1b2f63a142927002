"""Leaving the process once a command is done, without the interpreter's teardown of TensorFlow.

With TensorFlow loaded, Python's own exit spends seconds collecting and tearing down its tens of
thousands of objects and modules (about 2 s of a 1-epoch run on the reference machine, docs/benchmarks.md),
long after the run's files were written. So once the command has finished, its exit functions run (the
logs' flush, a worker's scratch folder's removal), the consoles are flushed, and the process ends with
``os._exit`` and the command's status. Without TensorFlow (help, a config error) the exit is Python's.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def exit_code(status: object) -> int:
    """The process status ``sys.exit(status)`` gives: None is 0, an int itself, anything else (a message,
    printed to stderr) 1."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status
    print(status, file=sys.stderr)
    return 1


def run_then_leave(command: Callable[[], object]) -> NoReturn:
    """Run ``command``; then exit as :func:`sys.exit` would, quickly when TensorFlow is loaded."""
    try:
        command()
        status: object = 0
    except SystemExit as stop:
        status = stop.code
    if "tensorflow" not in sys.modules:
        sys.exit(status)
    code = exit_code(status)
    atexit._run_exitfuncs()  # what the interpreter's exit would run first: logging's flush among them
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken console: nothing to say there
            stream.flush()
    os._exit(code)
