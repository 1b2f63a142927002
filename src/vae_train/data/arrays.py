"""A split's images and labels, and a lazy selection of an array's rows.

Images are ``(count, height, width, channels)`` uint8 arrays. A folder's decoded images are one
memory-mapped cache file in file order; its training and test images are selections of rows of it.
:class:`RowSubset` keeps such a selection as indices, so that choosing the training images copies
nothing: a data set larger than memory still trains, and two sweep jobs share the cache's pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class RowSubset:
    """The rows ``rows`` of ``base``, read only when asked for. Indexing with a slice, a boolean mask or
    an index array selects rows again (composing the indices); :meth:`take` reads them."""

    def __init__(self, base: np.ndarray, rows: np.ndarray):
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.base.dtype.itemsize

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> RowSubset | np.ndarray:
        if isinstance(key, (int, np.integer)):
            return np.asarray(self.base[self.rows[key]])
        return RowSubset(self.base, self.rows[key])

    def take(self, indices, axis: int = 0) -> np.ndarray:
        """The rows at ``indices`` of this selection, read into memory (as ``ndarray.take``)."""
        assert axis == 0
        return np.asarray(self.base[self.rows[np.asarray(indices)]])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = np.asarray(self.base[self.rows])
        return rows if dtype is None else rows.astype(dtype)


Images = np.ndarray | RowSubset


def concatenate_images(first: Images, second: Images) -> Images:
    """Both selections' rows, without reading them when both are rows of one array."""
    if isinstance(first, RowSubset) and isinstance(second, RowSubset) and first.base is second.base:
        return RowSubset(first.base, np.concatenate([first.rows, second.rows]))
    return np.concatenate([np.asarray(first), np.asarray(second)])


@dataclass
class Split:
    images: Images  # (count, height, width, channels) uint8
    labels: np.ndarray  # (count,) class indices into the data set's class names; all 0 when unlabelled
    # Optional, per image, for the sources that have them (an inspection data set's test images):
    masks: Images | None = None  # (count, height, width, 1) uint8, 255 where the image is defective
    has_mask: np.ndarray | None = None  # (count,) bool: whether the image's mask is known (else all 0 and unused)
    paths: np.ndarray | None = None  # (count,) str: the image's file, relative to its folder

    def __post_init__(self) -> None:
        for name in ("labels", "masks", "has_mask", "paths"):
            value = getattr(self, name)
            assert value is None or len(value) == len(self.images), (name, len(value), len(self.images))

    def select(self, key) -> Split:
        """The images, labels and whatever else the split has, at ``key`` (a slice, boolean mask or index array)."""
        def part(value):
            return None if value is None else value[key]

        return Split(self.images[key], self.labels[key], part(self.masks), part(self.has_mask), part(self.paths))


def concatenate_splits(first: Split, second: Split) -> Split:
    def joined(a, b):
        return None if a is None or b is None else np.concatenate([np.asarray(a), np.asarray(b)])

    return Split(concatenate_images(first.images, second.images), np.concatenate([first.labels, second.labels]),
                 joined(first.masks, second.masks), joined(first.has_mask, second.has_mask),
                 joined(first.paths, second.paths))
