"""A large generated folder of colour images, for measuring memory and the input pipeline on a data
set bigger than the ones that ship: ``count`` PNG files of ``size`` x ``size`` x 3 in ten class
folders, each a smooth colour gradient with a class-coloured square (cheap to write, compressible).

    python scripts/synthetic_folder.py /tmp/big --count 200000 --size 64
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10


def image(index: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(index)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    colour = rng.random(3, dtype=np.float32)
    pixels = (ramp[:, None, None] * colour + ramp[None, :, None] * (1 - colour)) * 200
    label = index % CLASSES
    top, left = rng.integers(0, size // 2, 2)
    pixels[top:top + size // 4, left:left + size // 4] = [(label * 25) % 256, 255 - label * 20, 128]
    return pixels.astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=64)
    arguments = parser.parse_args()
    for label in range(CLASSES):
        (arguments.out / f"class_{label}").mkdir(parents=True, exist_ok=True)

    def write(index: int) -> None:
        path = arguments.out / f"class_{index % CLASSES}" / f"{index:07d}.png"
        Image.fromarray(image(index, arguments.size)).save(path, compress_level=1)

    with ThreadPoolExecutor() as pool:
        for _ in pool.map(write, range(arguments.count), chunksize=256):
            pass
    print(f"{arguments.count} images in {arguments.out}")


if __name__ == "__main__":
    main()
