"""Which of a folder's images are test images, when no ``data.test_root`` says so.

A share ``data.test_fraction`` of the images, drawn with the run's seed and stratified by class (each
class keeps its share of the test set; scikit-learn's ``train_test_split``). A training run records
the split in its run folder as ``split.csv``, one row per image; whoever reads the run later (a
resumed run, vae-eval) takes the split from there rather than drawing it again, because a folder that
gained or lost images would draw another split, and a test image could then have been trained on.
``data=mvtec`` records its validation images the same way, their side being ``validation``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_train.data.sources import ReadContext
from vae_train.data.sources.folder.scan import FolderScan
from vae_train.errors import DataError

log = logging.getLogger(__name__)

SPLIT_FILE = "split.csv"
SPLIT_COLUMNS = ("path", "label", "split")
TRAIN, TEST, VALIDATION = "train", "test", "validation"


@dataclass(frozen=True)
class RowSplit:
    """Rows of the folder's decoded images, in file order."""

    train: np.ndarray
    test: np.ndarray
    record: str | None = None  # split.csv's text for a split drawn now; None for a recorded one


def split_rows(scan: FolderScan, rows: np.ndarray, test_fraction: float, context: ReadContext) -> RowSplit:
    """The split of ``rows`` (the files that decoded): the run's recorded one when it has one, else a
    seeded draw with the text of its record, which the run writes once it is sure to start."""
    record = recorded_split_file(context)
    if record is not None:
        return recorded_split(record, scan, rows)
    split = seeded_split(scan, rows, test_fraction, context.seed)
    return RowSplit(split.train, split.test, split_record(scan, {TRAIN: split.train, TEST: split.test}))


def recorded_split_file(context: ReadContext) -> Path | None:
    """The run's split.csv when the run has a folder and the file is there: a resumed run's split."""
    if context.run_dir is None:
        return None
    record = context.run_dir / SPLIT_FILE
    return record if record.is_file() else None


def seeded_split(scan: FolderScan, rows: np.ndarray, test_fraction: float, seed: int) -> RowSplit:
    labels = scan.labels[rows]
    check_split_possible(scan, labels, test_fraction)
    # Imported here: scikit-learn takes a second to import, which reading a run's recorded split or
    # a published data set need not wait for.
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(rows, test_size=test_fraction, random_state=seed,
                                       stratify=labels if scan.labelled else None)
    except ValueError as error:  # a case check_split_possible missed; still the data's, not a bug
        raise DataError(f"Cannot split the images of {scan.root} ({scan.key}) into training and test images with "
                        f"data.test_fraction={test_fraction} ({error}). Add images, change data.test_fraction, "
                        "or give the test images as a folder, data.test_root.") from error
    return RowSplit(np.sort(train), np.sort(test))


def check_split_possible(scan: FolderScan, labels: np.ndarray, test_fraction: float) -> None:
    """The errors scikit-learn would raise, as messages about the folder and its keys."""
    counts = Counter(labels.tolist())
    if scan.labelled:
        too_small = {scan.class_names[label]: count for label, count in sorted(counts.items()) if count < 2}
        if too_small:
            listed = ", ".join(f"{name} ({count} image)" for name, count in too_small.items())
            raise DataError(f"Classes of {scan.root} ({scan.key}) with fewer than 2 readable images: {listed}. A "
                            "stratified split needs one training and one test image of each class. Add images to "
                            "them, remove those class folders, or give the test images as a folder, data.test_root.")
    # As train_test_split counts them.
    test_count = math.ceil(test_fraction * len(labels))
    train_count = len(labels) - test_count
    needed = len(counts) if scan.labelled else 1
    if min(test_count, train_count) < needed:
        each = f"one image of each of the {needed} classes" if scan.labelled else "one image"
        raise DataError(f"data.test_fraction={test_fraction} of the {len(labels)} readable images of {scan.root} "
                        f"({scan.key}) leaves {train_count} training and {test_count} test images, but each side "
                        f"needs at least {each}. {fraction_advice(needed, len(labels))}")


def fraction_advice(needed: int, count: int) -> str:
    """The test fractions that leave ``needed`` images on each side of a split of ``count`` images."""
    if 2 * needed > count:
        return "Add images, or give the test images as a folder, data.test_root."
    # Rounded inwards to 3 decimals, so that both ends work.
    lowest, highest = math.ceil(1000 * needed / count) / 1000, math.floor(1000 * (1 - needed / count)) / 1000
    return (f"Set data.test_fraction between {lowest} and {highest}, add images, or give the test images as a "
            "folder, data.test_root.")


def split_record(scan: FolderScan, rows_of_side: dict[str, np.ndarray]) -> str:
    """split.csv's text: each image's path relative to the folder, its class and its side."""
    labels = scan.labels
    sides = sorted((row, side) for side, rows in rows_of_side.items() for row in rows.tolist())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(SPLIT_COLUMNS)
    for row, side in sides:
        label = scan.class_names[labels[row]] if scan.labelled else ""
        writer.writerow((scan.files[row].path, label, side))
    return text.getvalue()


def read_split_record(path: Path, held_out: str = TEST) -> dict[str, str]:
    """Each recorded image's side (train or ``held_out``), by its path relative to the folder."""
    try:
        with open(path, newline="") as handle:
            records = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise damaged_record(path, f"{type(error).__name__}: {error}", held_out) from error
    sides = {}
    for number, record in enumerate(records, start=2):
        if record.get("path") is None or record.get("split") not in (TRAIN, held_out):
            raise damaged_record(path, f"line {number} has no path or a split other than {TRAIN} or {held_out}",
                                 held_out)
        sides[record["path"]] = record["split"]
    return sides


def damaged_record(path: Path, reason: str, held_out: str) -> DataError:
    return DataError(f"The run's recorded split {path} cannot be read ({reason}); it should have the columns "
                     f"{', '.join(SPLIT_COLUMNS)}. Restore it from a copy of the run; deleting it makes the run "
                     f"draw the split again, so its {held_out} images may then include images it trained on.")


def recorded_split(path: Path, scan: FolderScan, rows: np.ndarray) -> RowSplit:
    """The split in ``path``, for the files that still exist and decode (see :func:`recorded_sides`)."""
    return RowSplit(*recorded_sides(path, scan, rows, TEST))


def recorded_sides(path: Path, scan: FolderScan, rows: np.ndarray, held_out: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``path`` records as training images and as ``held_out`` ones (test or validation), sorted,
    among ``rows``: the files that still exist and decode. Images added since are left out of both
    sides, so that no held-out image is one the run may already have trained on."""
    sides = read_split_record(path, held_out)
    row_of = {scan.files[row].path: row for row in rows.tolist()}

    def rows_recorded_as(side: str) -> np.ndarray:
        return np.array(sorted(row_of[name] for name, recorded in sides.items() if recorded == side and name in row_of),
                        dtype=np.int64)

    train, kept = rows_recorded_as(TRAIN), rows_recorded_as(held_out)
    lost = sum(name not in row_of for name in sides)
    gained = sum(name not in sides for name in row_of)
    if lost or gained:
        log.warning("%s (%s) gained %d and lost %d images since the split %s was recorded; the recorded split is "
                    "kept: the lost images are dropped and the new ones are not used.",
                    scan.root, scan.key, gained, lost, path)
    if len(train) == 0 or len(kept) == 0:
        raise DataError(f"Of the images the recorded split {path} names, no {TRAIN if len(train) == 0 else held_out} "
                        f"image is left in {scan.root} ({scan.key}): the folder lost them since. Restore the "
                        "images, or start a new run (in another run folder) to draw a new split.")
    return train, kept
