"""TensorBoard's embedding projector: the files it reads, beside a run's test event files."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_train.evaluation.pictures import tile, to_uint8, write_png

log = logging.getLogger(__name__)

# TensorBoard's projector shows sprites up to 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192
PROJECTOR_TENSOR = "test_codes"
MIN_DIMENSIONS = 3
# Images turned into thumbnail bytes per call: ten thousand 256x256 colour images are 7.9 GB as floats,
# and resizing or rounding them at once copies them a few times over; in chunks, only the bytes accumulate.
THUMBNAIL_CHUNK = 256


def thumbnail_size(count: int, height: int, width: int, limit: int = MAX_SPRITE_SIDE) -> tuple[int, int] | None:
    """(height, width) of each image in a square sprite of ``count`` images no side of which exceeds
    ``limit`` pixels: the images' own size when it fits, else shrunk keeping their aspect ratio; None
    when not even one pixel per image would fit."""
    side = math.ceil(math.sqrt(count))
    longer = max(height, width)
    # Integers throughout: a float scale such as limit / (side * longer) can round the fit down a pixel.
    fitting = min(longer, limit // side)
    if fitting == 0:
        return None
    return max(1, height * fitting // longer), max(1, width * fitting // longer)


def thumbnails(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """``images`` as uint8, shrunk to ``height`` x ``width`` pixels if they are larger, each thumbnail
    pixel the mean of the pixels it covers (area resampling: thin strokes fade rather than vanish or alias)."""
    # Resampled in [0, 1] whatever the images' type, so bytes and probabilities come out alike.
    scale = 1 / 255 if images.dtype == np.uint8 else 1.0

    def as_thumbnails(chunk: np.ndarray) -> np.ndarray:
        if chunk.shape[1:3] == (height, width):
            return to_uint8(chunk)
        return to_uint8(tf.image.resize(chunk.astype(np.float32) * scale, (height, width), method="area").numpy())

    return np.concatenate([as_thumbnails(images[start:start + THUMBNAIL_CHUNK])
                           for start in range(0, len(images), THUMBNAIL_CHUNK)])


class EmbeddingProjector:
    """The files of TensorBoard's embedding projector in one run folder of the event files: the
    codes (``codes.tsv``), their labels (``metadata.tsv``), a sprite of the images and the config.
    ``sprite_limit``: the longest sprite side the projector shows, in pixels. Nothing is written before
    the first codes: a run refused at its start (another model's checkpoints) leaves its folder as it was."""

    def __init__(self, folder: Path, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                 sprite_limit: int = MAX_SPRITE_SIDE):
        self.folder = Path(folder)
        self.images, self.labels, self.class_names = images, labels, class_names
        self.sprite_limit = sprite_limit
        self.sprite_image_size = thumbnail_size(len(images), *images.shape[1:3], limit=sprite_limit)
        self._described = False

    def _describe(self) -> None:
        """The labels, the sprite and the config: what the projector needs beside the codes."""
        from tensorboard.plugins import projector

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "metadata.tsv", "w") as handle:
            handle.write("label\tclass\n")
            handle.writelines(f"{label}\t{self.class_names[label]}\n" for label in self.labels)
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = PROJECTOR_TENSOR
        embedding.tensor_path = "codes.tsv"
        embedding.metadata_path = "metadata.tsv"
        if self.sprite_image_size is not None:
            self._write_sprite(self.images, embedding)
        else:
            log.warning("No sprite for the projector: %d images do not fit its %d-pixel limit at one pixel each.",
                        len(self.images), self.sprite_limit)
        projector.visualize_embeddings(str(self.folder), config)
        self._described = True

    def _write_sprite(self, images: np.ndarray, embedding) -> None:
        """The images (grey or colour, as they are) on a square grid, row by row, shrunk to thumbnails
        if they would not fit the projector's limit otherwise."""
        height, width = self.sprite_image_size
        if (height, width) != images.shape[1:3]:
            log.info("Projector sprite: %d images of %dx%d pixels shown as %dx%d thumbnails to fit its "
                     "%d-pixel limit.", len(images), images.shape[1], images.shape[2], height, width, self.sprite_limit)
        # Bytes before the grid: a full sprite of floats would be 800 MB for colour.
        small = thumbnails(images, height, width)
        side = math.ceil(math.sqrt(len(images)))
        padded = np.zeros((side * side, *small.shape[1:]), np.uint8)
        padded[:len(small)] = small
        write_png(self.folder / "sprite.png", tile(padded, columns=side, padding=0))
        embedding.sprite.image_path = "sprite.png"
        # The thumbnails' size, not the images': the projector cuts the sprite into cells of this size.
        embedding.sprite.single_image_dim.extend([width, height])

    def write(self, codes: np.ndarray) -> None:
        """The codes, as columns of ``codes.tsv``; codes of fewer than three dimensions get zero columns
        up to three: the projector draws nothing for two (its PCA asks for three components)."""
        if not self._described:
            self._describe()
        padded = np.zeros((len(codes), max(MIN_DIMENSIONS, codes.shape[1])), codes.dtype)
        padded[:, :codes.shape[1]] = codes
        np.savetxt(self.folder / "codes.tsv", padded, delimiter="\t", fmt="%.6g")
