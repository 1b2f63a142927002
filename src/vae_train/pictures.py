"""Pictures of what a model learned: reconstructions, samples, the latent manifold and a scatter
of the codes, rendered as arrays for TensorBoard (:class:`TensorBoardPictures`, an epoch-end hook
of the Trainer) and for PNG files (``vae-eval``); plus TensorBoard's embedding projector.

Every picture is drawn from fixed inputs (the first test images, prior draws seeded once, a
fixed grid of codes), so the pictures of successive epochs differ only by what the model learned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from vae_train.config import EvaluationConfig, ManifoldConfig, ManifoldKind, Projection
from vae_train.evaluation import encode
from vae_train.models import Autoencoder
from vae_train.models.base import IMAGE_SHAPE
from vae_train.training.summaries import TensorBoardWriters

if TYPE_CHECKING:
    from vae_train.training.loop import EpochRecord

log = logging.getLogger(__name__)

GRID_PADDING = 2  # pixels between the images of a grid
GRID_FILL = 0.5  # grey, distinct from both the black background and the white strokes of digits
ENCODE_BATCH = 512
# TensorBoard's projector shows sprites up to 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192
PROJECTOR_TENSOR = "test_codes"


def tile(images: np.ndarray, columns: int, padding: int = GRID_PADDING, fill: float = GRID_FILL) -> np.ndarray:
    """``(count, height, width, channels)`` images in rows of ``columns`` as one image, row by row."""
    count, height, width, channels = images.shape
    rows = math.ceil(count / columns)
    grid = np.full((rows * height + (rows - 1) * padding, columns * width + (columns - 1) * padding, channels),
                   fill, dtype=images.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + padding), column * (width + padding)
        grid[top:top + height, left:left + width] = image
    return grid


MANIFOLD_AXES: dict[ManifoldKind, Callable[[ManifoldConfig], np.ndarray]] = {
    ManifoldKind.quantiles: lambda config: np.array(
        [NormalDist().inv_cdf(p) for p in np.linspace(*config.quantile_range, config.size)]),
    ManifoldKind.square: lambda config: np.linspace(*config.square_range, config.size),
}


def manifold_codes(config: ManifoldConfig) -> np.ndarray:
    """``size * size`` 2-D codes, row by row: the first coordinate grows to the right and the second
    upwards, as on the axes of the latent scatter."""
    axis = MANIFOLD_AXES[config.kind](config)
    first, second = np.meshgrid(axis, axis[::-1])
    return np.stack([first.ravel(), second.ravel()], axis=-1).astype(np.float32)


def _principal_components(codes: np.ndarray) -> np.ndarray:
    centered = codes - codes.mean(axis=0)
    _, _, directions = np.linalg.svd(centered, full_matrices=False)
    return centered @ directions[:2].T


PROJECTIONS: dict[Projection, Callable[[np.ndarray], np.ndarray]] = {
    Projection.pca: _principal_components,
    Projection.first_two: lambda codes: codes[:, :2],
}
_AXIS_NAMES = {Projection.pca: ("principal component 1", "principal component 2"),
               Projection.first_two: ("z[0]", "z[1]")}


def scatter_coordinates(codes: np.ndarray, labels: np.ndarray, projection: Projection
                        ) -> tuple[np.ndarray, tuple[str, str]]:
    """Points in 2-D for the latent scatter and the names of its axes."""
    latent_dim = codes.shape[1]
    if latent_dim == 1:  # a strip per class
        return np.column_stack([codes[:, 0], labels]), ("z[0]", "class")
    if latent_dim == 2:
        return codes, ("z[0]", "z[1]")
    return PROJECTIONS[projection](codes), _AXIS_NAMES[projection]


def scatter_figure(points: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                   axis_names: tuple[str, str], title: str):
    """A matplotlib figure: the points coloured by class, with a legend of the class names."""
    # The object-oriented API on an Agg canvas: no pyplot global state, no display needed.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 5.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = colormaps["tab10"]
    for label, name in enumerate(class_names):
        chosen = labels == label
        axes.scatter(points[chosen, 0], points[chosen, 1], s=4, color=colours(label % 10), alpha=0.6,
                     linewidths=0, label=name)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize="small", frameon=False)
    axes.set_xlabel(axis_names[0])
    axes.set_ylabel(axis_names[1])
    axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    return figure


def rasterize(figure) -> np.ndarray:
    """A matplotlib figure as an RGB uint8 image."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def first_images(dataset: tf.data.Dataset, count: int | None) -> np.ndarray:
    """The first ``count`` images of a batched dataset (all for None) as one array."""
    batches, taken = [], 0
    for batch in dataset:
        batches.append(batch.numpy())
        taken += len(batches[-1])
        if count is not None and taken >= count:
            break
    return np.concatenate(batches)[:count]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as 0..255; a model gone non-finite still gets a picture (NaN as black)."""
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(np.nan_to_num(image, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> None:
    tf.io.write_file(str(path), tf.io.encode_png(to_uint8(image)))


class Pictures:
    """Renders the pictures of ``config`` for one model from fixed test images and fixed codes."""

    def __init__(self, model: Autoencoder, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                 config: EvaluationConfig, seed: int):
        self.model = model
        self.config = config
        self.class_names = class_names
        self.images = images
        self.originals = images[:config.reconstructions]
        self.code_images = images[:config.code_examples]
        self.code_labels = labels[:len(self.code_images)]
        draws = config.samples if model.variational else 0
        self.prior_draws = np.random.default_rng(seed).standard_normal((draws, model.latent_dim)).astype(np.float32)
        two_dimensional = model.latent_dim == 2 and config.manifold.size > 0
        self.manifold = manifold_codes(config.manifold) if two_dimensional else None

    @classmethod
    def from_dataset(cls, model: Autoencoder, dataset: tf.data.Dataset, labels: np.ndarray,
                     class_names: tuple[str, ...], config: EvaluationConfig, seed: int) -> Pictures:
        """Pictures of the first images of ``dataset`` (batched, in the order of ``labels``)."""
        needed = None if config.code_examples is None else max(config.reconstructions, config.code_examples,
                                                                ENCODE_BATCH)
        return cls(model, first_images(dataset, needed), labels, class_names, config, seed)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Pixel probabilities of the decodings of ``codes``."""
        return tf.sigmoid(self.model.decode(tf.constant(codes))).numpy()

    def codes(self) -> np.ndarray:
        """Codes (a VAE's posterior means) of the fixed test images of the scatter and the projector."""
        return encode(self.model, tf.data.Dataset.from_tensor_slices(self.code_images).batch(ENCODE_BATCH))

    def render(self, codes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each picture as a ``(height, width, channels)`` array: floats in [0, 1], or RGB uint8.

        ``codes`` are those of :meth:`codes`, when the caller has them already.
        """
        pictures = {}
        if len(self.originals):
            reconstructions = tf.sigmoid(self.model(tf.constant(self.originals))).numpy()
            pictures["reconstructions"] = tile(np.concatenate([self.originals, reconstructions]),
                                               columns=len(self.originals))
        if len(self.prior_draws):
            columns = math.ceil(math.sqrt(len(self.prior_draws)))
            pictures["samples"] = tile(self.decode(self.prior_draws), columns=columns)
        if self.manifold is not None:
            pictures["manifold"] = tile(self.decode(self.manifold), columns=self.config.manifold.size, padding=0)
        if len(self.code_images):
            codes = self.codes() if codes is None else codes
            points, axis_names = scatter_coordinates(codes, self.code_labels, self.config.projection)
            what = "posterior means" if self.model.variational else "codes"
            pictures["latent_scatter"] = rasterize(scatter_figure(
                points, self.code_labels, self.class_names, axis_names,
                f"{what} of {len(codes)} test images ({self.model.latent_dim}-D)"))
        return pictures


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
        if side * IMAGE_SHAPE[0] <= MAX_SPRITE_SIDE:
            padded = np.zeros((side * side, *images.shape[1:]), images.dtype)
            padded[:len(images)] = images
            write_png(self.folder / "sprite.png", tile(padded, columns=side, padding=0))
            embedding.sprite.image_path = "sprite.png"
            embedding.sprite.single_image_dim.extend(IMAGE_SHAPE[:2])
        else:
            log.warning("No sprite for the projector: %d images exceed its %d-pixel limit.", len(images),
                        MAX_SPRITE_SIDE)
        projector.visualize_embeddings(str(self.folder), config)

    def write(self, codes: np.ndarray) -> None:
        np.savetxt(self.folder / "codes.tsv", codes, delimiter="\t", fmt="%.6g")


class TensorBoardPictures:
    """Epoch-end hook of the Trainer: the pictures into ``tensorboard/test`` after every
    ``evaluation.every_n_epochs`` epochs and after the last, the projector's codes, and optionally
    histograms of the weights and of the gradients of the objective on a fixed test batch."""

    def __init__(self, pictures: Pictures, writers: TensorBoardWriters, last_epoch: int,
                 projector: EmbeddingProjector | None = None, seed: int = 0):
        self.pictures = pictures
        self.writers = writers
        self.config = pictures.config
        self.last_epoch = last_epoch
        self.projector = projector
        self.seed = seed

    @classmethod
    def for_run(cls, model: Autoencoder, test: tf.data.Dataset, labels: np.ndarray, class_names: tuple[str, ...],
                config: EvaluationConfig, writers: TensorBoardWriters, last_epoch: int, seed: int
                ) -> TensorBoardPictures:
        """The hook for a training run, its projector in the test run of ``writers``."""
        pictures = Pictures.from_dataset(model, test, labels, class_names, config, seed)
        projector = None
        if config.projector and len(pictures.code_images):
            projector = EmbeddingProjector(writers.root / "test", pictures.code_images, pictures.code_labels,
                                           class_names)
        return cls(pictures, writers, last_epoch, projector, seed)

    def __call__(self, record: EpochRecord) -> None:
        if record.epoch % self.config.every_n_epochs and record.epoch != self.last_epoch:
            return
        codes = self.pictures.codes() if len(self.pictures.code_images) else None
        # Rounded here, not by TensorBoard (which truncates), so the PNGs of vae-eval are the same.
        pictures = {name: to_uint8(picture) for name, picture in self.pictures.render(codes).items()}
        self.writers.images("test", record.step, pictures)
        if self.projector is not None and codes is not None:
            self.projector.write(codes)
        if self.config.histograms:
            self.writers.histograms("train", record.step, self._histograms())
        self.writers.flush()

    def _histograms(self) -> dict[str, tf.Tensor]:
        model = self.pictures.model
        images = tf.constant(self.pictures.images[:ENCODE_BATCH])
        noise = tf.random.Generator.from_seed(self.seed)
        with tf.GradientTape() as tape:
            objective = tf.reduce_mean(model.loss_terms(images, training=False, noise=noise)["objective"])
        gradients = tape.gradient(objective, model.trainable_variables)
        # Keras names a variable after its layer only ("z_mean/kernel"); the part makes it unique.
        part_of = {id(variable): part.name for part in (model.encoder, model.decoder)
                   for variable in part.trainable_variables}
        values = {}
        for variable, gradient in zip(model.trainable_variables, gradients, strict=True):
            name = f"{part_of[id(variable)]}/{variable.path}"
            values[f"weights/{name}"] = variable
            values[f"gradients/{name}"] = gradient
        return values
