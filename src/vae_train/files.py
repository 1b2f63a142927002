"""Files that readers, and other processes writing the same file, see whole: old or new; and
reading back a JSON record that may be missing or damaged."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` write a partial file of this process, then rename it over ``path`` in one step,
    so a kill or a parallel writer (jobs of a sweep rewriting its summary) never leaves a mix. The
    partial file ends with ``path``'s suffix, for writers that insist on one (Keras' ``.keras``)."""
    partial = path.with_name(f".partial.{os.getpid()}.{path.name}")
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        # On a full disk the partial file would hold the very space the next try needs.
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (see :func:`replace_atomically`)."""
    replace_atomically(path, lambda partial: partial.write_text(text))


def read_json_object(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or holds no object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def shown_path(path: Path) -> str:
    """``path`` as a user reads it: relative to the working directory when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)
