"""Files that readers, and other processes writing the same file, see whole: old or new."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a partial file of this process, renamed over it in one step,
    so a kill or a parallel writer (jobs of a sweep rewriting its summary) never leaves a mix."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)
