"""A folder's images decoded once: a uint8 ``.npy`` file that later runs memory-map.

Decoding thousands of JPEGs costs minutes; reading them back from one array costs nothing, and a
read-only memory map lets a set larger than memory train and lets parallel jobs share its pages. The
cache's name is a sha256 of everything that decides its pixels: :data:`CACHE_FORMAT_VERSION`, the
folder's resolved path, each file's relative path, size and modification time, and the requested size
and colour. So a changed, added or removed file, or another ``data.image_size``, is another cache.

Its rows are the scanned files in order, one each; a file that did not decode (with
``data.skip_unreadable=true``) keeps a black row, and the JSON sidecar names it. The array is written
to a partial file and renamed into place, then the sidecar likewise: a sidecar means a whole array.
An exclusive lock per cache makes the second of two sweep jobs wait for the first one's decode and
then read it, instead of decoding it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import vae_train
from vae_train.data.sources.folder import decode
from vae_train.data.sources.folder.scan import FolderScan
from vae_train.errors import DataError
from vae_train.files import read_json_object, write_atomically

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; parallel jobs may then both decode, and the last rename wins
    fcntl = None

log = logging.getLogger(__name__)

# Raise it whenever the array's layout or the meaning of its pixels changes: every cache is then
# another file, and one of another version found under a name is an error rather than misread.
CACHE_FORMAT_VERSION = 1
# Files per round of decoding: bounds the pending futures, and sets how often the progress bar moves.
FILES_PER_ROUND = 256
# Skipped files named in the log line; the sidecar names them all.
NAMED_SKIPS = 5


@dataclass(frozen=True)
class DecodeOptions:
    skip_unreadable: bool = False
    workers: int | None = None  # threads; None: one per core
    progress: bool = False


@dataclass(frozen=True)
class DecodedFolder:
    images: np.ndarray  # (files, height, width, channels) uint8, read-only memory-mapped; one row per file
    skipped: dict[str, str]  # why each file (relative path) that did not decode did not; their rows are black
    settings: decode.DecodeSettings

    def readable_rows(self, scan: FolderScan) -> np.ndarray:
        return np.array([row for row, file in enumerate(scan.files) if file.path not in self.skipped], dtype=np.int64)


@dataclass(frozen=True)
class CacheFiles:
    array: Path
    sidecar: Path
    lock: Path

    @classmethod
    def named(cls, cache_dir: str | Path, stem: str) -> CacheFiles:
        folder = Path(cache_dir).expanduser() / "folders"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cache_write_error(folder, error) from error
        return cls(folder / f"{stem}.npy", folder / f"{stem}.json", folder / f"{stem}.lock")

    def complete(self) -> bool:
        return self.array.is_file() and self.sidecar.is_file()


@dataclass(frozen=True)
class Unreadable:
    path: str  # relative to the folder
    reason: str


@dataclass(frozen=True)
class DecodeFailure:
    reason: str


def cache_stem(scan: FolderScan, request: decode.DecodeRequest) -> str:
    """The folder's name, for a person listing the cache, and the sha256 of what decides the pixels."""
    digest = hashlib.sha256()
    settings = {"format": CACHE_FORMAT_VERSION, "root": str(scan.root), "image_size": request.image_size,
                "resize": request.resize, "channels": request.channels}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for file in scan.files:
        digest.update(f"\n{file.path}\0{file.size}\0{file.mtime_ns}".encode())
    readable_name = re.sub(r"[^A-Za-z0-9_-]+", "_", scan.root.name)[:40] or "root"
    return f"{readable_name}-{digest.hexdigest()[:32]}"


def decoded_images(scan: FolderScan, request: decode.DecodeRequest, options: DecodeOptions,
                   cache_dir: str | Path) -> DecodedFolder:
    """The scanned folder's images, from its cache, decoding them into it first when it has none."""
    files = CacheFiles.named(cache_dir, cache_stem(scan, request))
    if not files.complete():
        try:
            with exclusive_lock(files.lock, scan):
                if not files.complete():  # another job may have decoded it while this one waited
                    decode_into_cache(scan, request, options, files)
        except OSError as error:  # not a file's decoding, which attempt() catches: the cache's own files
            raise cache_write_error(files.array.parent, error) from error
    decoded = open_cache(files, scan)
    if decoded.skipped:
        report_skipped(scan, decoded.skipped, options)
    return decoded


@contextmanager
def exclusive_lock(path: Path, scan: FolderScan) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Another job is decoding %s into the cache; waiting for it.", scan.root)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it, so it is set back at once
    os.umask(mask)
    return mask


def decode_into_cache(scan: FolderScan, request: decode.DecodeRequest, options: DecodeOptions,
                      files: CacheFiles) -> None:
    log.info("Decoding the %d images of %s into the cache %s (once).", len(scan.files), scan.root, files.array)
    unreadable: list[Unreadable] = []
    settings = settings_from_headers(scan, request, options, unreadable) if request.needs_headers else \
        decode.DecodeSettings(*request.image_size, request.channels, request.resize)
    handle, partial_name = tempfile.mkstemp(dir=files.array.parent, prefix=f".{files.array.stem}.",
                                            suffix=".npy.partial")
    os.close(handle)
    partial = Path(partial_name)
    # mkstemp's file is the owner's alone (0600); a cache others' jobs share gets a plain file's mode.
    partial.chmod(0o666 & ~_umask())
    try:
        write_array(scan, settings, options, partial, unreadable)
        os.replace(partial, files.array)
    finally:
        partial.unlink(missing_ok=True)
    sidecar = {
        "format_version": CACHE_FORMAT_VERSION,
        "vae_train_version": vae_train.__version__,
        "root": str(scan.root),
        "count": len(scan.files),
        "image_size": [settings.height, settings.width],
        "channels": settings.channels,
        "resize": settings.resize,
        "skipped": [{"path": skip.path, "reason": skip.reason} for skip in unreadable],
    }
    write_atomically(files.sidecar, json.dumps(sidecar, indent=1))


def settings_from_headers(scan: FolderScan, request: decode.DecodeRequest, options: DecodeOptions,
                          unreadable: list[Unreadable]) -> decode.DecodeSettings:
    """The request's nulls filled in from the headers of the files; those whose header does not read
    are added to ``unreadable`` (or stop the run, unless skipping them)."""
    headers = {}
    results = parallel_map(lambda file: attempt(decode.read_header, scan.path_of(file)), scan.files, options)
    for file, header in zip(scan.files, results, strict=True):
        if isinstance(header, DecodeFailure):
            note_unreadable(scan, file.path, header.reason, options, unreadable)
        else:
            headers[file.path] = header
    if not headers:
        raise no_readable_image(scan)
    return decode.choose_settings(request, headers, f"{scan.root} ({scan.key})")


def write_array(scan: FolderScan, settings: decode.DecodeSettings, options: DecodeOptions, path: Path,
                unreadable: list[Unreadable]) -> None:
    """A new ``.npy`` at ``path`` holding every file decoded, flushed and closed."""
    shape = (len(scan.files), settings.height, settings.width, settings.channels)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    decode_rows(scan, settings, options, images, unreadable)
    images.flush()
    del images  # unmapped before the rename, so the published file is whole


def decode_rows(scan: FolderScan, settings: decode.DecodeSettings, options: DecodeOptions, images: np.ndarray,
                unreadable: list[Unreadable]) -> None:
    """Each file decoded straight into its row of ``images`` (a memory map), so memory holds a round of
    images, never the set; a file in ``unreadable`` already, or that does not decode, keeps a black row."""
    already_unreadable = {skip.path for skip in unreadable}

    def decode_row(row: int) -> DecodeFailure | None:
        file = scan.files[row]
        if file.path in already_unreadable:
            return None
        pixels = attempt(decode.decode_image, scan.path_of(file), settings)
        if isinstance(pixels, DecodeFailure):
            return pixels
        images[row] = pixels
        return None

    results = parallel_map(decode_row, range(len(scan.files)), options, progress_title="Decoding")
    for file, result in zip(scan.files, results, strict=True):
        if result is not None:
            note_unreadable(scan, file.path, result.reason, options, unreadable)
    if len(unreadable) == len(scan.files):
        raise no_readable_image(scan)


def attempt(function: Callable, path: Path, *args):
    """``function(path, *args)``, or a :class:`DecodeFailure` saying why the file does not decode."""
    try:
        return function(path, *args)
    except decode.UNREADABLE_ERRORS as error:
        return DecodeFailure(f"{type(error).__name__}: {error}")


def note_unreadable(scan: FolderScan, path: str, reason: str, options: DecodeOptions,
                    unreadable: list[Unreadable]) -> None:
    if not options.skip_unreadable:
        raise unreadable_error(scan, path, reason)
    unreadable.append(Unreadable(path, reason))


def unreadable_error(scan: FolderScan, path: str, reason: str) -> DataError:
    return DataError(f"The image {scan.root / path} ({scan.key}) does not decode ({reason}): it is truncated, "
                     "corrupt or not the format its name says. Replace or delete it, or set "
                     "data.skip_unreadable=true to leave such files out (their count is logged).")


def no_readable_image(scan: FolderScan) -> DataError:
    return DataError(f"None of the {len(scan.files)} image files of {scan.root} ({scan.key}) decodes: they are all "
                     f"truncated, corrupt or not images. Point {scan.key} at a folder of readable images.")


def parallel_map(function: Callable, items, options: DecodeOptions, progress_title: str | None = None) -> Iterator:
    """``function`` of each item, in order, on ``options.workers`` threads (Pillow releases the GIL
    while decoding), a round of :data:`FILES_PER_ROUND` files at a time."""
    items = list(items)
    bar = progress_bar(len(items)) if options.progress and progress_title else None
    with ThreadPoolExecutor(options.workers or os.cpu_count()) as executor:
        for start in range(0, len(items), FILES_PER_ROUND):
            yield from executor.map(function, items[start:start + FILES_PER_ROUND])
            if bar is not None:
                bar.update(min(start + FILES_PER_ROUND, len(items)))


def progress_bar(total: int):
    # Imported here: Keras brings TensorFlow, which a cache hit, or a test, need not wait for.
    from keras.utils import Progbar

    return Progbar(total, unit_name="image")


def open_cache(files: CacheFiles, scan: FolderScan) -> DecodedFolder:
    sidecar = read_json_object(files.sidecar)
    if sidecar is None:
        raise corrupt_cache(files, "its sidecar is not a JSON object")
    if sidecar.get("format_version") != CACHE_FORMAT_VERSION:
        raise DataError(
            f"The decoded-image cache {files.array} is of format version {sidecar.get('format_version')!r} "
            f"(its sidecar {files.sidecar}) but this vae-train {vae_train.__version__} reads version "
            f"{CACHE_FORMAT_VERSION}. Delete {files.array} and {files.sidecar} to decode the images again, or "
            "set data.cache_dir to another folder."
        )
    try:
        images = np.load(files.array, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise corrupt_cache(files, f"{type(error).__name__}: {error}") from error
    whole = images.dtype == np.uint8 and images.ndim == 4 and len(images) == len(scan.files) == sidecar.get("count")
    if not whole:
        raise corrupt_cache(files, f"it holds a {images.dtype} array of shape {images.shape}, expected "
                                   f"{len(scan.files)} uint8 images")
    settings = decode.DecodeSettings(images.shape[1], images.shape[2], images.shape[3], str(sidecar.get("resize")))
    skipped = {str(skip.get("path")): str(skip.get("reason")) for skip in sidecar.get("skipped", [])}
    return DecodedFolder(images, skipped, settings)


def cache_write_error(folder: Path, error: OSError) -> DataError:
    return DataError(f"Cannot write the decoded-image cache in {folder} ({type(error).__name__}: {error}). "
                     "data.cache_dir must be a writable folder with room for the decoded images (images x height x "
                     "width x channels bytes): free space there, or set data.cache_dir to another folder.")


def corrupt_cache(files: CacheFiles, reason: str) -> DataError:
    return DataError(f"The decoded-image cache {files.array} is damaged ({reason}), perhaps by a full disk or "
                     f"a copy cut short. Delete {files.array} and {files.sidecar} to decode the images again, "
                     "or set data.cache_dir to another folder.")


def report_skipped(scan: FolderScan, skipped: dict[str, str], options: DecodeOptions) -> None:
    """A cache made with data.skip_unreadable=true holds black rows for the files it skipped: name them
    in one line, or stop when skipping is off now, as decoding them would have."""
    names = sorted(skipped)
    if not options.skip_unreadable:
        raise unreadable_error(scan, names[0], skipped[names[0]])
    shown = ", ".join(names[:NAMED_SKIPS]) + (", ..." if len(names) > NAMED_SKIPS else "")
    log.warning("Skipped %d of the %d images of %s that do not decode (data.skip_unreadable=true): %s.",
                len(names), len(scan.files), scan.root, shown)
