"""CIFAR-10 from tiny files written here in the published format, and the shared checked download.

The files follow the format's description, not the reader: each batch is a protocol-2 pickle of a dict
with bytes keys, whose ``b"data"`` rows hold the 1024 red, then 1024 green, then 1024 blue values of a
32x32 image, row by row. No test touches the network: mirrors are ``file://`` URLs.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vae_train.data import download as downloads
from vae_train.data.sources import DATA_ENV_VAR, ReadContext, cifar10, read_source
from vae_train.errors import DataError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGES_PER_TRAIN_BATCH = 3
TEST_IMAGES = 4
SIDE = 32
PLANE = SIDE * SIDE  # values per colour plane of a row


def value_index(channel: int, row: int, col: int) -> int:
    """Where pixel (row, col) of ``channel`` sits in a batch row, as the format describes it."""
    return channel * PLANE + row * SIDE + col


def batch_contents() -> dict[str, tuple[np.ndarray, list[int]]]:
    """Rows and labels of every batch: random pixels, labels that differ per batch so order shows."""
    rng = np.random.default_rng(0)
    contents = {}
    for number, name in enumerate(cifar10.TRAIN_BATCHES):
        rows = rng.integers(0, 256, size=(IMAGES_PER_TRAIN_BATCH, 3 * PLANE), dtype=np.uint8)
        contents[name] = (rows, [(2 * number + i) % 10 for i in range(IMAGES_PER_TRAIN_BATCH)])
    test_rows = rng.integers(0, 256, size=(TEST_IMAGES, 3 * PLANE), dtype=np.uint8)
    contents["test_batch"] = (test_rows, [9, 0, 5, 1])
    return contents


def batch_pickle(rows, labels, replace: dict | None = None) -> bytes:
    """One batch file, as the published ones: protocol 2, bytes keys, labels a list of ints."""
    batch = {b"batch_label": b"a tiny batch", b"labels": list(labels), b"data": rows,
             b"filenames": [f"image_{i}.png".encode() for i in range(len(rows))]}
    batch.update(replace or {})
    return pickle.dumps(batch, protocol=2)


def meta_pickle() -> bytes:
    return pickle.dumps({b"num_cases_per_batch": 10000, b"label_names": [name.encode() for name in CLASS_NAMES],
                         b"num_vis": 3 * PLANE}, protocol=2)


def file_contents(contents=None) -> dict[str, bytes]:
    """Every file of ``cifar-10-batches-py``, by name."""
    contents = batch_contents() if contents is None else contents
    files = {name: batch_pickle(rows, labels) for name, (rows, labels) in contents.items()}
    files["batches.meta"] = meta_pickle()
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    return folder


def write_archive(path: Path, files: dict[str, bytes]) -> Path:
    """A gzip tar holding ``cifar-10-batches-py/<name>``, as the published archive does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            member = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            member.size = len(raw)
            tar.addfile(member, io.BytesIO(raw))
    return path


def settings(root, verify_checksums: bool = True, cache_dir=None) -> SimpleNamespace:
    return SimpleNamespace(name="cifar10", root=None if root is None else str(root),
                           cache_dir=str(cache_dir or "/nonexistent/cache"), verify_checksums=verify_checksums)


def read(root, **options):
    return read_source(settings(root, **options), ReadContext())


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """The user's own $VAE_TRAIN_DATA must not decide where these tests read from."""
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)


def expected_images(rows: np.ndarray) -> np.ndarray:
    """Channels-last images, pixel by pixel from the format's index formula (not a reshape)."""
    row, col, channel = np.indices((SIDE, SIDE, 3))
    return rows[:, value_index(channel, row, col)]


def test_folder_gives_train_batches_in_order_the_test_batch_and_class_names(tmp_path):
    contents = batch_contents()
    write_folder(tmp_path / "cifar-10-batches-py", file_contents(contents))
    images = read(tmp_path)

    train_rows = np.concatenate([contents[name][0] for name in cifar10.TRAIN_BATCHES])
    train_labels = np.concatenate([contents[name][1] for name in cifar10.TRAIN_BATCHES])
    assert images.train.images.shape == (5 * IMAGES_PER_TRAIN_BATCH, SIDE, SIDE, 3)
    assert images.train.images.dtype == np.uint8
    assert images.train.labels.dtype == np.int64
    np.testing.assert_array_equal(images.train.images, expected_images(train_rows))
    np.testing.assert_array_equal(images.train.labels, train_labels)

    test_rows, test_labels = contents["test_batch"]
    assert images.test.images.shape == (TEST_IMAGES, SIDE, SIDE, 3)
    np.testing.assert_array_equal(images.test.images, expected_images(test_rows))
    np.testing.assert_array_equal(images.test.labels, test_labels)
    assert images.class_names == CLASS_NAMES
    assert images.labelled


def test_pixels_land_channels_last(tmp_path):
    red = np.zeros(3 * PLANE, np.uint8)
    red[:PLANE] = 255  # the whole red plane
    one_pixel = np.zeros(3 * PLANE, np.uint8)
    one_pixel[value_index(channel=1, row=5, col=7)] = 200  # green, row 5, column 7
    contents = batch_contents()
    contents["test_batch"] = (np.stack([red, one_pixel]), [0, 1])
    write_folder(tmp_path, file_contents(contents))

    red_image, pixel_image = read(tmp_path).test.images
    assert (red_image[:, :, 0] == 255).all() and (red_image[:, :, 1:] == 0).all()
    assert pixel_image[5, 7, 1] == 200
    assert np.count_nonzero(pixel_image) == 1  # not at (7, 5), not in another channel


def test_archive_extracted_folder_and_env_var_give_identical_arrays(tmp_path, monkeypatch):
    files = file_contents()
    archive = write_archive(tmp_path / "holds_archive" / cifar10.ARCHIVE_NAME, files)
    holds_folder = tmp_path / "holds_folder"
    write_folder(holds_folder / "cifar-10-batches-py", files)
    write_archive(tmp_path / "env" / "cifar10" / cifar10.ARCHIVE_NAME, files)
    options = {"verify_checksums": False}  # these archives are not the published one

    reference = read(holds_folder, **options)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "env"))
    for root in (archive.parent, archive, holds_folder / "cifar-10-batches-py", None):
        images = read(root, **options)
        for split in ("train", "test"):
            np.testing.assert_array_equal(getattr(images, split).images, getattr(reference, split).images)
            np.testing.assert_array_equal(getattr(images, split).labels, getattr(reference, split).labels)
        assert images.class_names == reference.class_names


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2 wrote the published batches: text and bytes alike as byte strings (BINSTRING),
    NumPy's array constructor under its old module name numpy.core.multiarray."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_byte_string(self, text):
        raw = text.encode("latin1") if isinstance(text, str) else text
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(raw)

    dispatch[bytes] = save_byte_string
    dispatch[str] = save_byte_string


def python2_pickle(content) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(content)
    # GLOBAL names its module as newline-ended text, so renaming the module keeps the pickle valid.
    return buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def test_python2_pickles_like_the_published_files_read_the_same(tmp_path):
    contents = batch_contents()
    files = {name: python2_pickle({b"labels": labels, b"data": rows}) for name, (rows, labels) in contents.items()}
    files["batches.meta"] = python2_pickle({b"label_names": [name.encode() for name in CLASS_NAMES]})
    assert b"numpy.core.multiarray" in files["test_batch"] and b"_codecs" not in files["test_batch"]
    from_python2 = read(write_folder(tmp_path / "python2", files))
    reference = read(write_folder(tmp_path / "python3", file_contents(contents)))
    np.testing.assert_array_equal(from_python2.train.images, reference.train.images)
    np.testing.assert_array_equal(from_python2.test.labels, reference.test.labels)
    assert from_python2.class_names == CLASS_NAMES


def test_root_takes_precedence_over_the_env_var(tmp_path, monkeypatch):
    write_folder(tmp_path / "mine", file_contents())
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "nowhere"))
    assert read(tmp_path / "mine").class_names == CLASS_NAMES


def test_no_folder_downloads_the_official_archive_into_the_cache(tmp_path, monkeypatch):
    archive = write_archive(tmp_path / "fetched.tar.gz", file_contents())
    calls = []

    def fake_download(filename, mirrors, md5, cache_dir, subdir):
        calls.append((filename, mirrors, md5, cache_dir, subdir))
        return archive

    monkeypatch.setattr(downloads, "download", fake_download)
    images = read(None, cache_dir=tmp_path / "cache")
    assert calls == [("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/",),
                      "c58f30108f718f92721af3b95e74349a", str(tmp_path / "cache"), "cifar10")]
    assert images.train.images.shape[0] == 5 * IMAGES_PER_TRAIN_BATCH


def test_archive_checksum_is_verified_unless_turned_off(tmp_path, monkeypatch):
    archive = write_archive(tmp_path / cifar10.ARCHIVE_NAME, file_contents())
    with pytest.raises(DataError, match="Checksum mismatch") as caught:
        read(tmp_path)
    assert str(archive) in str(caught.value) and "data.verify_checksums=false" in str(caught.value)

    assert read(tmp_path, verify_checksums=False).class_names == CLASS_NAMES
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    assert read(tmp_path).class_names == CLASS_NAMES


class RunsACommand:
    """What a malicious pickle does: name a function for the loader to call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


@pytest.mark.parametrize("in_archive", [False, True])
@pytest.mark.parametrize("payload", ["os.system", "eval"])
def test_a_pickle_that_loads_code_is_refused_without_running_it(tmp_path, payload, in_archive):
    marker = tmp_path / "was_run"
    files = file_contents()
    rows, labels = batch_contents()["data_batch_2"]
    evil = RunsACommand(marker) if payload == "os.system" else Evaluates()
    files["data_batch_2"] = batch_pickle(rows, labels, {b"labels": evil})
    if in_archive:
        write_archive(tmp_path / "data" / cifar10.ARCHIVE_NAME, files)
    else:
        write_folder(tmp_path / "data", files)

    with pytest.raises(DataError, match="is not a CIFAR-10 batch: it asks to load") as caught:
        read(tmp_path / "data", verify_checksums=False)
    message = str(caught.value)
    assert "data_batch_2" in message
    # Protocol 2 records Python 2's module names: posix.system, __builtin__.eval.
    assert (".system" if payload == "os.system" else "__builtin__.eval") in message
    assert not marker.exists()


def test_bytes_may_only_be_encoded_as_latin1(tmp_path):
    class Rot13Bytes:
        def __reduce__(self):
            import _codecs

            return _codecs.encode, ("uryyb", "rot13")

    files = file_contents()
    files["test_batch"] = pickle.dumps({b"data": Rot13Bytes()}, protocol=2)
    write_folder(tmp_path, files)
    with pytest.raises(DataError, match=r"test_batch is not a CIFAR-10 batch: .*rot13"):
        read(tmp_path)


def truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def files_with(name: str, raw: bytes | None) -> dict[str, bytes]:
    """The tiny data set's files with ``name`` replaced by ``raw``, or left out when ``raw`` is None."""
    files = file_contents()
    if raw is None:
        del files[name]
    else:
        files[name] = raw
    return files


def damaged_folder(tmp_path: Path, name: str, raw: bytes | None) -> Path:
    return write_folder(tmp_path / "batches", files_with(name, raw))


def damaged_archive(tmp_path: Path, name: str | None = None, raw: bytes | None = None) -> Path:
    """A folder holding the archive, its member ``name`` replaced by ``raw`` (or left out)."""
    files = file_contents() if name is None else files_with(name, raw)
    return write_archive(tmp_path / "holds" / cifar10.ARCHIVE_NAME, files).parent


def truncated_archive(tmp_path: Path) -> Path:
    folder = damaged_archive(tmp_path)
    archive = folder / cifar10.ARCHIVE_NAME
    archive.write_bytes(truncated(archive.read_bytes()))
    return folder


def html_for_archive(tmp_path: Path) -> Path:
    """What a captive portal or a moved page leaves under the archive's name."""
    (tmp_path / cifar10.ARCHIVE_NAME).write_bytes(b"<html>moved</html>")
    return tmp_path


def rows_of(name: str) -> np.ndarray:
    return batch_contents()[name][0]


DAMAGES = {
    # case: (make the data root, words the message must contain)
    "missing folder": (lambda tmp: tmp / "absent", ["absent", "does not exist", "data.root=null"]),
    "folder without CIFAR-10": (lambda tmp: tmp, ["holds no CIFAR-10 data", "cifar-10-python.tar.gz"]),
    "missing batch file": (lambda tmp: damaged_folder(tmp, "data_batch_3", None), ["lacks data_batch_3"]),
    "missing meta file": (lambda tmp: damaged_folder(tmp, "batches.meta", None), ["lacks batches.meta"]),
    "truncated pickle": (lambda tmp: damaged_folder(tmp, "test_batch", truncated(file_contents()["test_batch"])),
                         ["test_batch", "truncated"]),
    "not a pickle": (lambda tmp: damaged_folder(tmp, "data_batch_1", b"<html>not found</html>"),
                     ["data_batch_1", "not a CIFAR-10 batch"]),
    "not a dict": (lambda tmp: damaged_folder(tmp, "data_batch_1", pickle.dumps([1, 2], protocol=2)),
                   ["data_batch_1", "list, not a dict"]),
    "no data key": (lambda tmp: damaged_folder(tmp, "data_batch_4", pickle.dumps({b"labels": [0]}, protocol=2)),
                    ["data_batch_4", "no 'data' entry"]),
    "wrong row length": (lambda tmp: damaged_folder(
        tmp, "data_batch_5", batch_pickle(np.zeros((3, 1024), np.uint8), [0, 1, 2])), ["data_batch_5", "(3, 1024)"]),
    "one-dimensional data": (lambda tmp: damaged_folder(
        tmp, "data_batch_5", batch_pickle(np.zeros(3072, np.uint8), [0])), ["data_batch_5", "(3072,)"]),
    "fewer labels than images": (lambda tmp: damaged_folder(
        tmp, "data_batch_2", batch_pickle(rows_of("data_batch_2"), [0, 1])), ["data_batch_2", "3 images"]),
    "label beyond the classes": (lambda tmp: damaged_folder(
        tmp, "test_batch", batch_pickle(rows_of("test_batch"), [0, 1, 2, 10])), ["test_batch", "10 classes"]),
    "truncated archive": (truncated_archive, ["Cannot read the archive", "cifar-10-python.tar.gz", "truncated"]),
    "archive not gzip": (html_for_archive, ["Cannot read the archive", "not a gzip tar"]),
    "archive lacking a batch": (lambda tmp: damaged_archive(tmp, "test_batch", None),
                                ["lacks cifar-10-batches-py/test_batch"]),
    "truncated pickle in archive": (lambda tmp: damaged_archive(
        tmp, "data_batch_1", truncated(file_contents()["data_batch_1"])),
        ["cifar-10-python.tar.gz:cifar-10-batches-py/data_batch_1", "truncated"]),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_damaged_input_is_a_data_error_naming_the_file(tmp_path, case):
    make_root, words = DAMAGES[case]
    root = make_root(tmp_path)
    with pytest.raises(DataError) as caught:
        read(root, verify_checksums=False)
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    assert "\n" not in message


def test_a_missing_env_var_folder_says_to_unset_it(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(DataError) as caught:
        read(None)
    message = str(caught.value)
    assert f"{tmp_path / 'cifar10'} (${DATA_ENV_VAR}/cifar10) does not exist" in message
    assert f"unset ${DATA_ENV_VAR}" in message


# The shared download, through Keras's get_file and file:// mirrors.


def test_download_lists_every_failed_mirror_and_how_to_work_offline(tmp_path):
    mirrors = ("file:///nonexistent/first/", "file:///nonexistent/second/")
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as caught:
        downloads.download("archive.tar.gz", mirrors, "0" * 32, cache, "cifar10")
    message = str(caught.value)
    for url in ("file:///nonexistent/first/archive.tar.gz", "file:///nonexistent/second/archive.tar.gz"):
        assert url in message
    assert "data.root=<folder>" in message and f"${DATA_ENV_VAR}" in message and "cifar10/" in message
    assert cache.is_dir()  # created first, so get_file does not fall back to /tmp/.keras


def test_download_fetches_from_a_working_mirror_into_the_cache_and_reuses_it(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(b"published bytes")
    md5 = hashlib.md5(b"published bytes").hexdigest()
    cache = tmp_path / "cache"

    path = downloads.download("file.bin", ("file:///nonexistent/", mirror.as_uri() + "/"), md5, cache, "set")
    assert path == cache / "set" / "file.bin"
    assert path.read_bytes() == b"published bytes"
    # Cached and verified: no mirror is needed again.
    assert downloads.download("file.bin", ("file:///nonexistent/",), md5, cache, "set") == path


def test_download_refuses_a_file_with_the_wrong_md5(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "file.bin").write_bytes(b"tampered bytes")
    with pytest.raises(DataError, match="file.bin"):
        downloads.download("file.bin", (mirror.as_uri() + "/",), "0" * 32, tmp_path / "cache", "set")


def test_verify_md5_names_the_file_and_the_remedy(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")
    assert downloads.md5sum(path) == hashlib.md5(b"abc").hexdigest()
    downloads.verify_md5(path, hashlib.md5(b"abc").hexdigest(), "unused")
    with pytest.raises(DataError) as caught:
        downloads.verify_md5(path, "f" * 32, "Replace it.")
    assert str(caught.value) == (
        f"Checksum mismatch for {path}: md5 {hashlib.md5(b'abc').hexdigest()}, expected {'f' * 32}. Replace it."
    )
