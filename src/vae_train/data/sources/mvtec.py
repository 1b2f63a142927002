"""``data=mvtec``: one category of the MVTec AD layout, the visual-inspection benchmark's, or any set laid
out as it is::

    <data.root>/train/good/*.png                    normal images: the training images
    <data.root>/test/good/*.png                     normal test images
    <data.root>/test/<defect>/*.png                 defective test images, one folder per kind of defect
    <data.root>/ground_truth/<defect>/<name>_mask.png   the mask of test/<defect>/<name>.png (optional)

The training images, less a seeded share ``data.validation_fraction`` held out as normal validation
images (where an anomaly threshold is chosen), are train/good's. A training run records which are which
in its run folder (``split.csv``, as a folder's split), and whoever reads the run later (a resumed run,
vae-eval) holds out the recorded images, even after train/good gained or lost some. Every test image is
tested; its class is its folder, "good" first (label 0, the one normal class) and then the defects by name.

The images are the folder reader's: scanned, decoded once into memory-mapped caches (one for train/good,
one for test, at the training images' size and colour, as data.test_root is) and selected as rows of
them, so nothing is copied. The masks are decoded on every read instead of cached: there are at most a
few hundred per category, mostly black PNGs that decode in milliseconds, and a mask must be resized with
nearest neighbour (a label, not an intensity), which the image cache never does. Each decoded mask is
stored once; every normal or mask-less test image shares one all-zero row, so the masks cost memory
only for the defects that have them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from vae_train.data.arrays import RowSubset, Split
from vae_train.data.sources import ReadContext, SourceImages, register_source
from vae_train.data.sources.folder import decode_request, mixed, selection
from vae_train.data.sources.folder.cache import (
    DecodedFolder,
    DecodeFailure,
    DecodeOptions,
    attempt,
    decoded_images,
    parallel_map,
    unreadable_error,
)
from vae_train.data.sources.folder.decode import DecodeSettings, fit, read_header, to_eight_bit
from vae_train.data.sources.folder.scan import UNLABELLED_CLASS, FolderScan, ImageFile, find_images, images_phrase
from vae_train.data.sources.folder.split import (
    SPLIT_FILE,
    TRAIN,
    VALIDATION,
    recorded_sides,
    recorded_split_file,
    split_record,
)
from vae_train.errors import DataError

log = logging.getLogger(__name__)

TRAIN_FOLDER = "train/good"
TEST_FOLDER = "test"
MASK_FOLDER = "ground_truth"
NORMAL_CLASS = "good"  # the one class of normal images, label 0
MASK_SUFFIX = "_mask"  # ground_truth/<defect>/<name>_mask.png is the mask of test/<defect>/<name>.png
LAYOUT = (f"{TRAIN_FOLDER}/*.png (the normal training images), {TEST_FOLDER}/{NORMAL_CLASS}/* and "
          f"{TEST_FOLDER}/<defect>/* (the test images, one folder per kind of defect), and optionally "
          f"{MASK_FOLDER}/<defect>/<name>{MASK_SUFFIX}.png (the mask of {TEST_FOLDER}/<defect>/<name>.png)")
# Files named in one log line or error; the count says how many more there are.
NAMED_FILES = 10
MASK_ON, MASK_OFF = 255, 0


@dataclass(frozen=True)
class MaskFiles:
    """The masks of a category: which test image (path relative to test/) each mask file is of."""

    scan: FolderScan  # of ground_truth/, unlabelled: for the folder reader's messages about its files
    of_image: dict[str, ImageFile]  # test image path -> its mask file


@dataclass(frozen=True)
class DecodedMasks:
    """The test images' masks, ``table`` rows shared through ``row_of_image``."""

    table: np.ndarray  # (1 + masks, height, width, 1) uint8; row 0 all zero
    row_of_image: np.ndarray  # (test files,) the table row of each test file's mask; 0 when it has none
    known: np.ndarray  # (test files,) bool: whether the file's mask is known (normal images: all zero)


@register_source("mvtec")
def read_mvtec(config, context: ReadContext) -> SourceImages:
    """The images of the category ``config.root`` (an ``MVTecDataConfig``): training, validation and test."""
    root = category_root(config.root)
    options = DecodeOptions(config.skip_unreadable, config.decode_workers, context.progress)
    train_scan = scan_training_images(root)
    test_scan = scan_test_images(root)
    mask_files = match_masks(root, test_scan)  # before any decoding: a misnamed mask stops the run at once
    train_decoded = decoded_images(train_scan, decode_request(config), options, config.cache_dir)
    test_decoded = decoded_images(test_scan, train_decoded.settings.request(), options, config.cache_dir)
    train, validation, record = hold_out_validation(train_scan, train_decoded, config.validation_fraction, context)
    masks = decode_masks(test_scan, test_decoded, mask_files, options)
    test = split_of_test_images(test_scan, test_decoded, masks, context.seed)
    log.info("%s: %d training, %d validation and %d test images (%d kinds of defect, %d masks) of %dx%dx%d.", root,
             len(train.labels), len(validation.labels), len(test.labels), len(test_scan.class_names) - 1,
             len(masks.table) - 1, *train_decoded.images.shape[1:])
    return SourceImages(train, test, test_scan.class_names, labelled=True, validation=validation,
                        normal_labels=(test_scan.class_names.index(NORMAL_CLASS),),
                        run_files={} if record is None else {SPLIT_FILE: record})


def category_root(root: str) -> Path:
    folder = Path(root).expanduser()
    if not (folder / TRAIN_FOLDER).is_dir():
        found = ("does not exist" if not folder.exists() else "is not a folder" if not folder.is_dir()
                 else f"has no {TRAIN_FOLDER} folder")
        raise DataError(f"The MVTec AD category {folder} (data.root) {found}. data.root must be one category in "
                        f"the MVTec AD layout: {LAYOUT}. Point data.root at such a folder, e.g. "
                        "data.root=/path/to/mvtec_anomaly_detection/bottle, or use data=folder for another layout.")
    return folder.resolve()


def scan_training_images(root: Path) -> FolderScan:
    folder = root / TRAIN_FOLDER
    files = find_images(folder)
    if not files:
        raise DataError(f"The training folder {folder} (data.root's {TRAIN_FOLDER}) holds no image file: the "
                        f"MVTec AD layout is {LAYOUT}. Put the normal training images there.")
    return FolderScan(folder, "data.root", tuple(files), (UNLABELLED_CLASS,), labelled=False)


def scan_test_images(root: Path) -> FolderScan:
    """test/'s images, classed by their first-level folder: "good" (label 0, whether or not there are normal
    test images) and then the defects by name."""
    folder = root / TEST_FOLDER
    files = find_images(folder) if folder.is_dir() else []
    if not files:
        raise DataError(f"The category {root} (data.root) has no test image: {folder} is missing or holds no image "
                        f"file. The MVTec AD layout is {LAYOUT}. Add the test images, normal and defective.")
    loose = [file.path for file in files if file.class_folder is None]
    if loose:
        raise DataError(f"Test images lie directly in {folder} (data.root's {TEST_FOLDER}), in no class folder: "
                        f"{named(loose)}. Each test image must lie in {TEST_FOLDER}/"
                        f"{NORMAL_CLASS} or {TEST_FOLDER}/<defect>, whose name is its class: move them there.")
    defects = sorted({file.class_folder for file in files} - {NORMAL_CLASS})
    return FolderScan(folder, "data.root", tuple(files), (NORMAL_CLASS, *defects), labelled=True)


def match_masks(root: Path, test_scan: FolderScan) -> MaskFiles:
    """Each mask file of ground_truth/ paired with its test image; a mask that names no test image is an
    error, since a typo there would silently leave a defect scored at image level only."""
    folder = root / MASK_FOLDER
    files = tuple(find_images(folder)) if folder.is_dir() else ()
    scan = FolderScan(folder, "data.root", files, (UNLABELLED_CLASS,), labelled=False)
    image_of_stem = {str(PurePosixPath(file.path).with_suffix("")): file.path for file in test_scan.files}
    of_image: dict[str, ImageFile] = {}
    unmatched = []
    for mask in files:
        stem = str(PurePosixPath(mask.path).with_suffix(""))
        image = image_of_stem.get(stem.removesuffix(MASK_SUFFIX)) if stem.endswith(MASK_SUFFIX) else None
        if image is None:
            unmatched.append(f"{MASK_FOLDER}/{mask.path}")
        elif image in of_image:
            raise DataError(f"The test image {TEST_FOLDER}/{image} of {root} (data.root) has two masks, "
                            f"{MASK_FOLDER}/{of_image[image].path} and {MASK_FOLDER}/{mask.path}. Keep one.")
        else:
            of_image[image] = mask
    if unmatched:
        raise DataError(f"{images_phrase(len(unmatched))} in {folder} (data.root's {MASK_FOLDER}) match no test "
                        f"image: {named(unmatched)}. The mask of {TEST_FOLDER}/<defect>/<name>.png must be "
                        f"{MASK_FOLDER}/<defect>/<name>{MASK_SUFFIX}.png (any image format); rename or remove "
                        "those files, or add their test images.")
    return MaskFiles(scan, of_image)


def hold_out_validation(scan: FolderScan, decoded: DecodedFolder, fraction: float,
                        context: ReadContext) -> tuple[Split, Split, str | None]:
    """train/good's readable images, less a seeded share ``fraction`` of them: (training, validation), and
    split.csv's text for a hold-out drawn now; the run's recorded hold-out when it has one (text None)."""
    rows = decoded.readable_rows(scan)
    # Both in the seeded order of all the readable rows, so the recorded hold-out of an unchanged folder
    # gives the very images, in the very order, of the draw.
    order = mixed(rows, context.seed)
    record = recorded_split_file(context)
    if record is not None:
        train_rows, validation_rows = recorded_sides(record, scan, rows, VALIDATION)
        return (part_split(scan, decoded, order[np.isin(order, train_rows)], TRAIN_FOLDER),
                part_split(scan, decoded, order[np.isin(order, validation_rows)], TRAIN_FOLDER), None)
    held_out = math.ceil(fraction * len(rows))  # at least one, as train_test_split rounds a test share
    if held_out >= len(rows):
        # Rounded down to 3 decimals, so that the fraction the message offers works.
        highest = math.floor(1000 * (len(rows) - 1) / len(rows)) / 1000
        advice = ("add normal images to it" if highest <= 0
                  else f"lower data.validation_fraction to at most {highest}, or add normal images to it")
        raise DataError(f"data.validation_fraction={fraction} of the {images_phrase(len(rows))} readable images of "
                        f"{scan.root} (data.root's {TRAIN_FOLDER}) holds out {held_out} as validation images and "
                        f"leaves none to train on: {advice}.")
    text = split_record(scan, {TRAIN: order[held_out:], VALIDATION: order[:held_out]})
    return (part_split(scan, decoded, order[held_out:], TRAIN_FOLDER),
            part_split(scan, decoded, order[:held_out], TRAIN_FOLDER), text)


def part_split(scan: FolderScan, decoded: DecodedFolder, rows: np.ndarray, folder: str) -> Split:
    """The images at ``rows`` as views of the cache, with their paths relative to data.root."""
    paths = np.array([f"{folder}/{scan.files[row].path}" for row in rows.tolist()], dtype=str)
    return replace(selection(decoded, rows, scan.labels), paths=paths)


def split_of_test_images(scan: FolderScan, decoded: DecodedFolder, masks: DecodedMasks, seed: int) -> Split:
    # Mixed like a folder's test images, so that data.max_test_examples keeps every kind of defect.
    rows = mixed(decoded.readable_rows(scan), seed)
    split = part_split(scan, decoded, rows, TEST_FOLDER)
    return replace(split, masks=RowSubset(masks.table, masks.row_of_image[rows]), has_mask=masks.known[rows])


def decode_masks(scan: FolderScan, decoded: DecodedFolder, mask_files: MaskFiles,
                 options: DecodeOptions) -> DecodedMasks:
    """The masks of the test images that decoded, at their decoded size; each line of the log names the
    images a kind of mishap concerns."""
    settings = decoded.settings
    readable = set(decoded.readable_rows(scan).tolist())
    normal = scan.labels == scan.class_names.index(NORMAL_CLASS)
    masked_rows = [row for row, file in enumerate(scan.files) if file.path in mask_files.of_image and row in readable]

    def decode_row(row: int):
        image = scan.files[row]
        return attempt(decode_mask, mask_files.scan.path_of(mask_files.of_image[image.path]),
                       scan.path_of(image), settings)

    table = [np.zeros((settings.height, settings.width, 1), dtype=np.uint8)]
    row_of_image = np.zeros(len(scan.files), dtype=np.int64)
    other_size, unreadable = [], []
    for row, result in zip(masked_rows, parallel_map(decode_row, masked_rows, options), strict=True):
        mask_path = mask_files.of_image[scan.files[row].path].path
        if isinstance(result, DecodeFailure):
            if not options.skip_unreadable:
                raise unreadable_error(mask_files.scan, mask_path, result.reason)
            unreadable.append(f"{MASK_FOLDER}/{mask_path}")
            continue
        pixels, resized = result
        row_of_image[row] = len(table)
        table.append(pixels[..., np.newaxis])
        if resized:
            other_size.append(f"{MASK_FOLDER}/{mask_path}")
    known = normal | (row_of_image > 0)
    report_masks(scan, [row for row in sorted(readable) if not known[row]], other_size, unreadable)
    return DecodedMasks(np.stack(table), row_of_image, known)


def decode_mask(mask_path: Path, image_path: Path, settings: DecodeSettings) -> tuple[np.ndarray, bool]:
    """The mask in ``mask_path`` as ``(height, width)`` uint8 0/255, on the pixels its image (``image_path``)
    has once decoded, and whether the mask was of another size than the image's file. Nearest neighbour
    throughout: a blend of 0 and 255 would widen the defect once binarized."""
    with Image.open(mask_path) as mask:
        mask.load()
        levels = np.asarray(to_eight_bit(mask).convert("L"))
    binary = Image.fromarray(np.where(levels > 0, MASK_ON, MASK_OFF).astype(np.uint8))
    header = read_header(image_path)
    resized = binary.size != (header.width, header.height)
    if resized:  # to the image's own pixels first, so that a crop or pad below cuts both alike
        binary = binary.resize((header.width, header.height), Image.Resampling.NEAREST)
    fitted = fit(binary, settings.height, settings.width, settings.resize, Image.Resampling.NEAREST)
    return np.asarray(fitted, dtype=np.uint8), resized


def report_masks(scan: FolderScan, maskless_rows: list[int], other_size: list[str], unreadable: list[str]) -> None:
    if unreadable:
        log.warning("Skipped %s of %s that do not decode (data.skip_unreadable=true); their images are scored at "
                    "image level only: %s.", images_phrase(len(unreadable)), scan.root.parent / MASK_FOLDER,
                    named(unreadable))
    if maskless_rows:
        names = [f"{TEST_FOLDER}/{scan.files[row].path}" for row in maskless_rows]
        log.warning("%s of %s have no mask in %s/ and are scored at image level only, not per pixel: %s.",
                    images_phrase(len(names)).capitalize(), scan.root.parent, MASK_FOLDER, named(names))
    if other_size:
        log.info("Masks of another size than their images, resized to them with nearest neighbour (%d): %s.",
                 len(other_size), named(other_size))


def named(paths: list[str]) -> str:
    shown = ", ".join(paths[:NAMED_FILES])
    return shown if len(paths) <= NAMED_FILES else f"{shown} and {len(paths) - NAMED_FILES} more"
