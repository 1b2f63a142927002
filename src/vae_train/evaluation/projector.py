"""TensorBoard's embedding projector: the files it reads, beside a run's test event files."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from vae_train.evaluation.pictures import tile, write_png

log = logging.getLogger(__name__)

# TensorBoard's projector shows sprites up to 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192
PROJECTOR_TENSOR = "test_codes"
MIN_DIMENSIONS = 3


class EmbeddingProjector:
    """The files of TensorBoard's embedding projector in one run folder of the event files: the
    codes (``codes.tsv``), their labels (``metadata.tsv``), a sprite of the images and the config."""

    def __init__(self, folder: Path, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]):
        from tensorboard.plugins import projector

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "metadata.tsv", "w") as handle:
            handle.write("label\tclass\n")
            handle.writelines(f"{label}\t{class_names[label]}\n" for label in labels)
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = PROJECTOR_TENSOR
        embedding.tensor_path = "codes.tsv"
        embedding.metadata_path = "metadata.tsv"
        side = math.ceil(math.sqrt(len(images)))
        if side * max(images.shape[1:3]) <= MAX_SPRITE_SIDE:
            padded = np.zeros((side * side, *images.shape[1:]), images.dtype)
            padded[:len(images)] = images
            write_png(self.folder / "sprite.png", tile(padded, columns=side, padding=0))
            embedding.sprite.image_path = "sprite.png"
            embedding.sprite.single_image_dim.extend([images.shape[2], images.shape[1]])  # width, height
        else:
            log.warning("No sprite for the projector: %d images exceed its %d-pixel limit.", len(images),
                        MAX_SPRITE_SIDE)
        projector.visualize_embeddings(str(self.folder), config)

    def write(self, codes: np.ndarray) -> None:
        """The codes, as columns of ``codes.tsv``; codes of fewer than three dimensions get zero columns
        up to three: the projector draws nothing for two (its PCA asks for three components)."""
        padded = np.zeros((len(codes), max(MIN_DIMENSIONS, codes.shape[1])), codes.dtype)
        padded[:, :codes.shape[1]] = codes
        np.savetxt(self.folder / "codes.tsv", padded, delimiter="\t", fmt="%.6g")
