"""Pictures: the grids, codes and projections they are made of, and every picture as TensorBoard
shows it, read back from the event files of a tiny run."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector import ProjectorConfig

from conftest import FINISHED_RUN_OVERRIDES, IMAGE_SHAPE, compose, synthetic_digits, tiny_overrides
from vae_train.config import EvaluationConfig, ManifoldConfig, ManifoldKind, Projection, to_settings
from vae_train.data.pipeline import ImagePipelines, load_dataset
from vae_train.evaluation.pictures import (
    Pictures,
    manifold_codes,
    rasterize,
    scatter_coordinates,
    scatter_figure,
    tile,
    to_uint8,
)
from vae_train.models import build_model

# As set by conftest.FINISHED_RUN_OVERRIDES.
EPOCHS, EVERY, STEPS_PER_EPOCH = 3, 2, 128 // 32
RECONSTRUCTIONS, SAMPLES, MANIFOLD, CODES = 6, 9, 5, 40
GREY = round(0.5 * 255)


def read_event_tensors(folder: Path, plugin: str) -> dict[str, list[tuple[int, np.ndarray]]]:
    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {tag: [(event.step, tf.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]
            if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == plugin}


def read_pictures(folder: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Each image summary decoded: (step, (height, width, channels) uint8)."""
    return {tag: [(step, tf.io.decode_png(value[2]).numpy()) for step, value in events]
            for tag, events in read_event_tensors(folder, "images").items()}


def native(picture: np.ndarray, height: int) -> np.ndarray:
    """A picture enlarged for TensorBoard, at its own size again: ``height`` rows, each pixel having
    been a square block."""
    factor = picture.shape[0] // height
    assert picture.shape[0] == factor * height and picture.shape[1] % factor == 0
    small = picture[::factor, ::factor]
    np.testing.assert_array_equal(np.repeat(np.repeat(small, factor, axis=0), factor, axis=1), picture)
    return small


@pytest.fixture(scope="module")
def logged_pictures(finished_run):
    """The pictures of the finished run as TensorBoard shows them."""
    run_dir, _ = finished_run
    return read_pictures(run_dir / "test")


@pytest.fixture(scope="module")
def picture_run(finished_run, logged_pictures):
    """The finished run and its pictures at their own size."""
    run_dir, _ = finished_run
    heights = {"reconstructions": 2 * 28 + 2, "samples": 3 * 28 + 2 * 2, "manifold": MANIFOLD * 28,
               "interpolations": 4 * 28 + 3 * 2, "traversals": 2 * 28 + 2}
    return run_dir, {tag: [(step, native(grid, heights[tag]) if tag in heights else grid) for step, grid in events]
                     for tag, events in logged_pictures.items()}


@pytest.fixture(scope="module")
def final_pictures(picture_run, tiny_data_dir) -> Pictures:
    """The pictures the run's last checkpoint gives, rendered afresh."""
    from vae_train.run.evaluate import restore_model

    run_dir, _ = picture_run
    settings = to_settings(compose([*tiny_overrides(tiny_data_dir), *FINISHED_RUN_OVERRIDES]))
    model, _ = restore_model(settings, run_dir, IMAGE_SHAPE)
    dataset = load_dataset(settings.data)
    return Pictures.from_dataset(model, ImagePipelines(dataset, settings.data, settings.seed).test(),
                                 dataset.test.labels, dataset.class_names, settings.evaluation, settings.seed)


def as_logged(picture: np.ndarray) -> np.ndarray:
    return np.round(picture * 255).astype(int)


# --- what the pictures are made of ---------------------------------------------------------------


def test_tile_puts_images_row_by_row_with_grey_padding():
    images = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 2, 3, 1), np.float32)
    grid = tile(images, columns=3, padding=1, fill=-1.0)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2, 1)
    assert np.all(grid[0:2, 4:7] == 1) and np.all(grid[3:5, 4:7] == 4)  # row 0 column 1, row 1 column 1
    assert np.all(grid[2, :] == -1) and np.all(grid[3:5, 8:11] == -1)  # padding, and the empty sixth cell


def test_probabilities_become_bytes_and_non_finite_ones_do_not_break_a_picture():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = to_uint8(np.array([[np.nan, 0.0, 0.5, 1.0, 2.0, -np.inf, np.inf]], np.float32))
    assert image.dtype == np.uint8 and image.tolist() == [[0, 0, 128, 255, 255, 0, 255]]


def test_manifold_grids_are_quantiles_of_the_prior_or_a_square():
    quantiles = manifold_codes(ManifoldConfig(kind=ManifoldKind.quantiles, size=3, quantile_range=[0.05, 0.95]))
    np.testing.assert_allclose(quantiles[:3], [[-1.644854, 1.644854], [0, 1.644854], [1.644854, 1.644854]],
                               atol=1e-5)  # top row: the first coordinate grows to the right, the second is highest
    np.testing.assert_allclose(quantiles[-1], [1.644854, -1.644854], atol=1e-5)
    square = manifold_codes(ManifoldConfig(kind=ManifoldKind.square, size=10, square_range=[-2.0, 2.0]))
    assert square.shape == (100, 2)
    np.testing.assert_allclose([square.min(), square.max()], [-2.0, 2.0])
    np.testing.assert_allclose(np.unique(square[:, 0]), np.linspace(-2, 2, 10), atol=1e-6)


def test_codes_of_more_than_two_dimensions_are_projected_onto_their_principal_components():
    rng = np.random.default_rng(0)
    direction = np.array([1.0, 2.0, -1.0, 0.5, 0.0]) / np.linalg.norm([1.0, 2.0, -1.0, 0.5, 0.0])
    codes = rng.normal(size=(300, 1)) * 5 * direction + rng.normal(size=(300, 5)) * 0.1 + 3.0
    points, axes = scatter_coordinates(codes, np.zeros(300, int), Projection.pca)
    assert points.shape == (300, 2) and axes[0] == "principal component 1"
    assert points[:, 0].var() > 100 * points[:, 1].var()  # the spread lies along the first component
    np.testing.assert_allclose(points.mean(axis=0), 0.0, atol=1e-9)
    first_two, _ = scatter_coordinates(codes, np.zeros(300, int), Projection.first_two)
    np.testing.assert_array_equal(first_two, codes[:, :2])


def test_scatter_colours_the_classes_and_names_them_in_a_legend():
    rng = np.random.default_rng(0)
    points, labels = rng.normal(size=(300, 2)), np.arange(300) % 3
    figure = scatter_figure(points, labels, ("Trouser", "Bag", "Ankle boot"), ("z[0]", "z[1]"), "codes")
    (axes,) = figure.axes
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["Trouser", "Bag", "Ankle boot"]
    colours = [tuple(collection.get_facecolor()[0]) for collection in axes.collections]
    assert [len(collection.get_offsets()) for collection in axes.collections] == [100, 100, 100]
    assert len(set(colours)) == 3
    image = rasterize(figure)
    assert image.shape == (550, 750, 3) and image.dtype == np.uint8
    assert (np.ptp(image.astype(int), axis=2) > 60).sum() > 200  # coloured points, not only black and white


@pytest.mark.parametrize(("model", "latent_dim", "expected"), [
    ("cvae", 2, {"reconstructions", "samples", "manifold", "interpolations", "traversals", "latent_scatter"}),
    ("cvae", 5, {"reconstructions", "samples", "interpolations", "traversals", "latent_scatter"}),
    ("dense_ae", 3, {"reconstructions", "interpolations", "traversals", "latent_scatter"}),
])
def test_which_pictures_a_model_gets(model, latent_dim, expected):
    settings = to_settings(compose([f"model={model}", f"latent_dim={latent_dim}", "evaluation.manifold.size=4"]))
    images, labels = synthetic_digits(20, seed=2)
    pictures = Pictures(build_model(settings.model, latent_dim, IMAGE_SHAPE, seed=0), images[..., None] / 255.0, labels,
                        tuple(str(d) for d in range(10)), settings.evaluation, seed=0)
    rendered = pictures.render()
    assert set(rendered) == expected
    for name, picture in rendered.items():  # grids of probabilities; the scatter is an RGB figure
        assert picture.dtype == np.uint8 if name == "latent_scatter" else 0 <= picture.min() <= picture.max() <= 1


def test_pictures_can_be_switched_off():
    config = EvaluationConfig(reconstructions=0, samples=0, code_examples=0, manifold=ManifoldConfig(size=0),
                              interpolations=0, traversal_dims=0)
    settings = to_settings(compose())
    images, labels = synthetic_digits(4, seed=2)
    model = build_model(settings.model, 2, IMAGE_SHAPE, seed=0)
    assert Pictures(model, images[..., None] / 255.0, labels, ("a",) * 10, config, seed=0).render() == {}


# --- the pictures in TensorBoard ---------------------------------------------------------------


def test_pictures_are_logged_every_n_epochs_and_after_the_last(picture_run):
    _, pictures = picture_run
    assert set(pictures) == {"reconstructions", "samples", "manifold", "interpolations", "traversals",
                             "latent_scatter"}
    for tag, events in pictures.items():
        assert [step for step, _ in events] == [EVERY * STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH], tag


def test_reconstructions_show_the_first_test_images_above_their_reconstructions(picture_run, final_pictures):
    _, pictures = picture_run
    originals = as_logged(final_pictures.originals)
    for _, grid in pictures["reconstructions"]:
        assert grid.shape == (2 * 28 + 2, RECONSTRUCTIONS * 28 + (RECONSTRUCTIONS - 1) * 2, 1)
        top = [grid[:28, column * 30:column * 30 + 28] for column in range(RECONSTRUCTIONS)]
        np.testing.assert_array_equal(np.stack(top), originals)
        assert np.all(grid[28:30] == GREY)
    # The last one shows the final model's reconstructions, as probabilities scaled to 0..255.
    final = as_logged(final_pictures.render()["reconstructions"])
    np.testing.assert_allclose(pictures["reconstructions"][-1][1], final, atol=1)


def test_samples_and_manifold_are_grids_of_decodings(picture_run, final_pictures):
    _, pictures = picture_run
    side = 3 * 28 + 2 * 2  # nine samples: three by three
    assert [grid.shape for _, grid in pictures["samples"]] == [(side, side, 1)] * 2
    assert [grid.shape for _, grid in pictures["manifold"]] == [(MANIFOLD * 28, MANIFOLD * 28, 1)] * 2
    final = final_pictures.render()
    np.testing.assert_allclose(pictures["samples"][-1][1], as_logged(final["samples"]), atol=1)
    np.testing.assert_allclose(pictures["manifold"][-1][1], as_logged(final["manifold"]), atol=1)
    # The fixed draws are decoded at every epoch: the pictures differ only as the weights do.
    assert final_pictures.prior_draws.shape == (SAMPLES, 2)
    np.testing.assert_array_equal(final_pictures.prior_draws,
                                  Pictures(final_pictures.model, final_pictures.images, final_pictures.code_labels,
                                           final_pictures.class_names, final_pictures.config, 42).prior_draws)


def test_pictures_are_enlarged_to_be_read_at_the_size_tensorboard_shows_them(logged_pictures):
    # Integer factors of the grids' own sizes: (58, 178) x3, (88, 88) x5, (140, 140) x3; the figure as drawn.
    # Four pairs by ten steps, and two dimensions by eleven steps: (118, 298) x2, (58, 328) x2.
    expected = {"reconstructions": (174, 534, 1), "samples": (440, 440, 1), "manifold": (420, 420, 1),
                "interpolations": (236, 596, 1), "traversals": (116, 656, 1), "latent_scatter": (550, 750, 3)}
    assert {tag: events[-1][1].shape for tag, events in logged_pictures.items()} == expected


def test_latent_scatter_is_a_colour_figure(picture_run):
    _, pictures = picture_run
    for _, figure in pictures["latent_scatter"]:
        assert figure.shape == (550, 750, 3)
        assert (np.ptp(figure.astype(int), axis=2) > 60).sum() > 100


def test_weight_and_gradient_histograms(picture_run):
    run_dir, _ = picture_run
    histograms = read_event_tensors(run_dir / "train", "histograms")
    weights = {tag for tag in histograms if tag.startswith("weights/")}
    gradients = {tag for tag in histograms if tag.startswith("gradients/")}
    assert len(weights) == len(gradients) > 0
    assert "weights/encoder/z_mean/kernel" in weights
    for tag in weights | gradients:
        assert [step for step, _ in histograms[tag]] == [EVERY * STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH]


def test_projector_gets_codes_labels_and_a_sprite(picture_run):
    run_dir, _ = picture_run
    folder = run_dir / "test"
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    codes = np.loadtxt(folder / embedding.tensor_path, delimiter="\t")
    # 2-D codes and a zero third column: the projector draws nothing for fewer than three.
    assert codes.shape == (CODES, 3)
    assert np.all(codes[:, 2] == 0) and codes[:, :2].std(axis=0).min() > 0
    metadata = (folder / embedding.metadata_path).read_text().splitlines()
    assert metadata[0] == "label\tclass" and len(metadata) == CODES + 1
    assert all(line.split("\t")[0] == line.split("\t")[1] for line in metadata[1:])  # MNIST: digits
    sprite = tf.io.decode_png(tf.io.read_file(str(folder / embedding.sprite.image_path))).numpy()
    assert sprite.shape == (7 * 28, 7 * 28, 1)  # 40 images on a 7 x 7 square
    assert list(embedding.sprite.single_image_dim) == [28, 28]
