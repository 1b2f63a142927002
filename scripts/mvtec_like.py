"""A small visual-inspection category in the exact MVTec AD layout, cut from a real texture that
scikit-image ships inside its wheel (a dev dependency): brick, grass or gravel, 512x512 grey photographs.

Its patches are drawn at seeded random positions, the training patches from the texture's top rows and
the test patches from its bottom rows, so no test pixel was seen in training. The defects are synthetic:
painted onto test patches by this script, not photographed.

    scratch  a thin bright or dark line at a random angle
    hole     a dark filled ellipse, darkest at its centre
    spot     a blotch shifting the intensity (or, with --colour, the colour), strongest at its centre

Each defect's mask (ground_truth/<defect>/<name>_mask.png, 0/255) is exactly the pixels it painted.
``patches.csv`` beside the layout's folders records where in the texture each patch was cut, so the
clean patch under a defect can be cut again::

    python scripts/mvtec_like.py /tmp/mvtec_brick --texture brick
    vae-train data=mvtec data.root=/tmp/mvtec_brick data.image_size=[128,128] ...
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel")
# --colour's tint of each grey texture (a multiplier per RGB channel), near the material's own colour.
TINTS = {"brick": (1.0, 0.55, 0.42), "grass": (0.5, 0.9, 0.35), "gravel": (0.9, 0.82, 0.68)}
# The share of the texture's rows the test patches come from, at least a patch and a half (else every test
# patch would be one of a few columns of one strip).
TEST_SHARE = 0.25
MANIFEST = "patches.csv"


@dataclass(frozen=True)
class Paint:
    """A defect before it is blended in: the patch fully defective (``painted``) and how much of it
    shows at each pixel (``alpha``, 0 outside the defect: the mask is ``alpha > 0``)."""

    alpha: np.ndarray  # (size, size) float in [0, 1]
    painted: np.ndarray  # (size, size, channels) float

    def onto(self, patch: np.ndarray) -> np.ndarray:
        clean = patch.astype(np.float64)
        blended = clean + self.alpha[..., np.newaxis] * (self.painted - clean)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def texture(name: str, colour: bool) -> np.ndarray:
    """The texture as (height, width, channels) uint8: 1 channel, or 3 tinted ones with ``colour``."""
    import skimage.data

    grey = getattr(skimage.data, name)().astype(np.float64)
    if not colour:
        return grey.astype(np.uint8)[..., np.newaxis]
    return np.clip(np.rint(grey[..., np.newaxis] * np.array(TINTS[name])), 0, 255).astype(np.uint8)


def row_ranges(height: int, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The rows (start, stop) the training patches and the test patches lie in, disjoint."""
    test_rows = max(round(height * TEST_SHARE), size + size // 2)
    if height - test_rows < size:
        raise ValueError(f"--size {size} is too large for a {height}-row texture: the training rows "
                         f"({height - test_rows}) must hold a patch; use --size {height // 3} or less.")
    return (0, height - test_rows), (height - test_rows, height)


def corners(rows: tuple[int, int], width: int, size: int, count: int, rng: np.random.Generator) -> list[tuple]:
    """``count`` seeded (top, left) corners of size x size patches lying within ``rows``."""
    tops = rng.integers(rows[0], rows[1] - size + 1, count)
    lefts = rng.integers(0, width - size + 1, count)
    return list(zip(tops.tolist(), lefts.tolist(), strict=True))


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel centre's (row, column)."""
    return np.mgrid[0:size, 0:size].astype(np.float64)


def centre_point(size: int, rng: np.random.Generator) -> np.ndarray:
    """A defect's centre, in the middle 60% of the patch so that most of the defect lies inside it."""
    return rng.uniform(0.2 * size, 0.8 * size, 2)


def scratch(patch: np.ndarray, rng: np.random.Generator) -> Paint:
    size = patch.shape[0]
    rows, columns = pixel_grid(size)
    centre, angle = centre_point(size, rng), rng.uniform(0, np.pi)
    half_length, half_width = rng.uniform(0.2, 0.4) * size, rng.uniform(0.5, 1.25)
    direction = np.array([np.sin(angle), np.cos(angle)])
    offset_rows, offset_columns = rows - centre[0], columns - centre[1]
    # The distance to the segment: along it clamped to its half length, across it as it is.
    along = np.clip(offset_rows * direction[0] + offset_columns * direction[1], -half_length, half_length)
    distance = np.hypot(offset_rows - along * direction[0], offset_columns - along * direction[1])
    level = rng.uniform(225, 255) if rng.random() < 0.5 else rng.uniform(0, 30)
    return Paint((distance <= half_width).astype(np.float64), np.full(patch.shape, level))


def hole(patch: np.ndarray, rng: np.random.Generator) -> Paint:
    size = patch.shape[0]
    rows, columns = pixel_grid(size)
    centre, angle = centre_point(size, rng), rng.uniform(0, np.pi)
    semi_axes = np.maximum(rng.uniform(0.08, 0.2, 2) * size, 2.0)
    # The ellipse's own coordinates: rotated by its angle, scaled by its semi-axes; inside where radius <= 1.
    along = (rows - centre[0]) * np.sin(angle) + (columns - centre[1]) * np.cos(angle)
    across = (rows - centre[0]) * np.cos(angle) - (columns - centre[1]) * np.sin(angle)
    radius = np.hypot(along / semi_axes[0], across / semi_axes[1])
    shading = 5 + 20 * np.minimum(radius, 1)  # a hole is darkest where it is deepest
    return Paint((radius <= 1).astype(np.float64), np.repeat(shading[..., np.newaxis], patch.shape[2], axis=2))


def spot(patch: np.ndarray, rng: np.random.Generator) -> Paint:
    size, channels = patch.shape[0], patch.shape[2]
    rows, columns = pixel_grid(size)
    centre = centre_point(size, rng)
    spot_radius = max(rng.uniform(0.1, 0.2) * size, 2.5)
    radius = np.hypot(rows - centre[0], columns - centre[1]) / spot_radius
    # A soft edge that still changes its outermost pixels visibly, so that the mask is what changed.
    alpha = np.where(radius < 1, 0.4 + 0.6 * (1 - radius**2), 0.0)
    if channels == 1:
        shift = np.array([rng.choice([-1, 1]) * rng.uniform(70, 110)])
    else:  # a stain of another colour: each channel shifted its own way, the largest by 70..110 levels
        direction = rng.uniform(-1, 1, channels)
        shift = direction / np.abs(direction).max() * rng.uniform(70, 110)
    return Paint(alpha, patch.astype(np.float64) + shift)


DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator], Paint]] = {
    "scratch": scratch,
    "hole": hole,
    "spot": spot,
}


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(path)


def build(out: Path, texture_name: str, size: int, train: int, test_good: int, per_defect: int, colour: bool,
          seed: int) -> None:
    image = texture(texture_name, colour)
    rng = np.random.default_rng(seed)
    train_rows, test_rows = row_ranges(image.shape[0], size)
    manifest = [("path", "top", "left")]

    def cut(corner: tuple[int, int]) -> np.ndarray:
        top, left = corner
        return image[top:top + size, left:left + size]

    for index, corner in enumerate(corners(train_rows, image.shape[1], size, train, rng)):
        name = f"train/good/{index:03d}.png"
        save(out / name, cut(corner))
        manifest.append((name, *corner))
    for index, corner in enumerate(corners(test_rows, image.shape[1], size, test_good, rng)):
        name = f"test/good/{index:03d}.png"
        save(out / name, cut(corner))
        manifest.append((name, *corner))
    for defect, paint in DEFECTS.items():
        for index, corner in enumerate(corners(test_rows, image.shape[1], size, per_defect, rng)):
            patch = cut(corner)
            defect_paint = paint(patch, rng)
            name = f"test/{defect}/{index:03d}.png"
            save(out / name, defect_paint.onto(patch))
            mask = np.where(defect_paint.alpha > 0, 255, 0).astype(np.uint8)[..., np.newaxis]
            save(out / "ground_truth" / defect / f"{index:03d}_mask.png", mask)
            manifest.append((name, *corner))
    with open(out / MANIFEST, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(manifest)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the category folder to write (data.root)")
    parser.add_argument("--texture", choices=TEXTURES, default="brick")
    parser.add_argument("--size", type=int, default=128, help="patch side in pixels")
    parser.add_argument("--train", type=int, default=400, help="good training patches")
    parser.add_argument("--test-good", type=int, default=40, help="good test patches")
    parser.add_argument("--per-defect", type=int, default=30, help="test patches of each kind of defect")
    parser.add_argument("--colour", action="store_true", help="tint the grey texture near its material's colour")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    if min(arguments.size, arguments.train) < 1 or min(arguments.test_good, arguments.per_defect) < 0:
        parser.error("--size and --train must be positive, --test-good and --per-defect not negative")
    try:
        build(arguments.out, arguments.texture, arguments.size, arguments.train, arguments.test_good,
              arguments.per_defect, arguments.colour, arguments.seed)
    except ValueError as error:
        parser.error(str(error))
    test_count = arguments.test_good + len(DEFECTS) * arguments.per_defect
    side = arguments.size
    print(f"{arguments.texture}: {arguments.train} training and {test_count} test patches of {side}x{side} in "
          f"{arguments.out}; vae-train data=mvtec data.root={arguments.out} data.image_size=[{side},{side}]")


if __name__ == "__main__":
    main()
