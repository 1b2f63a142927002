"""Write an IDX data set (MNIST, Fashion-MNIST) out as PNG files in class folders, the layout
``data=folder`` reads: ``<out>/train/<class>/<index>.png`` and ``<out>/test/<class>/<index>.png``.

Training on ``data=folder data.root=<out>/train data.test_root=<out>/test`` then sees the same images,
in the same order within each class, as ``data=mnist`` does; docs/results.md compares the two.

    python scripts/mnist_to_png.py ../shared/datasets/mnist /tmp/mnist_png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from vae_train.data.idx import read_images, read_labels
from vae_train.data.sources.mnist import SPLIT_FILES


def write_split(images, labels, folder: Path) -> None:
    # Zero-padded indices keep the folder's sorted order the file's order.
    width = len(str(len(images)))
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        class_folder = folder / str(label)
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(class_folder / f"{index:0{width}d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("idx_folder", type=Path, help="a folder holding the four IDX files")
    parser.add_argument("out", type=Path, help="where to write train/ and test/")
    arguments = parser.parse_args()
    for split in ("train", "test"):
        images = read_images(arguments.idx_folder / SPLIT_FILES[f"{split}_images"])
        labels = read_labels(arguments.idx_folder / SPLIT_FILES[f"{split}_labels"])
        write_split(images, labels, arguments.out / split)
        print(f"{split}: {len(images)} images in {arguments.out / split}")


if __name__ == "__main__":
    main()
