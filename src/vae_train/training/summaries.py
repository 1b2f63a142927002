"""TensorBoard event files of a run: ``tensorboard/train`` and ``tensorboard/test``."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf


class TensorBoardWriters:
    def __init__(self, run_dir: Path):
        root = Path(run_dir) / "tensorboard"
        self.writers = {split: tf.summary.create_file_writer(str(root / split)) for split in ("train", "test")}

    def scalars(self, split: str, step: int, values: dict[str, float]) -> None:
        with self.writers[split].as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def text(self, name: str, markdown: str, step: int = 0) -> None:
        with self.writers["train"].as_default(step=step):
            tf.summary.text(name, markdown)

    def flush(self) -> None:
        for writer in self.writers.values():
            writer.flush()
