"""``data=folder``: the user's own images, a folder of PNG, JPEG, BMP, GIF, TIFF or WebP files.

The folder is scanned (:mod:`.scan`: which files, which classes), decoded once into a memory-mapped
cache (:mod:`.cache`, with :mod:`.decode` making every image one size and colour), and split into
training and test images (:mod:`.split`), or its test images come from a second folder,
``data.test_root``. Training and test images are row selections of the cache, so nothing is copied.
"""

from __future__ import annotations

import logging

import numpy as np

from vae_train.data.arrays import RowSubset, Split
from vae_train.data.sources import ReadContext, SourceImages, register_source
from vae_train.data.sources.folder.cache import DecodedFolder, DecodeOptions, decoded_images
from vae_train.data.sources.folder.decode import DecodeRequest
from vae_train.data.sources.folder.scan import FolderScan, scan_folder
from vae_train.data.sources.folder.split import SPLIT_FILE, split_rows
from vae_train.errors import DataError

log = logging.getLogger(__name__)


@register_source("folder")
def read_folder(config, context: ReadContext) -> SourceImages:
    """The images of ``config.root`` (a ``FolderDataConfig``), with their test images."""
    options = DecodeOptions(config.skip_unreadable, config.decode_workers, context.progress)
    scan = scan_folder(config.root, "data.root", infer_labels=config.labels is not None)
    decoded = decoded_images(scan, decode_request(config), options, config.cache_dir)
    rows = decoded.readable_rows(scan)
    run_files = {}
    if config.test_root is None:
        sides = split_rows(scan, rows, config.test_fraction, context)
        if sides.record is not None:
            run_files[SPLIT_FILE] = sides.record
        train = selection(decoded, mixed(sides.train, context.seed), scan.labels)
        test = selection(decoded, mixed(sides.test, context.seed), scan.labels)
    else:
        train = selection(decoded, mixed(rows, context.seed), scan.labels)
        test = read_test_folder(config, scan, decoded, options, context.seed)
    log.info("%s: %d training and %d test images of %dx%dx%d, %s.", scan.root, len(train.labels),
             len(test.labels), *decoded.images.shape[1:],
             f"{len(scan.class_names)} classes" if scan.labelled else "unlabelled")
    return SourceImages(train, test, scan.class_names, labelled=scan.labelled, run_files=run_files)


def decode_request(config) -> DecodeRequest:
    image_size = None if config.image_size is None else tuple(int(side) for side in config.image_size)
    resize = getattr(config.resize, "value", config.resize)  # the Resize enum; a plain string also does
    return DecodeRequest(image_size, config.channels, resize)


def mixed(rows: np.ndarray, seed: int) -> np.ndarray:
    """``rows`` in a seeded order. A scan lists the images class by class; whatever takes the first images
    (data.max_train_examples, the pictures, the tail data.split=validation holds out) should find every
    class among them, as it does in the published data sets."""
    return rows[np.random.default_rng([seed, len(rows)]).permutation(len(rows))]


def selection(decoded: DecodedFolder, rows: np.ndarray, labels: np.ndarray) -> Split:
    """The decoded images at ``rows`` and their labels, the images as a view of the cache (no copy)."""
    return Split(RowSubset(decoded.images, rows), labels[rows])


def read_test_folder(config, train_scan: FolderScan, train_decoded: DecodedFolder, options: DecodeOptions,
                     seed: int) -> Split:
    """The images of ``config.test_root``, made the training images' size and colour, labelled by the
    training folder's classes."""
    scan = scan_folder(config.test_root, "data.test_root", infer_labels=train_scan.labelled)
    labels = labels_in_training_classes(scan, train_scan)
    decoded = decoded_images(scan, train_decoded.settings.request(), options, config.cache_dir)
    return selection(decoded, mixed(decoded.readable_rows(scan), seed), labels)


def labels_in_training_classes(test_scan: FolderScan, train_scan: FolderScan) -> np.ndarray:
    """The test images' labels as indices into the training folder's class names."""
    if not train_scan.labelled:
        return test_scan.labels
    if not test_scan.labelled:
        raise DataError(
            f"The test images of {test_scan.root} (data.test_root) lie directly in it, in no class folder, but "
            f"the training images of {train_scan.root} (data.root) are sorted into class folders. Sort the test "
            "images into folders named as the training classes, or set data.labels=null to use neither's labels."
        )
    unknown = [name for name in test_scan.class_names if name not in train_scan.class_names]
    if unknown:
        raise DataError(
            f"The test folder {test_scan.root} (data.test_root) has classes the training folder {train_scan.root} "
            f"(data.root) lacks: {', '.join(unknown)}. The model would have no label for them; rename those "
            "folders to training classes, add them to the training folder too, or remove them."
        )
    training_label = np.array([train_scan.class_names.index(name) for name in test_scan.class_names], dtype=np.int32)
    return training_label[test_scan.labels]
