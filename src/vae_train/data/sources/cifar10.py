"""CIFAR-10: 60,000 32x32 colour photographs of ten classes, read from the official Python archive.

The data come from ``data.root``; else ``$VAE_TRAIN_DATA/cifar10``; else the archive
``cifar-10-python.tar.gz`` downloaded into ``data.cache_dir`` (md5-verified). A local folder may hold the
archive, the folder ``cifar-10-batches-py/`` extracted from it, or be that folder. The batches are read
straight from the archive, without extracting it to disk.

Each batch is a pickle (protocol 2, written by Python 2, so its keys are bytes) of a dict whose
``b"data"`` is a ``(count, 3072)`` uint8 array, one row per image: the 1024 red pixels, then the green,
then the blue, each a 32x32 image row by row; ``b"labels"`` is a list of class indices. A pickle can
name any function to call while loading, so they are read with an unpickler that builds NumPy arrays
and nothing else.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from vae_train.data import download as downloads
from vae_train.data.arrays import Split
from vae_train.data.sources import DATA_ENV_VAR, ReadContext, SourceImages, register_source
from vae_train.errors import DataError

NAME = "cifar10"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
BATCHES_FOLDER = "cifar-10-batches-py"  # the archive's one folder

TRAIN_BATCHES = tuple(f"data_batch_{number}" for number in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)

IMAGE_SIDE = 32
CHANNELS = 3
VALUES_PER_IMAGE = CHANNELS * IMAGE_SIDE * IMAGE_SIDE

REPLACE_ARCHIVE = (
    "Replace the archive with a fresh copy (if it is in the download cache, delete it and the next run "
    "downloads it again)."
)
REPLACE_EXTRACTED = (
    f"Replace it with the file from the official {ARCHIVE_NAME} (extract the archive again), or pass "
    "data.root=null to download the archive."
)


@dataclass(frozen=True)
class BatchFile:
    """One unpickled batch file, with what its errors say: where it was read and how to repair it."""

    where: str  # its path, or ``archive:member``
    remedy: str
    content: object

    def fail(self, problem: str) -> DataError:
        return DataError(f"{self.where} {problem}. {self.remedy}")


def _encode_latin1(text: str, encoding: str, where: str) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it: a bytes object is stored as its latin-1 text."""
    if encoding not in ("latin1", "latin-1"):
        raise DataError(f"{where} is not a CIFAR-10 batch: it asks to encode text as {encoding!r}, where a batch "
                        "only ever uses latin1.")
    return text.encode("latin1")


# Every global a pickled NumPy array (or a protocol-2 bytes object) needs; anything else a batch asks for
# is refused. NumPy 2 pickles its array constructor as numpy._core, older NumPy (and the published files)
# as numpy.core: both names are the one function, taken from an array's own pickle recipe so that no
# private module is imported.
_ARRAY_RECONSTRUCT = np.zeros(0, dtype=np.uint8).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Loads a CIFAR-10 batch without running code: only NumPy's array pieces and latin-1 encoding
    resolve. (Every way a pickle names a function, GLOBAL, STACK_GLOBAL, INST, OBJ and the extension
    registry, goes through :meth:`find_class`.)"""

    def __init__(self, handle, where: str, remedy: str):
        # encoding="bytes": the published batches were written by Python 2, whose str becomes bytes.
        super().__init__(handle, encoding="bytes")
        self.where = where
        self.remedy = remedy

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return functools.partial(_encode_latin1, where=self.where)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"{self.where} is not a CIFAR-10 batch: it asks to load {module}.{name}, which a batch of "
                f"images never needs, so it was refused without running it. {self.remedy}"
            ) from None


def _unpickle(handle, where: str, remedy: str) -> BatchFile:
    """The batch pickled in ``handle``; ``where`` names the file (or archive member) in errors."""
    try:
        return BatchFile(where, remedy, _BatchUnpickler(handle, where, remedy).load())
    except DataError:
        raise
    except Exception as err:  # a damaged pickle fails with almost any exception type, mid-way through any opcode
        raise DataError(
            f"Cannot read {where} ({type(err).__name__}: {err}): the file is truncated or not a CIFAR-10 "
            f"batch. {remedy}"
        ) from err


def _read_archive(archive: Path) -> dict[str, BatchFile]:
    """Every batch file of the archive, unpickled, read in one pass over the compressed stream (reading
    members by name would decompress the archive from the start again for each)."""
    batches = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if member.isfile() and name in BATCH_FILES:
                    raw = io.BytesIO(tar.extractfile(member).read())
                    batches[name] = _unpickle(raw, f"{archive}:{member.name}", REPLACE_ARCHIVE)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"Cannot read the archive {archive} ({type(err).__name__}: {err}): it is truncated or not a gzip "
            f"tar file. {REPLACE_ARCHIVE}"
        ) from err
    missing = [f"{BATCHES_FOLDER}/{name}" for name in BATCH_FILES if name not in batches]
    if missing:
        raise DataError(
            f"The archive {archive} lacks {', '.join(missing)}: it is incomplete or not the CIFAR-10 Python "
            f"archive. {REPLACE_ARCHIVE}"
        )
    return batches


def _read_folder(folder: Path) -> dict[str, BatchFile]:
    """Every batch file of an extracted ``cifar-10-batches-py`` folder, unpickled."""
    missing = [name for name in BATCH_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"The CIFAR-10 folder {folder} lacks {', '.join(missing)}; it needs {', '.join(BATCH_FILES)}, as "
            f"extracted from {ARCHIVE_NAME}. Extract the archive again, or pass data.root=null to download it."
        )
    batches = {}
    for name in BATCH_FILES:
        path = folder / name
        with open(path, "rb") as handle:
            batches[name] = _unpickle(handle, str(path), REPLACE_EXTRACTED)
    return batches


def _read_local(location: Path, where_from: str, config) -> dict[str, BatchFile]:
    """The batches of a local copy: the archive itself, a folder holding the archive or its extracted
    folder, or the extracted folder. ``where_from`` says how the location was chosen, for errors."""
    # The way to download instead: with $VAE_TRAIN_DATA set, data.root=null alone still reads from it.
    undo = f"unset ${DATA_ENV_VAR}" if where_from else "pass data.root=null"
    if location.is_file():
        archive = location
    elif location.is_dir():
        # The extracted batches have no published md5 sums: the format checks are what guards them.
        if any((location / name).exists() for name in BATCH_FILES):
            return _read_folder(location)
        if (location / BATCHES_FOLDER).is_dir():
            return _read_folder(location / BATCHES_FOLDER)
        archive = location / ARCHIVE_NAME
        if not archive.is_file():
            raise DataError(
                f"The data folder {location}{where_from} holds no CIFAR-10 data: it needs {ARCHIVE_NAME}, or "
                f"the folder {BATCHES_FOLDER}/ extracted from it, or to be that folder ({', '.join(BATCH_FILES)}). "
                f"Put one of these there, or {undo} to download the archive into {config.cache_dir}."
            )
    else:
        raise DataError(
            f"The data folder {location}{where_from} does not exist. Pass data.root=<folder holding "
            f"{ARCHIVE_NAME} or {BATCHES_FOLDER}/>, or {undo} to download CIFAR-10 into {config.cache_dir}."
        )
    if config.verify_checksums:
        # ARCHIVE_MD5 read at call time, so that tests can substitute their own archive's sum.
        downloads.verify_md5(
            archive, ARCHIVE_MD5,
            f"The archive is corrupt or not the published {ARCHIVE_NAME}: replace it, or pass "
            "data.verify_checksums=false to use a modified copy on purpose.",
        )
    return _read_archive(archive)


def _field(batch: BatchFile, mapping: dict, key: str):
    """``mapping[key]`` under the bytes key the published files use, or the str key of a Python 3 copy."""
    for candidate in (key.encode(), key):
        if candidate in mapping:
            return mapping[candidate]
    raise batch.fail(f"is not a CIFAR-10 batch: it has no {key!r} entry")


def _class_names(meta: BatchFile) -> tuple[str, ...]:
    if not isinstance(meta.content, dict):
        raise meta.fail(f"is not CIFAR-10's batches.meta: it holds a {type(meta.content).__name__}, not a dict")
    names = _field(meta, meta.content, "label_names")
    if not isinstance(names, list | tuple) or not names or not all(isinstance(n, bytes | str) for n in names):
        raise meta.fail(f"has label_names {names!r}, where a list of class names belongs")
    return tuple(name.decode("utf-8") if isinstance(name, bytes) else name for name in names)


def _batch_split(batch: BatchFile, class_count: int) -> Split:
    """A batch's images, ``(count, 32, 32, 3)`` uint8 (channels last), and its labels as int64."""
    if not isinstance(batch.content, dict):
        raise batch.fail(f"is not a CIFAR-10 batch: it holds a {type(batch.content).__name__}, not a dict")
    data = _field(batch, batch.content, "data")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == VALUES_PER_IMAGE):
        raise batch.fail(
            f"holds data of shape {getattr(data, 'shape', None)} ({getattr(data, 'dtype', type(data).__name__)}), "
            f"not (count, {VALUES_PER_IMAGE}) uint8, one row of {CHANNELS}x{IMAGE_SIDE}x{IMAGE_SIDE} pixels per "
            "image: the file is corrupt or not a CIFAR-10 batch"
        )
    try:
        labels = np.asarray(_field(batch, batch.content, "labels"), dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise batch.fail(f"has labels that are not class indices ({err})") from err
    if labels.shape != (len(data),):
        raise batch.fail(f"has {len(data)} images but labels of shape {labels.shape}, where one label per image "
                         "belongs: the file is corrupt")
    if labels.size and (labels.min() < 0 or labels.max() >= class_count):
        raise batch.fail(f"has labels from {labels.min()} to {labels.max()}, but batches.meta names {class_count} "
                         f"classes (labels 0 to {class_count - 1}): the files are corrupt or mixed up")
    # Each row is channel-first (all red, then green, then blue); the models take channels last.
    images = data.reshape(-1, CHANNELS, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), labels)


@register_source(NAME)
def read_cifar10(config, context: ReadContext) -> SourceImages:
    """CIFAR-10's 50,000 training images (``data_batch_1`` to ``_5`` in order) and 10,000 test images."""
    if config.root is not None:
        batches = _read_local(Path(config.root).expanduser(), "", config)
    elif os.environ.get(DATA_ENV_VAR):
        folder = Path(os.environ[DATA_ENV_VAR]).expanduser() / NAME
        batches = _read_local(folder, f" (${DATA_ENV_VAR}/{NAME})", config)
    else:
        # The download is always verified, whatever data.verify_checksums says: a bad one is a network
        # fault, never a modified data set on purpose.
        archive = downloads.download(ARCHIVE_NAME, MIRRORS, ARCHIVE_MD5, config.cache_dir, NAME)
        batches = _read_archive(archive)

    class_names = _class_names(batches[META_FILE])
    parts = [_batch_split(batches[name], len(class_names)) for name in TRAIN_BATCHES]
    train = Split(np.concatenate([part.images for part in parts]), np.concatenate([part.labels for part in parts]))
    test = _batch_split(batches[TEST_BATCH], len(class_names))
    return SourceImages(train, test, class_names)
