"""Checkpoints of a run: the model's weights and noise generator, the optimizer, the epoch and step,
and the running sums of the current epoch (see Trainer).

``signature.json`` beside them records what they were trained as, so restoring into a different
model says so in words instead of failing on a tensor shape deep inside TensorFlow.

Faults a long run meets lose no work that is still on disk:

- a checkpoint whose files do not read (truncated data, a missing index) is skipped for the newest one
  that reads, and moved to ``damaged/``, kept for a look; a garbled state file (``checkpoint``, TensorFlow's
  record of the latest and kept checkpoints) is rebuilt from the checkpoint files on disk. Only when no
  checkpoint reads is the run refused. vae-eval falls back the same way but moves nothing: it only reads.
- a save that fails for want of room or access removes its partial files, so they do not hold the space
  the next try needs, and stops the run with a StorageError naming the last complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from vae_train.errors import CheckpointError
from vae_train.files import shown_path, write_atomically
from vae_train.runtime.storage import WRITE_ERRORS, free_bytes, size_text, storage_error, write_failure, writing

log = logging.getLogger(__name__)

SIGNATURE_FILE = "signature.json"
STATE_FILE = "checkpoint"  # TensorFlow's name; CheckpointManager reads and writes it
DAMAGED_DIR = "damaged"
CHECKPOINT_NAME = re.compile(r"ckpt-(\d+)")  # CheckpointManager's default name, numbered by the step
CHECKPOINT_FILE = re.compile(r"(ckpt-\d+)\.(index|data-\d{5}-of-\d{5})")
# TensorFlow's saver writes a checkpoint's files into <name>_temp/ and merges them into place at the end.
PARTIAL_SAVE_SUFFIX = "_temp"


def _describe(signature: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in signature.items())


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _number(name: str) -> int | None:
    """The step a checkpoint's name (or path) is numbered with; None for a name that is no checkpoint's."""
    match = CHECKPOINT_NAME.fullmatch(Path(name).name)
    return int(match.group(1)) if match else None


@contextmanager
def _quiet_tensorflow() -> Iterator[None]:
    """TensorFlow warns twice for each read of a garbled state file; the restore tells it once, in words."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def model_trackables(model) -> dict:
    """The model's part of a run's checkpoint, under the names every reader of it uses. Its weights
    are listed: tf.train.Checkpoint does not track a Keras 3 model's variables itself, and the
    optimizer's references cover only the trainable ones."""
    return {"model_weights": list(model.weights), "noise": model.noise}


@dataclass
class RecordedState:
    """What the state file says: the latest checkpoint and those kept, by number."""

    latest: int | None = None  # None: no state file, or one that does not read
    kept: list[int] = field(default_factory=list)
    unreadable: bool = False  # the file exists but is garbled


@dataclass
class Skipped:
    """A checkpoint that does not read, with its files and why."""

    number: int
    files: list[Path]
    reason: str

    def describe(self) -> str:
        if not self.files:
            return f"ckpt-{self.number} (no files on disk)"
        return f"ckpt-{self.number} ({', '.join(path.name for path in self.files)}: {self.reason})"


class RunCheckpoints:
    def __init__(self, directory: Path, signature: dict, keep: int, **trackables):
        self.directory = Path(directory)
        self.signature = signature
        self.keep = keep
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._manager: tf.train.CheckpointManager | None = None
        self.restored: str | None = None  # the checkpoint restore_latest restored
        self._warned_about_space = False

    @property
    def manager(self) -> tf.train.CheckpointManager:
        """TensorFlow's manager of the folder, opened from the state file when first needed, and again
        after the state file was rebuilt, so its bookkeeping (what to delete next) is the file's."""
        if self._manager is None:
            try:
                with _quiet_tensorflow():
                    self._manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                               max_to_keep=self.keep)
            except ValueError as err:  # a state file naming no latest checkpoint
                raise CheckpointError(
                    f"{shown_path(self.directory / STATE_FILE)} does not read ({err}); vae-train rebuilds it "
                    "from the checkpoint files when the run resumes."
                ) from err
        return self._manager

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def _path(self, number: int) -> Path:
        return self.directory / f"ckpt-{number}"

    def _files_of(self, number: int) -> list[Path]:
        return sorted(path for path in self.directory.glob(f"ckpt-{number}.*")
                      if CHECKPOINT_FILE.fullmatch(path.name))

    def _numbers_on_disk(self) -> set[int]:
        if not self.directory.is_dir():
            return set()
        return {_number(match.group(1)) for path in self.directory.iterdir()
                if (match := CHECKPOINT_FILE.fullmatch(path.name))}

    def _recorded_state(self) -> RecordedState:
        if not (self.directory / STATE_FILE).exists():
            return RecordedState()
        with _quiet_tensorflow():
            try:
                state = tf.train.get_checkpoint_state(str(self.directory))
            except ValueError:  # parses, but names no latest checkpoint (an empty file, say)
                state = None
        latest = None if state is None else _number(state.model_checkpoint_path)
        if latest is None:
            return RecordedState(unreadable=True)
        kept = [number for path in state.all_model_checkpoint_paths if (number := _number(path)) is not None]
        return RecordedState(latest, kept)

    def _candidates(self, state: RecordedState) -> list[int]:
        """The checkpoints to try, newest first: the state file's latest, then the older ones it lists or
        the disk holds. Without a readable state file, every checkpoint on disk. Files newer than the
        recorded latest are a save whose bookkeeping did not finish; its next save overwrites them."""
        on_disk = self._numbers_on_disk()
        if state.latest is None:
            return sorted(on_disk, reverse=True)
        older = {number for number in (*state.kept, *on_disk) if number < state.latest}
        return [state.latest, *sorted(older, reverse=True)]

    def _why_unreadable(self, number: int) -> str | None:
        """Why the checkpoint ``number`` does not read, or None when every tensor in it reads. Reading them
        all costs one pass over its data, which a restore reads anyway."""
        files = self._files_of(number)
        if not files:
            return "no files"
        if not any(path.suffix == ".index" for path in files):
            return "its .index file is missing"
        if not any(".data-" in path.name for path in files):
            return "its .data file is missing"
        try:
            reader = tf.train.load_checkpoint(str(self._path(number)))
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        # TensorFlow signals damage with many exception types (IndexError for a short read,
        # DataLossError for a checksum, NotFoundError, OutOfRangeError...).
        except Exception as err:
            return _first_line(err)
        return None

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

    def restore_latest(self, partial: bool = False, repair: bool = True) -> bool:
        """Restore the newest checkpoint that reads, if there is one; returns whether it did.

        ``partial``: these trackables are only part of what was saved (say, to evaluate the model),
        so the rest of the checkpoint is left unread without a warning. ``repair``: also remove what
        unfinished saves left, move checkpoints that do not read to ``damaged/`` and rebuild a garbled
        state file; the trainer's restore only, since vae-eval may read a folder a run is saving into.
        """
        if repair:
            with writing("the checkpoints folder", self.directory):
                removed = self._remove_unfinished_saves()
            if removed:
                log.info("Removed %s in %s, left by a save that did not finish.", ", ".join(removed),
                         shown_path(self.directory))
        state = self._recorded_state()
        candidates = self._candidates(state)
        if not candidates:
            return False
        self._check_signature()
        number, skipped = self._newest_that_reads(candidates)
        self._restore(number, partial)
        rebuilt = repair and (bool(skipped) or state.latest is None)
        if rebuilt:
            self._set_aside(skipped, state.unreadable)
            self._rebuild_state(number)
        verb = "Read" if partial else "Resumed from"
        if skipped or state.latest is None:
            log.warning("%s", self._fallback_line(verb, number, skipped, state, rebuilt))
        else:
            log.info("%s %s.", verb, self.restored)
        return True

    def _newest_that_reads(self, candidates: list[int]) -> tuple[int, list[Skipped]]:
        """The first of ``candidates`` that reads, and those before it that do not; refused when none reads."""
        skipped: list[Skipped] = []
        for number in candidates:
            reason = self._why_unreadable(number)
            if reason is None:
                return number, skipped
            skipped.append(Skipped(number, self._files_of(number), reason))
        tried = "; ".join(checkpoint.describe() for checkpoint in skipped)
        raise CheckpointError(
            f"Cannot restore any checkpoint in {shown_path(self.directory)}: none of them reads. Tried "
            f"{tried}. Nothing was moved or deleted. Put back a copy of the checkpoints folder, or "
            "start over: another run folder (hydra.run.dir=...), or move the checkpoints folder away."
        )

    def _restore(self, number: int, partial: bool) -> None:
        path = str(self._path(number))
        status = None
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched()
            if partial:
                status.expect_partial()
        # Its files read (see _why_unreadable), so what fails here is the fit: shapes (ValueError),
        # missing objects (AssertionError)...
        except Exception as err:
            if status is not None:  # else TensorFlow lists every value left unread as the process exits
                status.expect_partial()
            raise CheckpointError(
                f"Cannot restore {path}: {_first_line(err)} The checkpoint reads, but is from a different "
                "model (other layers or sizes); use the overrides it was trained with, or another run folder."
            ) from err
        self.restored = path

    def _fallback_line(self, verb: str, number: int, skipped: list[Skipped], state: RecordedState,
                       rebuilt: bool) -> str:
        """The one line telling a restore that did not take the recorded latest checkpoint."""
        damaged = shown_path(self.directory / DAMAGED_DIR)
        notes = []
        if skipped:
            names = ", ".join(f"ckpt-{checkpoint.number} ({checkpoint.reason})" for checkpoint in skipped)
            where = (f"{'was' if len(skipped) == 1 else 'were'} moved to {damaged}/" if rebuilt
                     else f"{'is' if len(skipped) == 1 else 'are'} left in place (vae-train moves such checkpoints "
                     f"to {damaged}/ when the run resumes)")
            notes.append(f"{names} did not read and {where}")
        if state.latest is None:
            problem = "did not read" if state.unreadable else "was missing"
            if not rebuilt:
                outcome = "the checkpoint files on disk were listed instead"
            elif state.unreadable:
                outcome = f"rebuilt from the checkpoint files on disk, the garbled one moved to {damaged}/"
            else:
                outcome = "rebuilt from the checkpoint files on disk"
            notes.append(f"the state file {STATE_FILE} {problem}: {outcome}")
        return (f"{verb} {shown_path(self._path(number))} (step {number}), the newest checkpoint that reads: "
                f"{'; '.join(notes)}.")

    def _set_aside(self, skipped: list[Skipped], state_unreadable: bool) -> None:
        """Move the files of the checkpoints that did not read, and a garbled state file, to ``damaged/``:
        kept for a look, never deleted. Names already there (an earlier fault) go to ``damaged/2/``, ..."""
        paths = [path for checkpoint in skipped for path in checkpoint.files]
        if state_unreadable:
            paths.append(self.directory / STATE_FILE)
        if not paths:
            return
        with writing("the damaged checkpoints", self.directory / DAMAGED_DIR):
            folder, copy = self.directory / DAMAGED_DIR, 1
            while any((folder / path.name).exists() for path in paths):
                copy += 1
                folder = self.directory / DAMAGED_DIR / str(copy)
            folder.mkdir(parents=True, exist_ok=True)
            for path in paths:
                os.replace(path, folder / path.name)

    def _rebuild_state(self, latest: int) -> None:
        """Write the state file anew: ``latest``, and the older checkpoints on disk to keep (and delete in
        turn), stamped with their files' times, so the manager reopened from it sweeps them as it would."""
        kept = sorted(number for number in self._numbers_on_disk() if number <= latest)
        paths = [str(self._path(number)) for number in kept]
        written = [min(path.stat().st_mtime for path in self._files_of(number)) for number in kept]
        with writing(f"the state file {STATE_FILE}", self.directory):
            # What CheckpointManager records its state with; tf.compat.v1's update_checkpoint_state would
            # write absolute paths, which break a run folder that is moved.
            tf.__internal__.train.update_checkpoint_state(
                str(self.directory), paths[-1], all_model_checkpoint_paths=paths,
                all_model_checkpoint_timestamps=written, last_preserved_timestamp=min(written) - 1,
                save_relative_paths=True)
        self._manager = None

    def _remove_unfinished_saves(self) -> list[str]:
        """Remove what saves that did not finish left (a kill, a full disk): TensorFlow's ``_temp`` folders
        and the state file's temporaries, which hold space and block nothing else. Returns their names."""
        if not self.directory.is_dir():
            return []
        removed = []
        for path in self.directory.iterdir():
            unfinished_save = (path.is_dir() and path.name.endswith(PARTIAL_SAVE_SUFFIX)
                               and _number(path.name.removesuffix(PARTIAL_SAVE_SUFFIX)) is not None)
            if unfinished_save:
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(f"{STATE_FILE}.tmp"):  # tf.io's atomic write: <name>.tmp<uuid>
                path.unlink(missing_ok=True)
            else:
                continue
            removed.append(path.name)
        return sorted(removed)

    def _remove_failed_save(self, number: int) -> bool:
        """After the save of ``number`` failed: remove its partial files, and its merged ones unless the
        state file records it (the failure came after). Whether anything was removed."""
        try:
            removed = bool(self._remove_unfinished_saves())
            if number not in self._recorded_state().kept:
                for path in self._files_of(number):
                    path.unlink(missing_ok=True)
                    removed = True
        except OSError:  # a vanished folder: nothing left to remove
            pass
        self._manager = None  # its memory may hold the failed save; the state file is what counts
        return removed

    def resume_note(self) -> str:
        """What the same command starts from, as the state file on disk records it."""
        latest = self._recorded_state().latest
        if latest is None:
            return "No checkpoint is complete yet: the same command starts the run from the beginning."
        return (f"The last complete checkpoint is {shown_path(self._path(latest))} (step {latest}): the same "
                "command resumes from it.")

    def warn_if_short_of_space(self) -> None:
        """Warn, once, when the free space falls short of the last checkpoint's size times the checkpoints
        kept plus one: the next one is written before the oldest is deleted."""
        if self._warned_about_space or self.latest is None:
            return
        latest = _number(self.latest)
        if latest is None:
            return
        each = sum(path.stat().st_size for path in self._files_of(latest))
        needed = each * (self.keep + 1)
        free = free_bytes(self.directory)
        if free is None or free >= needed:
            return
        self._warned_about_space = True
        log.warning(
            "Only %s free in %s, and the checkpoints may need %s (%d of %s each: trainer.checkpoints_to_keep=%d "
            "and the next one, written before the oldest is deleted). Free some space, or lower "
            "trainer.checkpoints_to_keep: a save that finds no room stops the run with exit status 75, and "
            "the same command then resumes it.",
            size_text(free), shown_path(self.directory), size_text(needed), self.keep + 1, size_text(each),
            self.keep)

    def save(self, step: int) -> str:
        """Save at ``step``. A kill at any moment leaves the previous checkpoint as the latest:
        TensorFlow writes the new files first and then replaces the state file in one rename. A save that
        fails for want of room or access raises StorageError, its partial files removed."""
        self.warn_if_short_of_space()
        try:
            signature = self.directory / SIGNATURE_FILE
            if not signature.is_file():
                self.directory.mkdir(parents=True, exist_ok=True)
                write_atomically(signature, json.dumps(self.signature, indent=2))
            return self.manager.save(checkpoint_number=step)
        except WRITE_ERRORS as err:
            if write_failure(err) is None:
                raise
            removed = self._remove_failed_save(step)
            raise storage_error(err, f"checkpoint ckpt-{step}", self.directory,
                                aftermath="Its partial files were removed." if removed else "",
                                run_state=self.resume_note()) from err
