"""data=folder: scanning a folder of images, decoding them into the cache, and the train/test split.

Every folder here is a few tiny images the test writes with Pillow; nothing trains.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vae_train.config import FolderDataConfig, Labels, Resize
from vae_train.data.arrays import RowSubset
from vae_train.data.sources import ReadContext, read_source
from vae_train.data.sources.folder import cache, decode
from vae_train.data.sources.folder.decode import DecodeSettings, decode_image
from vae_train.data.sources.folder.scan import scan_folder
from vae_train.data.sources.folder.split import SPLIT_FILE
from vae_train.errors import DataError


def save(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """``pixels`` as an image file at ``path``, its format from the extension (any case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    image.save(path)
    return path


def flat(value: int, height: int = 8, width: int = 8, channels: int = 3) -> np.ndarray:
    """An image of one grey level; distinct levels tell images apart after decoding."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.full(shape, value, dtype=np.uint8)


def noise(seed: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def config(root: Path, cache_dir: Path, **overrides) -> FolderDataConfig:
    return FolderDataConfig(name="folder", root=str(root), cache_dir=str(cache_dir), decode_workers=2, **overrides)


def read(settings: FolderDataConfig, **context):
    return read_source(settings, ReadContext(**context))


def levels(images) -> list[int]:
    """The first pixel of each image, the identity of the images :func:`flat` wrote."""
    return sorted(int(level) for level in np.asarray(images)[:, 0, 0, 0])


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def two_classes(root: Path, first: int = 20, second: int = 10) -> Path:
    """Class "a" of ``first`` and class "b" of ``second`` grey PNGs, each image its own level (a: 0, 2, ...;
    b: 101, 103, ...)."""
    for index in range(first):
        save(root / "a" / f"{index:02d}.png", flat(2 * index, channels=1))
    for index in range(second):
        save(root / "b" / f"{index:02d}.png", flat(101 + 2 * index, channels=1))
    return root


# --- scanning and labels ------------------------------------------------------------------------------


def test_scan_finds_every_image_case_insensitively_sorted_and_skips_hidden_ones(tmp_path):
    root = tmp_path / "images"
    save(root / "dog" / "c.BMP", flat(1))
    save(root / "cat" / "indoor" / "deep" / "b.JPG", flat(2))
    save(root / "cat" / "a.PNG", flat(3))
    save(root / "cat" / "e.Jpeg", flat(4))
    save(root / "dog" / ".hidden.png", flat(5))
    save(root / ".thumbnails" / "x.png", flat(6))
    save(root / "dog" / ".cache" / "y.png", flat(7))
    (root / "dog" / "notes.txt").write_text("not an image")

    scan = scan_folder(root, "data.root", infer_labels=True)

    assert [file.path for file in scan.files] == ["cat/a.PNG", "cat/e.Jpeg", "cat/indoor/deep/b.JPG", "dog/c.BMP"]
    assert scan.class_names == ("cat", "dog")  # the nested folder belongs to its first-level class
    assert scan.labels.tolist() == [0, 0, 0, 1]
    assert scan.files[0].size == (root / "cat" / "a.PNG").stat().st_size


def test_inferred_labels_follow_the_class_folders(tmp_path, cache_dir):
    root = tmp_path / "images"
    for index in range(3):
        save(root / "zebra" / f"{index}.png", flat(200, channels=1))
        save(root / "ant" / "nested" / f"{index}.png", flat(50, channels=1))

    source = read(config(root, cache_dir, test_fraction=0.34, labels=Labels.inferred))

    assert source.labelled and source.class_names == ("ant", "zebra")
    for split in (source.train, source.test):
        expected = np.where(split.labels == 0, 50, 200)  # each image's level says which folder it came from
        assert np.asarray(split.images)[:, 0, 0, 0].tolist() == expected.tolist()
    assert len(source.train.labels) + len(source.test.labels) == 6


def test_a_folder_without_class_folders_is_unlabelled(tmp_path, cache_dir, caplog):
    root = tmp_path / "images"
    for index in range(5):
        save(root / f"{index}.png", flat(index, channels=1))

    with caplog.at_level(logging.INFO, logger="vae_train.data.sources.folder"):
        source = read(config(root, cache_dir, test_fraction=0.4))

    assert not source.labelled and source.class_names == ("image",)
    assert set(source.train.labels.tolist()) | set(source.test.labels.tolist()) == {0}
    assert (len(source.train.labels), len(source.test.labels)) == (3, 2)
    unlabelled_lines = [record for record in caplog.records if "unlabelled" in record.getMessage()
                        and record.name.endswith("scan")]
    assert len(unlabelled_lines) == 1


def test_labels_null_reads_class_folders_as_one_unlabelled_set(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=4, second=4)
    save(root / "b" / "deeper" / "x.png", flat(255, channels=1))

    source = read(config(root, cache_dir, labels=None, test_fraction=0.2))

    assert not source.labelled and source.class_names == ("image",)
    assert len(source.train.labels) + len(source.test.labels) == 9
    assert 255 in levels(source.train.images) + levels(source.test.images)


def test_loose_images_beside_class_folders_are_an_error(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=2, second=2)
    save(root / "stray.png", flat(9, channels=1))

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir))

    message = str(error.value)
    assert "1 image lying directly in it" in message and "stray.png" in message
    assert "4 images in 2 class folders" in message and "data.labels=null" in message and str(root) in message


# --- size and colour ----------------------------------------------------------------------------------


@pytest.mark.parametrize("resize", ["stretch", "crop", "pad"])
def test_an_image_of_the_target_size_is_not_resampled(tmp_path, resize):
    pixels = noise(0, 10, 12)
    path = save(tmp_path / "same.png", pixels)

    decoded = decode_image(path, DecodeSettings(10, 12, 3, resize))

    assert np.array_equal(decoded, pixels)


def test_stretch_resizes_to_the_target_whatever_the_aspect(tmp_path):
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)
    pixels[:, 10:] = (0, 0, 255)
    path = save(tmp_path / "wide.png", pixels)

    decoded = decode_image(path, DecodeSettings(8, 8, 3, "stretch"))

    assert decoded.shape == (8, 8, 3)
    assert decoded[:, :3].tolist() == [[[255, 0, 0]] * 3] * 8  # both halves squeezed, not cropped away
    assert decoded[:, -3:].tolist() == [[[0, 0, 255]] * 3] * 8


@pytest.mark.parametrize(("height", "width", "centre"), [(10, 20, np.s_[:, 5:15]), (20, 10, np.s_[5:15, :])])
def test_crop_keeps_the_largest_centred_square(tmp_path, height, width, centre):
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[centre] = noise(1, 10, 10)
    path = save(tmp_path / "image.png", pixels)

    cropped = decode_image(path, DecodeSettings(10, 10, 3, "crop"))
    smaller = decode_image(path, DecodeSettings(5, 5, 3, "crop"))

    assert np.array_equal(cropped, pixels[centre])  # the centre exactly: crop only, no resampling
    assert smaller.shape == (5, 5, 3) and smaller.max() < 255  # the white margins were cut before resizing


def test_pad_letterboxes_on_black(tmp_path):
    path = save(tmp_path / "wide.png", flat(255, height=8, width=16))

    same_width = decode_image(path, DecodeSettings(16, 16, 3, "pad"))
    smaller = decode_image(path, DecodeSettings(8, 8, 3, "pad"))

    assert same_width.shape == (16, 16, 3)
    assert (same_width[:4] == 0).all() and (same_width[12:] == 0).all() and (same_width[4:12] == 255).all()
    assert smaller.shape == (8, 8, 3)
    assert (smaller[:2] == 0).all() and (smaller[6:] == 0).all() and (smaller[2:6] == 255).all()


def test_channels_follow_the_files_colour(tmp_path, cache_dir):
    grey_root = tmp_path / "grey"
    save(grey_root / "l.png", flat(10, channels=1))
    save(grey_root / "sixteen.png", np.full((8, 8), 257 * 100, dtype=np.uint16))  # Pillow opens it as I;16
    save(grey_root / "palette.GIF", flat(30, channels=1), mode="P")
    save(grey_root / "one_bit.bmp", flat(255, channels=1), mode="1")

    grey = read(config(grey_root, cache_dir, test_fraction=0.25))
    images = np.concatenate([np.asarray(grey.train.images), np.asarray(grey.test.images)])

    assert images.shape[-1] == 1
    assert sorted(images[:, 0, 0, 0].tolist()) == [10, 30, 100, 255]  # 16 bits scaled, not clipped or wrapped

    coloured_root = tmp_path / "coloured"
    save(coloured_root / "l.png", flat(10, channels=1))
    save(coloured_root / "rgb.png", flat(20))
    coloured = read(config(coloured_root, cache_dir, test_fraction=0.5))
    grey_image = next(image for image in (coloured.train.images[0], coloured.test.images[0]) if image[0, 0, 0] == 10)

    assert grey_image.shape == (8, 8, 3) and (grey_image == 10).all()  # grey replicated into 3 channels


def test_colour_to_grey_and_alpha_on_black(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:4, :, 3] = 255  # top half opaque, bottom half transparent
    path = save(tmp_path / "alpha.png", rgba)

    as_rgb = decode_image(path, DecodeSettings(8, 8, 3, "stretch"))
    as_grey = decode_image(path, DecodeSettings(8, 8, 1, "stretch"))

    assert as_rgb[0, 0].tolist() == [200, 100, 50] and as_rgb[7, 0].tolist() == [0, 0, 0]
    assert as_grey.shape == (8, 8, 1)
    assert as_grey[0, 0, 0] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50) and as_grey[7, 0, 0] == 0


def test_images_of_different_sizes_need_an_image_size(tmp_path, cache_dir):
    root = tmp_path / "images"
    save(root / "small.png", flat(1, height=8, width=8))
    save(root / "wide.png", flat(2, height=8, width=12))
    save(root / "zz.png", flat(3, height=8, width=8))

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir, test_fraction=0.34))

    message = str(error.value)
    assert "small.png" in message and "wide.png" in message and "data.image_size=[H,W]" in message

    source = read(config(root, cache_dir, test_fraction=0.34, image_size=[6, 7], resize=Resize.pad))
    assert source.train.images.shape[1:] == (6, 7, 3)


# --- the split ----------------------------------------------------------------------------------------


def test_the_split_is_stratified_and_seeded(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=20, second=10)
    settings = config(root, cache_dir, test_fraction=0.3)

    first, again, other_seed = read(settings, seed=3), read(settings, seed=3), read(settings, seed=4)

    assert np.bincount(first.test.labels).tolist() == [6, 3]
    assert np.bincount(first.train.labels).tolist() == [14, 7]
    assert levels(first.test.images) == levels(again.test.images)
    assert levels(first.test.images) != levels(other_seed.test.images)
    assert not set(levels(first.test.images)) & set(levels(first.train.images))


def test_the_recorded_split_is_reused_when_the_folder_changes(tmp_path, cache_dir, caplog):
    root = two_classes(tmp_path / "images", first=10, second=10)
    run_dir = tmp_path / "run"
    settings = config(root, cache_dir, test_fraction=0.2)
    recorded = read(settings, seed=0, run_dir=run_dir)
    run_dir.mkdir()
    (run_dir / SPLIT_FILE).write_text(recorded.run_files[SPLIT_FILE])  # as the run writes it once it starts

    rows = (run_dir / SPLIT_FILE).read_text().splitlines()
    assert rows[0] == "path,label,split" and len(rows) == 21
    assert sum(row.endswith(",test") for row in rows) == 4 and "a/00.png,a," in rows[1]

    first_train_level = levels(recorded.train.images)[0]
    (root / "a" / f"{first_train_level // 2:02d}.png").unlink()  # lose a training image
    save(root / "b" / "new.png", flat(250, channels=1))  # gain one
    with caplog.at_level(logging.WARNING):
        reused = read(settings, seed=99, run_dir=run_dir)  # as vae-eval, or a resumed run, reads it

    assert levels(reused.test.images) == levels(recorded.test.images)  # despite another seed
    assert levels(reused.train.images) == levels(recorded.train.images)[1:]  # the lost one dropped
    assert 250 not in levels(reused.train.images) + levels(reused.test.images)  # the new one unused
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gained 1 and lost 1" in warnings[0] and "kept" in warnings[0]
    assert reused.run_files == {}  # nothing to record again


def test_reading_a_folder_writes_nothing_in_the_run_folder(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=4, second=4)

    read(config(root, cache_dir, test_fraction=0.25), run_dir=tmp_path / "run")

    assert not (tmp_path / "run").exists()  # the run writes split.csv once it is sure to start


def test_a_class_too_small_to_split_is_named(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=6, second=1)

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir))

    assert "b (1 image)" in str(error.value) and "data.test_root" in str(error.value)


def test_a_test_fraction_that_leaves_no_training_image_is_an_error(tmp_path, cache_dir):
    root = tmp_path / "images"
    for index in range(3):
        save(root / f"{index}.png", flat(index, channels=1))

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir, test_fraction=0.9))

    assert "data.test_fraction=0.9" in str(error.value) and "leaves 0 training and 3 test images" in str(error.value)


def test_a_test_root_takes_the_training_classes_and_size(tmp_path, cache_dir):
    train_root = tmp_path / "train"
    for name, level in (("a", 10), ("b", 20), ("c", 30)):
        save(train_root / name / "0.png", flat(level, channels=1))
    test_root = tmp_path / "test"
    save(test_root / "c" / "0.png", flat(30, height=16, width=16, channels=1))
    save(test_root / "b" / "0.png", flat(20, height=16, width=16, channels=1))

    source = read(config(train_root, cache_dir, test_root=str(test_root)))

    assert len(source.train.labels) == 3 and source.class_names == ("a", "b", "c")
    assert source.test.labels.tolist() == [1, 2]  # the training folder's indices, not the test folder's own
    assert source.test.images.shape == (2, 8, 8, 1)  # resized to the training images' size
    assert np.asarray(source.test.images)[:, 0, 0, 0].tolist() == [20, 30]


def test_a_test_root_class_the_training_folder_lacks_is_named(tmp_path, cache_dir):
    two_classes(tmp_path / "train", first=2, second=2)
    save(tmp_path / "test" / "a" / "0.png", flat(1, channels=1))
    save(tmp_path / "test" / "bird" / "0.png", flat(2, channels=1))

    with pytest.raises(DataError) as error:
        read(config(tmp_path / "train", cache_dir, test_root=str(tmp_path / "test")))

    assert "lacks: bird." in str(error.value) and "data.test_root" in str(error.value)


# --- the cache ----------------------------------------------------------------------------------------


@pytest.fixture
def decode_calls(monkeypatch) -> list[Path]:
    """The files decoded from now on."""
    calls = []
    original = decode.decode_image

    def counted(path, settings):
        calls.append(path)
        return original(path, settings)

    monkeypatch.setattr(decode, "decode_image", counted)
    return calls


def test_images_are_decoded_once_and_then_read_from_the_cache(tmp_path, cache_dir, decode_calls):
    root = two_classes(tmp_path / "images", first=4, second=4)
    settings = config(root, cache_dir, test_fraction=0.25)

    first = read(settings)
    assert len(decode_calls) == 8
    second = read(settings)

    assert len(decode_calls) == 8  # nothing decoded the second time
    assert levels(second.test.images) == levels(first.test.images)
    assert isinstance(second.train.images, RowSubset) and isinstance(second.train.images.base, np.memmap)
    assert second.train.images.base is second.test.images.base  # rows of one memory map, not copies
    assert not second.train.images.base.flags.writeable
    assert len(list((cache_dir / "folders").glob("*.npy"))) == 1
    sidecar = json.loads(next((cache_dir / "folders").glob("*.json")).read_text())
    assert sidecar["count"] == 8 and sidecar["format_version"] == cache.CACHE_FORMAT_VERSION
    # The files have the mode of any file this process makes (others' jobs may share the cache).
    (cache_dir / "plain").touch()
    modes = {path.stat().st_mode & 0o777 for path in (cache_dir / "folders").iterdir()}
    assert modes == {(cache_dir / "plain").stat().st_mode & 0o777}


def test_a_changed_file_makes_a_new_cache(tmp_path, cache_dir, decode_calls):
    root = two_classes(tmp_path / "images", first=4, second=4)
    settings = config(root, cache_dir, test_fraction=0.25, image_size=[8, 8])
    read(settings)

    changed = root / "a" / "00.png"
    save(changed, flat(77, height=12, width=12, channels=1))
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))
    source = read(settings)

    assert len(decode_calls) == 16
    assert 77 in levels(source.train.images) + levels(source.test.images)


def test_parallel_jobs_decode_a_folder_once(tmp_path, cache_dir, decode_calls):
    root = two_classes(tmp_path / "images", first=6, second=6)
    scan = scan_folder(root, "data.root", infer_labels=True)
    request = decode.DecodeRequest(None, None, "stretch")
    results = []

    def job():
        results.append(cache.decoded_images(scan, request, cache.DecodeOptions(workers=1), cache_dir))

    jobs = [threading.Thread(target=job) for _ in range(2)]
    for thread in jobs:
        thread.start()
    for thread in jobs:
        thread.join()

    assert len(decode_calls) == 12 and len(results) == 2
    assert np.array_equal(results[0].images, results[1].images)


def test_a_cache_of_another_format_version_is_an_error(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=4, second=4)
    settings = config(root, cache_dir, test_fraction=0.25)
    read(settings)
    sidecar_path = next((cache_dir / "folders").glob("*.json"))
    sidecar = json.loads(sidecar_path.read_text())
    sidecar_path.write_text(json.dumps({**sidecar, "format_version": cache.CACHE_FORMAT_VERSION + 1}))

    with pytest.raises(DataError) as error:
        read(settings)

    message = str(error.value)
    assert "format version" in message and str(sidecar_path) in message
    assert "Delete" in message and "data.cache_dir" in message


def test_a_truncated_cache_is_an_error(tmp_path, cache_dir):
    root = two_classes(tmp_path / "images", first=4, second=4)
    settings = config(root, cache_dir, test_fraction=0.25)
    read(settings)
    array_path = next((cache_dir / "folders").glob("*.npy"))
    array_path.write_bytes(array_path.read_bytes()[:200])

    with pytest.raises(DataError) as error:
        read(settings)

    assert "damaged" in str(error.value) and str(array_path) in str(error.value) and "Delete" in str(error.value)


# --- bad input ----------------------------------------------------------------------------------------


def damaged_images(root: Path) -> Path:
    """Six good PNGs, a truncated PNG and a JPEG that is text."""
    for index in range(6):
        save(root / f"{index}.png", flat(index, channels=1))
    truncated = save(root / "truncated.png", noise(2, 8, 8))
    truncated.write_bytes(truncated.read_bytes()[:100])  # the header reads; the pixels do not
    (root / "text.jpg").write_text("this is not a JPEG")
    return root


def test_an_unreadable_image_is_named(tmp_path, cache_dir):
    root = damaged_images(tmp_path / "images")

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir, image_size=[8, 8], channels=1))

    message = str(error.value)
    assert "text.jpg" in message and "data.skip_unreadable=true" in message


def test_unreadable_images_can_be_skipped(tmp_path, cache_dir, caplog):
    root = damaged_images(tmp_path / "images")
    settings = config(root, cache_dir, test_fraction=0.5, skip_unreadable=True)

    with caplog.at_level(logging.WARNING):
        source = read(settings)

    assert sorted(levels(source.train.images) + levels(source.test.images)) == [0, 1, 2, 3, 4, 5]
    skip_lines = [record.getMessage() for record in caplog.records if "Skipped" in record.getMessage()]
    assert len(skip_lines) == 1 and "Skipped 2 " in skip_lines[0]
    assert "text.jpg" in skip_lines[0] and "truncated.png" in skip_lines[0]

    with pytest.raises(DataError, match="truncated.png|text.jpg"):  # the cache remembers; skipping is off now
        read(config(root, cache_dir, test_fraction=0.5, skip_unreadable=False))


def test_a_folder_of_unreadable_images_is_an_error(tmp_path, cache_dir):
    root = tmp_path / "images"
    for index in range(2):
        (root / f"{index}.png").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{index}.png").write_bytes(b"\x89PNG broken")

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir, skip_unreadable=True))

    assert "None of the 2 image files" in str(error.value) and str(root) in str(error.value)


def test_a_folder_without_images_is_an_error(tmp_path, cache_dir):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "readme.txt").write_text("no images here")
    save(root / ".hidden.png", flat(1))

    with pytest.raises(DataError) as error:
        read(config(root, cache_dir))

    assert str(root) in str(error.value) and ".png" in str(error.value) and ".webp" in str(error.value)


def test_a_missing_root_is_named(tmp_path, cache_dir):
    with pytest.raises(DataError) as error:
        read(config(tmp_path / "nowhere", cache_dir))

    assert str(tmp_path / "nowhere") in str(error.value) and "data.root" in str(error.value)


def test_a_cache_dir_that_cannot_be_written_is_named(tmp_path):
    root = two_classes(tmp_path / "images", first=2, second=2)
    not_a_folder = tmp_path / "cache_file"
    not_a_folder.write_text("a file where the cache folder should be")

    with pytest.raises(DataError) as error:
        read(config(root, not_a_folder))

    assert str(not_a_folder) in str(error.value) and "data.cache_dir" in str(error.value)
