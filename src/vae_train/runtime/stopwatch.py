"""The parts of a job's wall time, finer than the four of ``run/wall_time.py``: how start-up divides
(the interpreter and Hydra, TensorFlow's import, devices, data, model, ...), what the epochs' work
between steps costs in all (test figures, checkpoints, pictures) and what the end of the run does.

One record per job, which results.json gets as ``wall_parts``: the command line's parts, before the
run's code starts (:func:`launched`), then the run's (:func:`add`, :func:`timed`), which each run
starts afresh (:func:`start_run`). No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

_launch: dict[str, float] = {}
_parts: dict[str, float] = {}


def launched(parts: dict[str, float]) -> None:
    """The command line's parts of this job (its earlier jobs' are dropped)."""
    _launch.clear()
    _launch.update(parts)


def start_run() -> None:
    _parts.clear()


def add(name: str, seconds: float) -> None:
    _parts[name] = _parts.get(name, 0.0) + seconds


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Add the time the block takes to the part ``name``, however the block ends."""
    started = time.perf_counter()
    try:
        yield
    finally:
        add(name, time.perf_counter() - started)


def parts() -> dict[str, float]:
    """The parts recorded so far, in seconds, in the order they were first recorded."""
    return {name: round(seconds, 3) for name, seconds in {**_launch, **_parts}.items()}


def describe(recorded: dict[str, float]) -> str:
    return ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in recorded.items())
