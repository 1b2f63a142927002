"""Reading IDX files (the MNIST format), gzip-compressed, into NumPy arrays.

Every way a file can be wrong becomes a :class:`DataError` naming the file, because a
truncated download or a mixed-up folder otherwise surfaces much later as a shape error.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from vae_train.errors import DataError

# The third byte of the magic number is the element type (0x08: unsigned byte) and the fourth
# the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _read_gzip(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"Missing data file {path}.")
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"Cannot decompress {path} ({err}): the file is truncated or not gzip data. "
            "Delete it and download it again."
        ) from err


def _read_idx(path: Path, magic: int) -> np.ndarray:
    raw = _read_gzip(path)
    ndim = magic & 0xFF
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes after gunzip).")
    found, *shape = struct.unpack(f">{1 + ndim}I", raw[:header_size])
    if found != magic:
        raise DataError(
            f"{path} has IDX magic number 0x{found:08x}, expected 0x{magic:08x}: "
            "it is not the file its name says (images and labels swapped?)."
        )
    expected = int(np.prod(shape)) if shape else 0
    payload = len(raw) - header_size
    if payload != expected:
        raise DataError(
            f"{path} declares shape {tuple(shape)} ({expected} bytes) but holds {payload} bytes "
            "of data: the file is truncated or corrupt. Delete it and download it again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def read_images(path: Path) -> np.ndarray:
    """An IDX image file as a ``(count, height, width)`` uint8 array (28x28 for MNIST); the models
    take their size from it."""
    return _read_idx(path, IMAGES_MAGIC)


def read_labels(path: Path) -> np.ndarray:
    """An IDX label file as a ``(count,)`` uint8 array."""
    return _read_idx(path, LABELS_MAGIC)

