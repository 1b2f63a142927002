"""Checkpoints of a run: the model's weights and noise generator, the optimizer, the epoch and step,
and the running sums of the current epoch (see Trainer).

``signature.json`` beside them records what they were trained as, so restoring into a different
model says so in words instead of failing on a tensor shape deep inside TensorFlow.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import tensorflow as tf

from vae_train.errors import CheckpointError
from vae_train.files import write_atomically

log = logging.getLogger(__name__)

SIGNATURE_FILE = "signature.json"


def _describe(signature: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in signature.items())


def model_trackables(model) -> dict:
    """The model's part of a run's checkpoint, under the names every reader of it uses. Its weights
    are listed: tf.train.Checkpoint does not track a Keras 3 model's variables itself, and the
    optimizer's references cover only the trainable ones."""
    return {"model_weights": list(model.weights), "noise": model.noise}


class RunCheckpoints:
    def __init__(self, directory: Path, signature: dict, keep: int, **trackables):
        self.directory = Path(directory)
        self.signature = signature
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def _check_signature(self) -> None:
        path = self.directory / SIGNATURE_FILE
        if not path.is_file():
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(
                f"Cannot read {path} ({err}); move the checkpoints folder away to start over."
            ) from err
        if saved != self.signature:
            raise CheckpointError(
                f"The checkpoints in {self.directory} are from {_describe(saved)}, but this run is "
                f"{_describe(self.signature)}. Use another run folder (hydra.run.dir=...) or the "
                "overrides the checkpoints were trained with."
            )

    def restore_latest(self, partial: bool = False) -> bool:
        """Restore the newest checkpoint if there is one; returns whether it did.

        ``partial``: these trackables are only part of what was saved (say, to evaluate the model),
        so the rest of the checkpoint is left unread without a warning.
        """
        if self.latest is None:
            return False
        self._check_signature()
        try:
            status = self.checkpoint.restore(self.latest).assert_existing_objects_matched()
            if partial:
                status.expect_partial()
        # TensorFlow signals a damaged or foreign checkpoint with many exception types
        # (IndexError for a short read, ValueError for shapes, OpError, AssertionError...).
        except Exception as err:
            raise CheckpointError(
                f"Cannot restore {self.latest}: {str(err).splitlines()[0]} The checkpoint is damaged or "
                "from a different model; use another run folder or delete the checkpoints folder."
            ) from err
        log.info("%s %s.", "Read" if partial else "Resumed from", self.latest)
        return True

    def save(self, step: int) -> str:
        """Save at ``step``. A kill at any moment leaves the previous checkpoint as the latest:
        TensorFlow writes the new files first and then replaces the index file in one rename."""
        signature = self.directory / SIGNATURE_FILE
        if not signature.is_file():
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(signature, json.dumps(self.signature, indent=2))
        return self.manager.save(checkpoint_number=step)
