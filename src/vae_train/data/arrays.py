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

    def __post_init__(self) -> None:
        assert len(self.images) == len(self.labels), (len(self.images), len(self.labels))

    def select(self, key) -> Split:
        """The images and labels at ``key`` (a slice, boolean mask or index array)."""
        return Split(self.images[key], self.labels[key])


def concatenate_splits(first: Split, second: Split) -> Split:
    return Split(concatenate_images(first.images, second.images), np.concatenate([first.labels, second.labels]))
