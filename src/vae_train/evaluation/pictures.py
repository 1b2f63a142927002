"""Pictures of what a model learned: reconstructions, samples, the latent manifold and a scatter
of the codes, rendered as arrays, for TensorBoard (the epoch-end hook of a run,
``vae_train.run.epoch_pictures``) and for PNG files (``vae-eval``).

Every picture is drawn from fixed inputs (the first test images, prior draws seeded once, a
fixed grid of codes), so the pictures of successive epochs differ only by what the model learned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist

import numpy as np
import tensorflow as tf

from vae_train.config import EvaluationConfig, Interpolation, ManifoldConfig, ManifoldKind, Projection
from vae_train.data.corruption import Corrupt
from vae_train.data.pipeline import evaluation_batch, without_autotuning
from vae_train.evaluation.codes import encode
from vae_train.evaluation.latent_walks import (
    dimensions_by_variance,
    interpolation_codes,
    pairs_of_different_classes,
    traversal_codes,
)
from vae_train.models import Autoencoder
from vae_train.runtime.functions import run_function

log = logging.getLogger(__name__)

GRID_PADDING = 2  # pixels between the images of a grid
GRID_FILL = 0.5  # grey, distinct from both the black background and the white strokes of digits
# The pictures' corruption draw, apart from the evaluator's (both seeded by the run's seed).
CORRUPTION_SEED_OFFSET = 15_485_863
# Images encoded per call for the pictures and the codes: large batches, few calls.
ENCODE_BATCH = 512
# The first test images the latent walks choose their pairs and their traversed image from.
WALK_POOL = 512
# The test images kept for the scatter and the projector when evaluation.code_examples is null: every
# one of MNIST's 10,000, some 5,000 of 64x64x3, some 300 of 256x256x3.
CODE_IMAGE_BYTES = 256 * 2**20
MAX_TRAVERSAL_DIMS = 10  # rows of the traversal picture when evaluation.traversal_dims is null


def tile(images: np.ndarray, columns: int, padding: int = GRID_PADDING, fill: float = GRID_FILL) -> np.ndarray:
    """``(count, height, width, channels)`` images in rows of ``columns`` as one image, row by row."""
    count, height, width, channels = images.shape
    rows = math.ceil(count / columns)
    # ``fill`` is a probability; images already in bytes (a sprite's thumbnails) get the same grey in bytes.
    fill_value = round(fill * 255) if images.dtype == np.uint8 else fill
    grid = np.full((rows * height + (rows - 1) * padding, columns * width + (columns - 1) * padding, channels),
                   fill_value, dtype=images.dtype)
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


# TensorBoard shows an image at its own size in a card some 400 pixels wide: smaller pictures are
# enlarged to about that size, so a 28x28 digit is more than a few dots.
TENSORBOARD_PIXELS = 400


def enlarged(picture: np.ndarray, target: int = TENSORBOARD_PIXELS) -> np.ndarray:
    """``picture`` scaled up by the smallest integer factor that brings its longer side to ``target``
    pixels or more, each pixel a block (nearest neighbour), its channels (grey or RGB) kept. A picture
    that large already (a grid of 256x256 colour images) is returned as it is, neither copied nor shrunk."""
    factor = math.ceil(target / max(picture.shape[:2]))
    if factor <= 1:
        return picture
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def write_png(path: Path, image: np.ndarray) -> None:
    """A ``(height, width, channels)`` picture as a PNG file: grey for one channel, RGB for three."""
    tf.io.write_file(str(path), tf.io.encode_png(to_uint8(image)))


@run_function(reduce_retracing=True)
def _probabilities(model: Autoencoder, codes: tf.Tensor) -> tf.Tensor:
    return model.mean_images(model.decode(codes))


class Pictures:
    """Renders the pictures of ``config`` for one model from fixed test images and fixed codes."""

    def __init__(self, model: Autoencoder, images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                 config: EvaluationConfig, seed: int, corrupt: Corrupt | None = None):
        self.model = model
        self.config = config
        self.class_names = class_names
        self.images = images
        self.originals = images[:config.reconstructions]
        # A denoiser's: the same originals, corrupted once by a seeded draw.
        self.corrupted = None
        if corrupt is not None and len(self.originals):
            self.corrupted = corrupt(tf.constant(self.originals, tf.float32),
                                     tf.random.Generator.from_seed(seed + CORRUPTION_SEED_OFFSET)).numpy()
        self.code_images = images[:config.code_examples]
        self.code_labels = labels[:len(self.code_images)]
        # The latent walks: pairs of images of different classes among the first ones, the first image
        # traversed along the dimensions its neighbours' codes vary most along.
        self.walk_images = images[:WALK_POOL]
        self.pairs = pairs_of_different_classes(labels[:len(self.walk_images)], config.interpolations)
        self.interpolation = config.interpolation or (Interpolation.slerp if model.variational
                                                      else Interpolation.linear)
        self.traversal_dims = (min(model.latent_dim, MAX_TRAVERSAL_DIMS) if config.traversal_dims is None
                               else config.traversal_dims)
        draws = config.samples if model.variational else 0
        self.prior_draws = np.random.default_rng(seed).standard_normal((draws, model.latent_dim)).astype(np.float32)
        two_dimensional = model.latent_dim == 2 and config.manifold.size > 0
        self.manifold = manifold_codes(config.manifold) if two_dimensional else None

    @classmethod
    def from_dataset(cls, model: Autoencoder, dataset: tf.data.Dataset, labels: np.ndarray,
                     class_names: tuple[str, ...], config: EvaluationConfig, seed: int,
                     corrupt: Corrupt | None = None) -> Pictures:
        """Pictures of the first images of ``dataset`` (batched, in the order of ``labels``)."""
        if config.code_examples is None:  # all the test images, as far as CODE_IMAGE_BYTES of floats go
            needed = max(ENCODE_BATCH, CODE_IMAGE_BYTES // (4 * math.prod(model.image_shape)))
        else:
            needed = max(config.reconstructions, config.code_examples, ENCODE_BATCH)
        return cls(model, first_images(dataset, needed), labels, class_names, config, seed, corrupt)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Pixel probabilities of the decodings of ``codes``, in compiled batches of bounded size (large
        images' decoders ran an eager fallback of their transposed convolutions, 5 s for 110 codes)."""
        batch = evaluation_batch(self.model.image_shape)
        return np.concatenate([_probabilities(self.model, tf.constant(codes[start:start + batch])).numpy()
                               for start in range(0, len(codes), batch)])

    def codes(self, images: np.ndarray | None = None) -> np.ndarray:
        """Codes (a VAE's posterior means) of ``images``, by default the fixed test images of the scatter
        and the projector."""
        images = self.code_images if images is None else images
        batches = tf.data.Dataset.from_tensor_slices(images).batch(evaluation_batch(images.shape[1:]))
        return encode(self.model, without_autotuning(batches))

    def _walk_codes(self, codes: np.ndarray | None) -> np.ndarray:
        """Codes of the walks' images: the first of ``codes`` (those of the code images) when they cover them."""
        if codes is not None and len(codes) >= len(self.walk_images):
            return codes[:len(self.walk_images)]
        return self.codes(self.walk_images)

    def interpolations(self, walk_codes: np.ndarray) -> np.ndarray:
        """The decodings of each pair's interpolation, pair by pair: (pairs * steps, height, width, channels)."""
        return self.decode(interpolation_codes(walk_codes, self.pairs, self.config.interpolation_steps,
                                               self.interpolation))

    def interpolation_chain(self) -> np.ndarray:
        """The decodings of the first pair's interpolation (for an animation); none without a pair."""
        return self.interpolations(self._walk_codes(None))[:self.config.interpolation_steps]

    def traversals(self, walk_codes: np.ndarray) -> np.ndarray:
        """The decodings of the first image's code swept along each traversed dimension, row by row."""
        dimensions = dimensions_by_variance(walk_codes, self.traversal_dims)
        # A VAE's prior has unit deviations; an autoencoder has none, so its codes' own spread stands in.
        scales = np.ones(walk_codes.shape[1]) if self.model.variational else np.std(walk_codes, axis=0)
        return self.decode(traversal_codes(walk_codes[0], dimensions, scales, self.config.traversal_steps))

    def render(self, codes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each picture as a ``(height, width, channels)`` array: floats in [0, 1], or RGB uint8.

        ``codes`` are those of :meth:`codes`, when the caller has them already.
        """
        pictures = {}
        if len(self.originals):
            reconstructions = self.model.mean_images(self.model(tf.constant(self.originals))).numpy()
            pictures["reconstructions"] = tile(np.concatenate([self.originals, reconstructions]),
                                               columns=len(self.originals))
        if self.corrupted is not None:
            denoised = self.model.mean_images(self.model(tf.constant(self.corrupted))).numpy()
            pictures["denoising"] = tile(np.concatenate([self.originals, self.corrupted, denoised]),
                                         columns=len(self.originals))
        if len(self.prior_draws):
            columns = math.ceil(math.sqrt(len(self.prior_draws)))
            pictures["samples"] = tile(self.decode(self.prior_draws), columns=columns)
        if self.manifold is not None:
            pictures["manifold"] = tile(self.decode(self.manifold), columns=self.config.manifold.size, padding=0)
        walks = self.pairs or (self.traversal_dims and len(self.walk_images))
        walk_codes = self._walk_codes(codes if len(self.code_images) else None) if walks else None
        if self.pairs:
            pictures["interpolations"] = tile(self.interpolations(walk_codes), columns=self.config.interpolation_steps)
        if self.traversal_dims and len(self.walk_images):
            pictures["traversals"] = tile(self.traversals(walk_codes), columns=self.config.traversal_steps)
        if len(self.code_images):
            codes = self.codes() if codes is None else codes
            points, axis_names = scatter_coordinates(codes, self.code_labels, self.config.projection)
            what = "posterior means" if self.model.variational else "codes"
            pictures["latent_scatter"] = rasterize(scatter_figure(
                points, self.code_labels, self.class_names, axis_names,
                f"{what} of {len(codes)} test images ({self.model.latent_dim}-D)"))
        return pictures
