"""A real colour data set in the ``data=folder`` layout, cut from the photographs that scikit-image
ships inside its wheel (a dev dependency): astronaut, chelsea, coffee, rocket, the Hubble deep field,
immunohistochemistry, retina and colorwheel. Each photograph is a class; its patches are drawn at
seeded random positions, the training patches from its top three quarters and the test patches from
its bottom quarter, so no test pixel was seen in training.

    python scripts/skimage_patches.py /tmp/photos --size 64 --per-image 500
    vae-train data=folder data.root=/tmp/photos/train data.test_root=/tmp/photos/test ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
               "colorwheel")
TRAIN_SHARE = 0.75  # of each photograph's height; the rest gives the test patches


def photograph(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()[..., :3]


def patches(image: np.ndarray, rows: tuple[int, int], size: int, count: int, rng: np.random.Generator):
    """``count`` size x size patches whose top-left corners lie in ``rows`` (a range of the image's rows)."""
    top = rng.integers(rows[0], rows[1] - size + 1, count)
    left = rng.integers(0, image.shape[1] - size + 1, count)
    for row, column in zip(top, left, strict=True):
        yield image[row:row + size, column:column + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--per-image", type=int, default=500, help="training patches per photograph")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    rng = np.random.default_rng(arguments.seed)
    for name in PHOTOGRAPHS:
        image = photograph(name)
        cut = int(image.shape[0] * TRAIN_SHARE)
        for split, rows, count in (("train", (0, cut), arguments.per_image),
                                   ("test", (cut, image.shape[0]), arguments.per_image // 4)):
            folder = arguments.out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index, patch in enumerate(patches(image, rows, arguments.size, count, rng)):
                Image.fromarray(patch).save(folder / f"{index:05d}.png")
    print(f"{len(PHOTOGRAPHS)} classes in {arguments.out}/train and {arguments.out}/test")


if __name__ == "__main__":
    main()
