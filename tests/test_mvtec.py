"""data=mvtec: a category in the MVTec AD layout read into training, validation and test images with their
defect masks, its bad inputs, and scripts/mvtec_like.py, which builds such a category from a real texture.

Every category here is a few tiny images the test writes with Pillow (or the script writes); nothing trains.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT, compose
from vae_train.config import MVTecDataConfig, Resize, to_settings
from vae_train.data.arrays import RowSubset
from vae_train.data.sources import ReadContext, read_source
from vae_train.data.sources import mvtec as _registers_the_reader  # noqa: F401
from vae_train.data.sources.folder.split import SPLIT_FILE
from vae_train.errors import ConfigError, DataError

BACKGROUND, DEFECT = 60, 200  # the test images' levels: a flat background with a bright defect block
SIDE = 16
# Each defect image's block (rows, columns) as slices; the mask the test writes covers exactly it.
BLOCKS = {
    "test/crack/000.png": (slice(2, 6), slice(3, 9)),
    "test/crack/001.png": (slice(8, 12), slice(4, 12)),
    "test/scratch/000.png": (slice(10, 14), slice(1, 5)),
    "test/scratch/001.png": (slice(5, 9), slice(6, 10)),  # no mask file: scored at image level only
}
MASKLESS = "test/scratch/001.png"
OTHER_SIZE_MASK = "ground_truth/crack/001_mask.png"  # 32x32 for a 16x16 image
TRAIN_LEVELS = list(range(10, 110, 10))  # one flat level per train/good image, to tell them apart


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def defect_image(block: tuple[slice, slice], height: int = SIDE, width: int = SIDE) -> np.ndarray:
    pixels = np.full((height, width), BACKGROUND, dtype=np.uint8)
    pixels[block] = DEFECT
    return pixels


def block_mask(block: tuple[slice, slice], level: int = 255, height: int = SIDE, width: int = SIDE) -> np.ndarray:
    pixels = np.zeros((height, width), dtype=np.uint8)
    pixels[block] = level
    return pixels


def category(root: Path) -> Path:
    """The tiny category: 10 train/good images, 2 test/good, 2 crack and 2 scratch defects with masks for all
    but one; one mask is stored at level 1 (any level above 0 is the defect), one is twice its image's size."""
    for index, level in enumerate(TRAIN_LEVELS):
        save(root / "train" / "good" / f"{index:03d}.png", np.full((SIDE, SIDE), level, dtype=np.uint8))
    for index in range(2):
        save(root / "test" / "good" / f"{index:03d}.png", np.full((SIDE, SIDE), BACKGROUND + index, dtype=np.uint8))
    for path, block in BLOCKS.items():
        save(root / path, defect_image(block))
    save(root / "ground_truth" / "crack" / "000_mask.png", block_mask(BLOCKS["test/crack/000.png"], level=1))
    rows, columns = BLOCKS["test/crack/001.png"]
    doubled = (slice(2 * rows.start, 2 * rows.stop), slice(2 * columns.start, 2 * columns.stop))
    save(root / OTHER_SIZE_MASK, block_mask(doubled, height=2 * SIDE, width=2 * SIDE))
    save(root / "ground_truth" / "scratch" / "000_mask.png", block_mask(BLOCKS["test/scratch/000.png"]))
    return root


def config(root: Path, cache_dir: Path, **overrides) -> MVTecDataConfig:
    values = {"name": "mvtec", "root": str(root), "cache_dir": str(cache_dir), "decode_workers": 2} | overrides
    return MVTecDataConfig(**values)


def read(settings: MVTecDataConfig, seed: int = 0):
    return read_source(settings, ReadContext(seed=seed))


def first_levels(images) -> set[int]:
    return {int(level) for level in np.asarray(images)[:, 0, 0, 0]}


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def tiny(tmp_path) -> Path:
    return category(tmp_path / "bottle")


# --- the reader ---------------------------------------------------------------------------------------


def test_trains_on_train_good_less_a_seeded_validation_share(tiny, cache_dir):
    source = read(config(tiny, cache_dir, validation_fraction=0.2), seed=5)
    assert len(source.validation.labels) == 2 and len(source.train.labels) == 8  # ceil(0.2 * 10) held out
    train_levels, validation_levels = first_levels(source.train.images), first_levels(source.validation.images)
    assert train_levels | validation_levels == set(TRAIN_LEVELS) and not train_levels & validation_levels
    assert all(path.startswith("train/good/") for path in [*source.train.paths, *source.validation.paths])
    for split in (source.train, source.validation):
        assert isinstance(split.images, RowSubset)  # views of the memory-mapped cache
        assert (split.labels == 0).all()
        # Each path names the file whose pixels the row holds (the train images are flat, one level each).
        expected = [TRAIN_LEVELS[int(Path(path).stem)] for path in split.paths]
        assert np.asarray(split.images)[:, 0, 0, 0].tolist() == expected

    again = read(config(tiny, cache_dir, validation_fraction=0.2), seed=5)
    assert list(again.validation.paths) == list(source.validation.paths)
    held_out = {tuple(sorted(read(config(tiny, cache_dir, validation_fraction=0.2), seed=seed).validation.paths))
                for seed in range(6)}
    assert len(held_out) > 1  # the seed chooses them


def test_a_run_holds_out_its_recorded_validation_images_after_train_good_changes(tiny, cache_dir, tmp_path, caplog):
    settings, run_dir = config(tiny, cache_dir, validation_fraction=0.2), tmp_path / "run"
    drawn = read_source(settings, ReadContext(seed=5, run_dir=run_dir))
    run_dir.mkdir()
    (run_dir / SPLIT_FILE).write_text(drawn.run_files[SPLIT_FILE])  # as the run writes it once it starts
    with open(run_dir / SPLIT_FILE, newline="") as handle:
        recorded = {row["path"]: row["split"] for row in csv.DictReader(handle)}
    assert {f"train/good/{path}" for path, side in recorded.items() if side == "validation"} == \
        set(drawn.validation.paths)
    again = read_source(settings, ReadContext(seed=5, run_dir=run_dir))  # a resumed run, vae-eval
    assert list(again.train.paths) == list(drawn.train.paths)  # the draw's images in the draw's order
    assert list(again.validation.paths) == list(drawn.validation.paths) and again.run_files == {}

    save(tiny / "train" / "good" / "new.png", np.full((SIDE, SIDE), 250, dtype=np.uint8))
    with caplog.at_level(logging.WARNING):
        kept = read_source(settings, ReadContext(seed=5, run_dir=run_dir))
    assert sorted(kept.validation.paths) == sorted(drawn.validation.paths)
    assert sorted(kept.train.paths) == sorted(drawn.train.paths)  # the new image is not used
    assert "gained 1 and lost 0" in caplog.text
    # Without the record, the grown folder holds out another share: ceil(0.2 * 11) = 3 images.
    assert len(read(settings, seed=5).validation.paths) == 3


def test_a_damaged_record_of_the_hold_out_is_named(tiny, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / SPLIT_FILE).write_text("path,label,split\n000.png,good,test\n")
    with pytest.raises(DataError, match=r"split\.csv cannot be read .*other than train or validation.* its "
                                        r"validation images may then include images it trained on"):
        read_source(config(tiny, cache_dir), ReadContext(seed=0, run_dir=run_dir))


def test_tests_on_every_test_image_classed_by_folder(tiny, cache_dir):
    source = read(config(tiny, cache_dir))
    assert source.class_names == ("good", "crack", "scratch")
    assert source.normal_labels == (0,) and source.labelled
    assert sorted(source.test.paths) == sorted(["test/good/000.png", "test/good/001.png", *BLOCKS])
    assert isinstance(source.test.images, RowSubset)
    for path, label in zip(source.test.paths, source.test.labels, strict=True):
        assert source.class_names[label] == Path(path).parent.name


def test_masks_align_with_their_images_and_are_known_except_for_the_maskless_one(tiny, cache_dir, caplog):
    caplog.set_level(logging.INFO, logger="vae_train.data.sources.mvtec")
    test = read(config(tiny, cache_dir)).test
    masks = np.asarray(test.masks)
    assert masks.dtype == np.uint8 and masks.shape == (len(test.paths), SIDE, SIDE, 1)
    assert set(np.unique(masks).tolist()) == {0, 255}  # a mask stored at level 1 is binarized
    images = np.asarray(test.images)
    for index, path in enumerate(test.paths):
        if path.startswith("test/good/"):
            assert test.has_mask[index] and not masks[index].any()  # every pixel of a good image is normal
        elif path == MASKLESS:
            assert not test.has_mask[index] and not masks[index].any()
        else:
            assert test.has_mask[index]
            assert np.array_equal(masks[index, ..., 0], block_mask(BLOCKS[path])), path
            # Aligned with the image's own defect, as decoded (16x16 files: no resampling).
            assert np.array_equal(masks[index, ..., 0] == 255, images[index, ..., 0] == DEFECT), path

    maskless_lines = [record.getMessage() for record in caplog.records if MASKLESS in record.getMessage()]
    assert len(maskless_lines) == 1 and "image level" in maskless_lines[0]
    resized_lines = [record.getMessage() for record in caplog.records if OTHER_SIZE_MASK in record.getMessage()]
    assert len(resized_lines) == 1 and "nearest" in resized_lines[0]
    assert not any("crack/000_mask" in record.getMessage() for record in caplog.records)  # same size: no line


def test_a_subset_keeps_masks_paths_and_labels_together(tiny, cache_dir):
    test = read(config(tiny, cache_dir)).test
    defective = test.select(test.labels > 0)
    assert sorted(defective.paths) == sorted(BLOCKS)
    index = list(defective.paths).index("test/crack/001.png")
    assert np.array_equal(np.asarray(defective.masks)[index, ..., 0], block_mask(BLOCKS["test/crack/001.png"]))


@pytest.mark.parametrize("resize", list(Resize))
def test_masks_are_fitted_to_data_image_size_as_their_images_are(tmp_path, cache_dir, resize):
    """Images of another size and aspect than data.image_size: a mask must be cropped, padded or stretched
    exactly as its image, with nearest neighbour, so its 255s stay on the (blurred) defect; a mask of another
    size and aspect than its own image (b) first takes the image's, or a crop or pad would cut it otherwise."""
    root = tmp_path / "wide"
    height, width, block = 24, 40, (slice(4, 20), slice(16, 28))
    for index in range(3):
        save(root / "train" / "good" / f"{index}.png", np.full((height, width), BACKGROUND, dtype=np.uint8))
    save(root / "test" / "dent" / "a.png", defect_image(block, height, width))
    save(root / "ground_truth" / "dent" / "a_mask.png", block_mask(block, height=height, width=width))
    save(root / "test" / "dent" / "b.png", defect_image(block, height, width))
    # The same block on a 30x30 mask: rows scaled by 30/24, columns by 30/40.
    save(root / "ground_truth" / "dent" / "b_mask.png", block_mask((slice(5, 25), slice(12, 21)), height=30, width=30))
    test = read(config(root, cache_dir, image_size=[12, 12], resize=resize)).test
    for index, path in enumerate(test.paths):
        mask = np.asarray(test.masks)[index, ..., 0]
        assert set(np.unique(mask).tolist()) == {0, 255}
        bright = np.asarray(test.images)[index, ..., 0] > (BACKGROUND + DEFECT) / 2
        overlap = (bright & (mask == 255)).sum() / (bright | (mask == 255)).sum()
        assert overlap >= 0.6, (resize, path, overlap)


def test_composes_with_a_256_square_default(tmp_path):
    data = to_settings(compose(["data=mvtec", f"data.root={tmp_path}"])).data
    assert isinstance(data, MVTecDataConfig)
    assert list(data.image_size) == [256, 256] and data.validation_fraction == 0.1
    with pytest.raises(ConfigError, match="validation_fraction"):
        MVTecDataConfig(name="mvtec", root=str(tmp_path), validation_fraction=1.0)


# --- bad input ----------------------------------------------------------------------------------------


def test_a_root_without_train_good_names_the_layout(tmp_path, cache_dir):
    save(tmp_path / "flat" / "test" / "good" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=r"has no train/good folder.*ground_truth/<defect>/<name>_mask\.png"):
        read(config(tmp_path / "flat", cache_dir))
    with pytest.raises(DataError, match="does not exist"):
        read(config(tmp_path / "missing", cache_dir))


def test_masks_matching_no_test_image_are_named(tiny, cache_dir):
    save(tiny / "ground_truth" / "crack" / "999_mask.png", np.zeros((SIDE, SIDE), dtype=np.uint8))
    save(tiny / "ground_truth" / "scratch" / "001.png", np.zeros((SIDE, SIDE), dtype=np.uint8))  # no _mask
    with pytest.raises(DataError) as raised:
        read(config(tiny, cache_dir))
    message = str(raised.value)
    assert "ground_truth/crack/999_mask.png" in message and "ground_truth/scratch/001.png" in message
    assert "match no test image" in message and "\n" not in message


def test_a_category_without_test_images_is_refused(tiny, cache_dir):
    for path in (tiny / "test").rglob("*.png"):
        path.unlink()
    with pytest.raises(DataError, match="has no test image"):
        read(config(tiny, cache_dir))


def test_a_test_image_in_no_class_folder_is_refused(tiny, cache_dir):
    save(tiny / "test" / "loose.png", np.zeros((SIDE, SIDE), dtype=np.uint8))
    with pytest.raises(DataError, match=r"loose\.png.*test/good or test/<defect>"):
        read(config(tiny, cache_dir))


def test_unreadable_images_and_masks_are_the_folder_readers_errors(tiny, cache_dir):
    (tiny / "ground_truth" / "scratch" / "000_mask.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"000_mask\.png \(data\.root\) does not decode"):
        read(config(tiny, cache_dir))
    skipped = read(config(tiny, cache_dir, skip_unreadable=True)).test  # the image is then scored at image level
    assert not skipped.has_mask[list(skipped.paths).index("test/scratch/000.png")]

    (tiny / "test" / "crack" / "002.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match=r"002\.png \(data\.root\) does not decode"):
        read(config(tiny, cache_dir))


def test_a_validation_share_leaving_no_training_image_is_refused(tiny, cache_dir):
    with pytest.raises(DataError, match=r"validation_fraction=0\.95 .* leaves none to train on.* at most 0\.9"):
        read(config(tiny, cache_dir, validation_fraction=0.95))


# --- scripts/mvtec_like.py ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mvtec_like():
    spec = importlib.util.spec_from_file_location("mvtec_like", PROJECT_ROOT / "scripts" / "mvtec_like.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("colour", [False, True], ids=["grey", "colour"])
def test_the_script_paints_defects_exactly_where_their_masks_are(mvtec_like, tmp_path, cache_dir, colour):
    root, size = tmp_path / "brick", 32
    mvtec_like.main([str(root), "--texture", "brick", "--size", str(size), "--train", "4", "--test-good", "2",
                     "--per-defect", "2", "--seed", "3", *(["--colour"] if colour else [])])
    texture = mvtec_like.texture("brick", colour)
    with open(root / mvtec_like.MANIFEST, newline="") as handle:
        corners = {row["path"]: (int(row["top"]), int(row["left"])) for row in csv.DictReader(handle)}
    assert len([path for path in corners if path.startswith("train/good/")]) == 4
    assert len([path for path in corners if path.startswith("test/good/")]) == 2
    # The test patches come from rows no training patch covers.
    lowest_train_row = max(top + size for path, (top, _) in corners.items() if path.startswith("train/"))
    assert all(top >= lowest_train_row for path, (top, _) in corners.items() if path.startswith("test/"))

    for path, (top, left) in corners.items():
        pixels = np.asarray(Image.open(root / path))
        pixels = pixels[..., np.newaxis] if pixels.ndim == 2 else pixels
        clean = texture[top:top + size, left:left + size]
        assert pixels.shape == clean.shape
        if "/good/" in path:
            assert np.array_equal(pixels, clean), path  # a good patch is the texture, untouched
            continue
        defect, name = Path(path).parent.name, Path(path).stem
        mask = np.asarray(Image.open(root / "ground_truth" / defect / f"{name}_mask.png")) == 255
        changed = (pixels != clean).any(axis=-1)
        assert mask.any(), path
        assert not (changed & ~mask).any(), path  # nothing painted outside the mask
        assert changed[mask].mean() >= 0.75, path  # and the mask is what was painted
        change = np.abs(pixels.astype(int) - clean.astype(int)).max(axis=-1)
        assert change[mask].mean() >= 30, path  # visibly: not a rounding-level nudge

    source = read(config(root, cache_dir))
    assert source.class_names == ("good", "hole", "scratch", "spot")
    assert source.test.has_mask.all()
    defective = np.asarray(source.test.masks)[source.test.labels > 0]
    assert len(defective) == 6 and all(mask.any() for mask in defective)
    assert source.train.images.shape[1:] == (size, size, 3 if colour else 1)
