"""IDX reading, locating and downloading dataset files, and the tf.data pipelines."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import logging
import shutil
import struct
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import SPLIT_FILES, make_idx_folder, synthetic_digits, tiny_data_config, write_idx
from vae_train.config import Binarize, PublishedDataConfig
from vae_train.data.download import md5sum
from vae_train.data.idx import read_images, read_labels
from vae_train.data.pipeline import load_dataset
from vae_train.data.sources import mnist as sources
from vae_train.errors import ConfigError, DataError

# --- IDX files ---------------------------------------------------------------------------------


def test_idx_images_and_labels_round_trip(tmp_path):
    images, labels = synthetic_digits(37, seed=3)
    write_idx(tmp_path / "images.gz", images)
    write_idx(tmp_path / "labels.gz", labels)

    read_back_images = read_images(tmp_path / "images.gz")
    read_back_labels = read_labels(tmp_path / "labels.gz")

    assert read_back_images.shape == (37, 28, 28)
    assert read_back_labels.shape == (37,)
    assert read_back_images.dtype == np.uint8
    assert read_back_labels.dtype == np.uint8
    np.testing.assert_array_equal(read_back_images, images)
    np.testing.assert_array_equal(read_back_labels, labels)


def test_idx_reads_an_empty_file(tmp_path):
    write_idx(tmp_path / "images.gz", np.zeros((0, 28, 28), np.uint8))

    assert read_images(tmp_path / "images.gz").shape == (0, 28, 28)


def _gzip_bytes(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(data)
    return path


def _missing(path: Path) -> Path:
    return path


def _truncated_gzip(path: Path) -> Path:
    images, _ = synthetic_digits(20, seed=1)
    write_idx(path, images)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_gzip(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    return path


def _label_magic_on_images(path: Path) -> Path:
    write_idx(path, synthetic_digits(5, seed=1)[0], magic=0x00000801)
    return path


def _images_of_32_pixels(path: Path) -> Path:
    write_idx(path, np.zeros((4, 32, 32), np.uint8))
    return path


def _payload_shorter_than_header(path: Path) -> Path:
    images, _ = synthetic_digits(5, seed=1)
    return _gzip_bytes(path, struct.pack(">4I", 0x00000803, 10, 28, 28) + images.tobytes())


def _payload_longer_than_header(path: Path) -> Path:
    images, _ = synthetic_digits(5, seed=1)
    return _gzip_bytes(path, struct.pack(">4I", 0x00000803, 4, 28, 28) + images.tobytes())


def _shorter_than_a_header(path: Path) -> Path:
    return _gzip_bytes(path, b"\x00\x00\x08")


@pytest.mark.parametrize(
    "damage",
    [_missing, _truncated_gzip, _not_gzip, _label_magic_on_images,
     _payload_shorter_than_header, _payload_longer_than_header, _shorter_than_a_header],
)
def test_bad_image_file_raises_data_error_naming_the_file(tmp_path, damage):
    path = damage(tmp_path / "train-images-idx3-ubyte.gz")

    with pytest.raises(DataError) as excinfo:
        read_images(path)

    assert str(path) in str(excinfo.value)


def test_images_keep_the_size_their_file_declares(tmp_path):
    assert read_images(_images_of_32_pixels(tmp_path / "images.gz")).shape == (4, 32, 32)


def test_training_and_test_images_of_different_sizes_are_refused_with_both_sizes(tmp_path):
    folder = make_idx_folder(tmp_path / "mnist")
    write_idx(folder / SPLIT_FILES["train_images"], np.zeros((128, 32, 32)))

    with pytest.raises(DataError, match="holds 32x32 images but .* holds 28x28 ones"):
        load_dataset(tiny_data_config(folder))


def test_the_dataset_reports_its_image_shape(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for key, count in (("train", 64), ("test", 16)):
        write_idx(folder / SPLIT_FILES[f"{key}_images"], np.zeros((count, 32, 24)))
        write_idx(folder / SPLIT_FILES[f"{key}_labels"], np.zeros(count))
    assert load_dataset(tiny_data_config(folder)).image_shape == (32, 24, 1)


def test_image_file_read_as_labels_raises_data_error_naming_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, synthetic_digits(5, seed=1)[0])  # 3-D, magic 0x0803

    with pytest.raises(DataError) as excinfo:
        read_labels(path)

    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("damage", [_missing, _truncated_gzip, _not_gzip])
def test_bad_label_file_raises_data_error_naming_the_file(tmp_path, damage):
    path = damage(tmp_path / "train-labels-idx1-ubyte.gz")

    with pytest.raises(DataError) as excinfo:
        read_labels(path)

    assert str(path) in str(excinfo.value)


def test_image_and_label_counts_must_agree(tmp_path, tiny_data_dir):
    from vae_train.data.pipeline import load_dataset

    folder = tmp_path / "mnist"
    shutil.copytree(tiny_data_dir, folder)
    labels_path = folder / SPLIT_FILES["train_labels"]
    write_idx(labels_path, read_labels(labels_path)[:100])

    with pytest.raises(DataError) as excinfo:
        load_dataset(tiny_data_config(folder))

    message = str(excinfo.value)
    assert str(folder / SPLIT_FILES["train_images"]) in message
    assert str(labels_path) in message


def test_files_that_are_not_the_published_ones_fail_the_checksum(tiny_data_dir):
    from vae_train.data.pipeline import load_dataset

    with pytest.raises(DataError, match="Checksum mismatch") as excinfo:
        load_dataset(tiny_data_config(tiny_data_dir, verify_checksums=True))

    assert any(str(tiny_data_dir / name) in str(excinfo.value) for name in SPLIT_FILES.values())


def test_checksum_mismatch_names_the_one_file_that_differs(tiny_data_dir, monkeypatch):
    md5 = {key: md5sum(tiny_data_dir / name) for key, name in SPLIT_FILES.items()} | {"test_labels": "0" * 32}
    monkeypatch.setitem(sources.IDX_DATASETS, "mnist", dataclasses.replace(sources.IDX_DATASETS["mnist"], md5=md5))

    with pytest.raises(DataError, match="Checksum mismatch") as excinfo:
        sources.locate_files("mnist", str(tiny_data_dir), "unused", verify_checksums=True)

    assert str(tiny_data_dir / SPLIT_FILES["test_labels"]) in str(excinfo.value)
    assert sources.locate_files("mnist", str(tiny_data_dir), "unused", verify_checksums=False)


# --- locating files ----------------------------------------------------------------------------


def test_local_folder_gives_the_four_files(tiny_data_dir):
    files = sources.locate_files("mnist", str(tiny_data_dir), "unused", verify_checksums=False)

    assert files == {key: tiny_data_dir / name for key, name in SPLIT_FILES.items()}


def test_data_folder_that_does_not_exist_raises_data_error_naming_it(tmp_path):
    folder = tmp_path / "no-such-folder"

    with pytest.raises(DataError) as excinfo:
        sources.locate_files("mnist", str(folder), str(tmp_path / "cache"), verify_checksums=False)

    assert str(folder) in str(excinfo.value)
    assert not (tmp_path / "cache").exists()  # no download was attempted


@pytest.mark.parametrize("missing", list(SPLIT_FILES.values()))
def test_data_folder_missing_a_file_raises_data_error_naming_it(tmp_path, tiny_data_dir, missing):
    folder = tmp_path / "mnist"
    shutil.copytree(tiny_data_dir, folder)
    (folder / missing).unlink()

    with pytest.raises(DataError) as excinfo:
        sources.locate_files("mnist", str(folder), "unused", verify_checksums=False)

    message = str(excinfo.value)
    assert str(folder) in message
    # The message may list every required file, but the missing one is singled out.
    for present in set(SPLIT_FILES.values()) - {missing}:
        assert message.count(missing) > message.count(present)


def test_unknown_dataset_name_raises_an_error_listing_the_known_ones():
    from vae_train.data.sources import ReadContext, read_source

    with pytest.raises(ConfigError, match="mnist") as excinfo:
        read_source(types.SimpleNamespace(name="nope"), ReadContext())

    assert all(name in str(excinfo.value) for name in ("fashion", "cifar10", "folder"))


def test_data_env_var_names_a_folder_per_dataset(tmp_path, tiny_data_dir, monkeypatch):
    shutil.copytree(tiny_data_dir, tmp_path / "datasets" / "mnist")
    monkeypatch.setenv(sources.DATA_ENV_VAR, str(tmp_path / "datasets"))

    files = sources.locate_files("mnist", None, str(tmp_path / "cache"), verify_checksums=False)

    assert files == {key: tmp_path / "datasets" / "mnist" / name for key, name in SPLIT_FILES.items()}
    assert not (tmp_path / "cache").exists()


def test_data_env_var_without_the_dataset_raises_instead_of_downloading(tmp_path, monkeypatch):
    (tmp_path / "datasets").mkdir()
    monkeypatch.setenv(sources.DATA_ENV_VAR, str(tmp_path / "datasets"))

    with pytest.raises(DataError) as excinfo:
        sources.locate_files("mnist", None, str(tmp_path / "cache"), verify_checksums=False)

    assert str(tmp_path / "datasets" / "mnist") in str(excinfo.value)
    assert not (tmp_path / "cache").exists()


def test_explicit_root_wins_over_the_data_env_var(tmp_path, tiny_data_dir, monkeypatch):
    monkeypatch.setenv(sources.DATA_ENV_VAR, str(tmp_path / "elsewhere"))

    files = sources.locate_files("mnist", str(tiny_data_dir), "unused", verify_checksums=False)

    assert set(files.values()) == {tiny_data_dir / name for name in SPLIT_FILES.values()}


# --- downloading, from a local file:// mirror ---------------------------------------------------


@dataclasses.dataclass
class Mirror:
    name: str
    folder: Path
    spec: sources.IDXDataset


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Mirror:
    """A tiny dataset served from a local folder, registered under a name unique to the test."""
    folder = make_idx_folder(tmp_path / "mirror", train=32, test=16, seed=5)
    name = f"tiny-{tmp_path.name}"
    spec = dataclasses.replace(
        sources.IDX_DATASETS["mnist"], name=name, mirrors=(folder.as_uri() + "/",),
        md5={key: md5sum(folder / filename) for key, filename in SPLIT_FILES.items()},
    )
    monkeypatch.setitem(sources.IDX_DATASETS, name, spec)
    monkeypatch.delenv(sources.DATA_ENV_VAR, raising=False)
    return Mirror(name, folder, spec)


@pytest.fixture
def download(tmp_path):
    """``locate_files`` with root=None; afterwards removes any file it put outside ``tmp_path``."""
    returned: list[Path] = []

    def locate(name: str, cache_dir: Path) -> dict[str, Path]:
        files = sources.locate_files(name, None, str(cache_dir), verify_checksums=True)
        returned.extend(files.values())
        return files

    yield locate
    for path in returned:
        if not path.is_relative_to(tmp_path) and path.is_file():
            path.unlink()
            for folder in (path.parent, path.parent.parent):  # only if now empty
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _assert_same_as_mirror(files: dict[str, Path], mirror: Mirror) -> None:
    assert set(files) == set(SPLIT_FILES)
    for key, filename in SPLIT_FILES.items():
        assert files[key].read_bytes() == (mirror.folder / filename).read_bytes()


def test_download_lands_in_cache_dir_per_dataset_and_is_reused(tmp_path, mirror, download):
    cache = tmp_path / "cache"
    cache.mkdir()

    files = download(mirror.name, cache)

    assert files == {key: cache / mirror.name / filename for key, filename in SPLIT_FILES.items()}
    _assert_same_as_mirror(files, mirror)
    # Second call: the mirror is gone, so only the cache can answer.
    expected = {key: path.read_bytes() for key, path in files.items()}
    shutil.rmtree(mirror.folder)
    again = download(mirror.name, cache)
    assert again == files
    assert {key: path.read_bytes() for key, path in again.items()} == expected


def test_download_into_a_cache_dir_that_does_not_exist_yet(tmp_path, mirror, download):
    # The default cache_dir (~/.cache/vae-train) does not exist on a fresh machine.
    cache = tmp_path / "fresh" / "cache"

    files = download(mirror.name, cache)

    assert {path.parent for path in files.values()} == {cache / mirror.name}
    _assert_same_as_mirror(files, mirror)


def test_corrupt_cached_file_is_downloaded_again(tmp_path, mirror, download):
    cache = tmp_path / "cache"
    cache.mkdir()
    files = download(mirror.name, cache)
    damaged = files["train_images"]
    damaged.write_bytes(damaged.read_bytes()[:100])

    again = download(mirror.name, cache)

    assert again["train_images"] == damaged
    _assert_same_as_mirror(again, mirror)
    assert read_images(damaged).shape == (32, 28, 28)


def test_download_tries_the_next_mirror_when_one_fails(tmp_path, mirror, download, monkeypatch):
    spec = dataclasses.replace(mirror.spec, mirrors=((tmp_path / "dead").as_uri() + "/", *mirror.spec.mirrors))
    monkeypatch.setitem(sources.IDX_DATASETS, mirror.name, spec)
    cache = tmp_path / "cache"
    cache.mkdir()

    _assert_same_as_mirror(download(mirror.name, cache), mirror)


def test_mirror_serving_a_wrong_file_raises_data_error_with_offline_instructions(
    tmp_path, mirror, download, monkeypatch
):
    bad = SPLIT_FILES["train_labels"]
    spec = dataclasses.replace(mirror.spec, md5=mirror.spec.md5 | {"train_labels": "0" * 32})
    monkeypatch.setitem(sources.IDX_DATASETS, mirror.name, spec)
    cache = tmp_path / "cache"
    cache.mkdir()

    with pytest.raises(DataError) as excinfo:
        download(mirror.name, cache)

    message = str(excinfo.value)
    assert bad in message
    assert "data.root" in message
    assert sources.DATA_ENV_VAR in message


# --- pipelines ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tiny_data_dir):
    """The session's tiny data (128 train, 64 test images), decoded once."""
    from vae_train.data.pipeline import load_dataset

    return load_dataset(tiny_data_config(tiny_data_dir))


def _pipelines(dataset, binarize: Binarize = Binarize.none, batch_size: int = 16, seed: int = 7, **overrides):
    from vae_train.data.pipeline import ImagePipelines

    config = PublishedDataConfig(name="mnist", root=None, verify_checksums=False, batch_size=batch_size,
                        binarize=binarize, **overrides)
    return ImagePipelines(dataset, config, seed=seed)


def _batches(ds) -> list[np.ndarray]:
    return [batch.numpy() for batch in ds]


def _epoch(pipelines, epoch: int) -> np.ndarray:
    return np.concatenate(_batches(pipelines.train(epoch)))


def _indices(images: np.ndarray, source: np.ndarray) -> list[int]:
    """Where each of ``images`` (grey levels in [0, 1]) sits in ``source`` (uint8); all are unique."""
    position = {image.tobytes(): index for index, image in enumerate(source)}
    assert len(position) == len(source)
    as_uint8 = np.rint(images * 255).astype(np.uint8)
    return [position[image.tobytes()] for image in as_uint8]


@pytest.mark.parametrize("binarize", list(Binarize))
def test_batches_are_float32_images_in_the_unit_interval(tiny_dataset, binarize):
    pipelines = _pipelines(tiny_dataset, binarize)

    # Training batches of data.batch_size; the 64 test images in one batch of at most TEST_BATCH.
    for ds, batch_shape in ((pipelines.train(0), (16, 28, 28, 1)), (pipelines.test(), (64, 28, 28, 1))):
        for batch in _batches(ds):
            assert batch.shape == batch_shape
            assert batch.dtype == np.float32
            assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_train_drops_the_remainder_so_every_batch_is_full(tiny_dataset):
    pipelines = _pipelines(tiny_dataset, batch_size=48)  # 128 = 2 * 48 + 32

    batches = _batches(pipelines.train(0))

    assert pipelines.train_size == 128
    assert pipelines.steps_per_epoch == 128 // 48 == len(batches)
    assert [len(batch) for batch in batches] == [48, 48]


def test_test_pipeline_covers_every_test_image_once_in_order(tiny_dataset, monkeypatch):
    monkeypatch.setattr("vae_train.data.pipeline.TEST_BATCH", 40)
    pipelines = _pipelines(tiny_dataset, batch_size=16)  # 64 = 40 + 24: batches of TEST_BATCH

    batches = _batches(pipelines.test())

    assert [len(batch) for batch in batches] == [40, 24]
    assert [len(batch) for batch in _batches(_pipelines(tiny_dataset, batch_size=48).test())] == [48, 16]
    images = np.concatenate(batches)
    np.testing.assert_allclose(images, tiny_dataset.test.images / 255.0, atol=1e-6)


def test_static_binarization_thresholds_at_half(tiny_dataset):
    pipelines = _pipelines(tiny_dataset, Binarize.static)

    test_images = np.concatenate(_batches(pipelines.test()))
    np.testing.assert_array_equal(test_images, (tiny_dataset.test.images >= 128).astype(np.float32))
    train_images = _epoch(pipelines, 0)
    assert set(np.unique(train_images)) == {0.0, 1.0}
    # The training set is the thresholded source, in some order.
    expected = {image.tobytes() for image in (tiny_dataset.train.images >= 128).astype(np.float32)}
    assert {image.tobytes() for image in train_images} == expected


def test_no_binarization_keeps_grey_levels(tiny_dataset):
    pipelines = _pipelines(tiny_dataset, Binarize.none)

    train_images = _epoch(pipelines, 0)
    order = _indices(train_images, tiny_dataset.train.images)
    np.testing.assert_allclose(train_images, tiny_dataset.train.images[order] / 255.0, atol=1e-6)
    assert len(np.unique(train_images)) > 2


def test_train_order_is_a_permutation_that_changes_with_the_epoch_and_is_reproducible(tiny_dataset):
    pipelines = _pipelines(tiny_dataset, seed=7)

    order_0 = _indices(_epoch(pipelines, 0), tiny_dataset.train.images)
    order_1 = _indices(_epoch(pipelines, 1), tiny_dataset.train.images)

    assert sorted(order_0) == sorted(order_1) == list(range(128))
    assert order_0 != order_1
    assert order_0 != sorted(order_0)
    # Same (seed, epoch): same order, from the same object and from a fresh one.
    assert _indices(_epoch(pipelines, 0), tiny_dataset.train.images) == order_0
    assert _indices(_epoch(_pipelines(tiny_dataset, seed=7), 1), tiny_dataset.train.images) == order_1
    # Another seed: another order.
    assert _indices(_epoch(_pipelines(tiny_dataset, seed=8), 0), tiny_dataset.train.images) != order_0


def test_dynamic_binarization_draws_per_epoch_reproducibly(tiny_dataset):
    pipelines = _pipelines(tiny_dataset, Binarize.dynamic, seed=7)

    epoch_0, epoch_1 = _epoch(pipelines, 0), _epoch(pipelines, 1)

    assert set(np.unique(epoch_0)) == set(np.unique(epoch_1)) == {0.0, 1.0}
    assert not np.array_equal(epoch_0, epoch_1)
    np.testing.assert_array_equal(_epoch(pipelines, 0), epoch_0)
    np.testing.assert_array_equal(_epoch(_pipelines(tiny_dataset, Binarize.dynamic, seed=7), 1), epoch_1)
    # The test split gets one fixed draw.
    np.testing.assert_array_equal(np.concatenate(_batches(pipelines.test())),
                                  np.concatenate(_batches(pipelines.test())))


def test_dynamic_binarization_is_a_bernoulli_draw_of_the_grey_level(tiny_dataset):
    pipelines = _pipelines(tiny_dataset, Binarize.dynamic)
    grey = tiny_dataset.test.images / 255.0

    draws = np.concatenate(_batches(pipelines.test()))

    # Black pixels never turn on, white pixels always do.
    assert (grey == 0).any() and (grey == 1).any()
    assert not draws[grey == 0].any()
    assert draws[grey == 1].all()
    # Over many pixels the draw's mean is the grey mean, within 5 standard errors.
    for sample, probability in ((draws, grey), (_epoch(pipelines, 0), tiny_dataset.train.images / 255.0)):
        standard_error = np.sqrt(np.sum(probability * (1 - probability))) / probability.size
        assert abs(sample.mean() - probability.mean()) < 5 * standard_error


def test_max_train_examples_limits_the_training_set(tiny_data_dir):
    from vae_train.data.pipeline import load_dataset

    dataset = load_dataset(tiny_data_config(tiny_data_dir, max_train_examples=32, max_test_examples=20))

    assert len(dataset.train.images) == len(dataset.train.labels) == 32
    assert len(dataset.test.images) == 20
    assert _pipelines(dataset).steps_per_epoch == 2


def test_max_train_examples_above_the_set_size_warns_and_uses_everything(tiny_data_dir, caplog):
    from vae_train.data.pipeline import load_dataset

    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(tiny_data_config(tiny_data_dir, max_train_examples=1000))

    assert len(dataset.train.images) == 128
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "data.max_train_examples" in warnings[0].getMessage()
    assert "1000" in warnings[0].getMessage()


@pytest.mark.parametrize("overrides", [{"batch_size": 129}, {"batch_size": 16, "max_train_examples": 10}])
def test_batch_size_larger_than_the_training_set_raises_config_error(tiny_data_dir, overrides):
    from vae_train.data.pipeline import load_dataset

    with pytest.raises(ConfigError, match="data.batch_size"):
        load_dataset(tiny_data_config(tiny_data_dir, **overrides))
