"""TensorBoard event files of a run: one folder per split, ``train/`` and ``test/``, under a root.

A write that fails for want of room or access raises StorageError. TensorFlow buffers events, so such
a failure may surface at a later write or at the flush rather than at the event it concerns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_train.runtime.storage import writing

WHAT = "TensorBoard event files"


class TensorBoardWriters:
    """One writer per split, opened at its first write: a run refused before training (a
    mismatched checkpoint, bad data) leaves no empty event files behind. ``tag_of`` names each
    scalar's tag from its figure's name."""

    def __init__(self, root: Path, tag_of: Callable[[str], str] = str):
        self.root = Path(root)
        self.tag_of = tag_of
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, split: str) -> tf.summary.SummaryWriter:
        if split not in self._writers:
            with writing(WHAT, self.root / split):
                self._writers[split] = tf.summary.create_file_writer(str(self.root / split))
        return self._writers[split]

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        with writing(WHAT, self.root / split), self.writer(split).as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(self.tag_of(name), value)

    def images(self, split: str, step: int, images: dict[str, np.ndarray]) -> None:
        """One picture per name, each a ``(height, width, channels)`` uint8 array."""
        with writing(WHAT, self.root / split), self.writer(split).as_default(step=step):
            for name, image in images.items():
                tf.summary.image(name, image[np.newaxis])

    def histograms(self, split: str, step: int, values: dict[str, tf.Tensor]) -> None:
        with writing(WHAT, self.root / split), self.writer(split).as_default(step=step):
            for name, value in values.items():
                tf.summary.histogram(name, value)

    def text(self, name: str, markdown: str, step: int = 0) -> None:
        with writing(WHAT, self.root / "train"), self.writer("train").as_default(step=step):
            tf.summary.text(name, markdown)

    def flush(self) -> None:
        for split, writer in self._writers.items():
            with writing(WHAT, self.root / split):
                writer.flush()
