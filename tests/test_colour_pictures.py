"""Pictures of colour and of grey images: every picture keeps the images' channels (a red image is drawn
red), the projector's sprite is in colour and shrinks to fit TensorBoard's limit, the GIF is in colour,
and the image-quality test figures (PSNR, SSIM) are those of the image-processing literature.

Untrained tiny models on 16x16 images: no training, seconds in all."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector import ProjectorConfig

from vae_train.config import (
    ConvAEConfig,
    ConvVAEConfig,
    EvaluationConfig,
    GaussianCorruptionConfig,
    ManifoldConfig,
)
from vae_train.data.corruption import corruption_of
from vae_train.data.pipeline import InMemoryBatches
from vae_train.evaluation.figures import MAX_PSNR, Evaluator, ImageQuality
from vae_train.evaluation.pictures import Pictures, enlarged, tile, to_uint8, write_png
from vae_train.evaluation.projector import MAX_SPRITE_SIDE, EmbeddingProjector, thumbnail_size
from vae_train.models import build_model
from vae_train.run.epoch_pictures import TensorBoardPictures
from vae_train.run.evaluate import write_gif
from vae_train.run.layout import scalar_tag
from vae_train.training.loop import EpochRecord
from vae_train.training.summaries import TensorBoardWriters

SIDE = 16
COLOUR, GREY = (SIDE, SIDE, 3), (SIDE, SIDE, 1)
RED = np.array([1.0, 0.0, 0.0], np.float32)
RED_BYTES = [255, 0, 0]
CLASS_NAMES = ("even", "odd")
# Small enough to render in a blink; every picture on (a 2-D VAE gets samples and the manifold).
CONFIG = EvaluationConfig(reconstructions=4, samples=4, manifold=ManifoldConfig(size=3), code_examples=12,
                          interpolations=2, interpolation_steps=3, traversal_dims=2, traversal_steps=3)
EVERY_PICTURE = {"reconstructions", "denoising", "samples", "manifold", "interpolations", "traversals",
                 "latent_scatter"}
TINY_CONV = {"encoder_filters": [4, 8], "hidden_units": [], "decoder_filters": [8, 4], "decoder_hidden_units": [],
             "decoder_start_channels": 8}


def random_images(shape: tuple[int, int, int], count: int = 24, seed: int = 0) -> np.ndarray:
    """``count`` images of ``shape`` in [0, 1], the first pure red (colour) or white (grey)."""
    images = np.random.default_rng(seed).random((count, *shape)).astype(np.float32)
    images[0] = RED if shape[-1] == 3 else 1.0
    return images


def labels_of(count: int) -> np.ndarray:
    return (np.arange(count) % 2).astype(np.uint8)  # neighbours differ: the interpolations find pairs


@pytest.fixture(scope="module", params=[COLOUR, GREY], ids=["colour", "grey"])
def pictures(request) -> Pictures:
    """A tiny untrained 2-D conv VAE's pictures, with denoising, of images of the parameter's shape."""
    model = build_model(ConvVAEConfig(name="cvae", **TINY_CONV), 2, request.param, seed=0)
    images = random_images(request.param)
    corrupt = corruption_of(GaussianCorruptionConfig(name="gaussian", std=0.2))
    return Pictures(model, images, labels_of(len(images)), CLASS_NAMES, CONFIG, seed=0, corrupt=corrupt)


@pytest.fixture(scope="module")
def rendered(pictures) -> dict[str, np.ndarray]:
    return pictures.render()


def channels_of(pictures: Pictures) -> int:
    return pictures.images.shape[-1]


def top_left(picture: np.ndarray) -> np.ndarray:
    """The first cell of a grid of 16x16 images: where the first image (the red one) is drawn."""
    return to_uint8(picture[:SIDE, :SIDE])


# --- the pictures ----------------------------------------------------------------------------------


def test_every_picture_keeps_the_images_channels(pictures, rendered):
    assert set(rendered) == EVERY_PICTURE
    channels = channels_of(pictures)
    for name, picture in rendered.items():
        expected = 3 if name == "latent_scatter" else channels  # the scatter is a matplotlib figure
        assert picture.ndim == 3 and picture.shape[-1] == expected, name
    if channels == 3:
        # The decodings' channels come from different decoder weights: colour, not one grey channel
        # copied three times (an untrained decoder's differ by little, but they differ).
        for name in ("samples", "manifold", "interpolations", "traversals"):
            assert np.ptp(rendered[name], axis=-1).max() > 1e-4, name


def test_a_red_image_is_drawn_red_and_a_white_one_white(pictures, rendered):
    expected = RED_BYTES if channels_of(pictures) == 3 else [255]
    for name in ("reconstructions", "denoising"):  # both show the originals on their top row
        assert np.all(top_left(rendered[name]) == expected), name


def test_pngs_keep_the_channels(pictures, rendered, tmp_path):
    for name, picture in rendered.items():
        write_png(tmp_path / f"{name}.png", picture)
        read = tf.io.decode_png(tf.io.read_file(str(tmp_path / f"{name}.png"))).numpy()
        np.testing.assert_array_equal(read, to_uint8(picture))
    expected = RED_BYTES if channels_of(pictures) == 3 else [255]
    read = tf.io.decode_png(tf.io.read_file(str(tmp_path / "reconstructions.png"))).numpy()
    assert np.all(read[:SIDE, :SIDE] == expected)


def read_logged_pictures(folder) -> dict[str, np.ndarray]:
    """The image summaries of the event files in ``folder``, decoded: (height, width, channels) uint8."""
    pictures = {}
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    pictures[value.tag] = tf.io.decode_png(tf.make_ndarray(value.tensor)[2]).numpy()
    return pictures


def test_tensorboard_pictures_and_sprite_keep_the_channels(pictures, tmp_path):
    writers = TensorBoardWriters(tmp_path)
    hook = TensorBoardPictures.for_run(pictures, writers, last_epoch=1, seed=0)
    hook(EpochRecord(epoch=1, step=1, train={}, test={}, images_per_second=0.0, epoch_seconds=0.0))
    logged = read_logged_pictures(tmp_path / "test")
    channels = channels_of(pictures)
    assert set(logged) == EVERY_PICTURE
    for name, picture in logged.items():
        assert picture.shape[-1] == (3 if name == "latent_scatter" else channels), name
    expected = RED_BYTES if channels == 3 else [255]
    # Enlarged for TensorBoard: the red image is a larger block, still red.
    assert np.all(logged["reconstructions"][:2 * SIDE, :2 * SIDE] == expected)
    # Twelve codes on a 4 x 4 sprite, at the images' own size (they fit), red first.
    sprite = tf.io.decode_png(tf.io.read_file(str(tmp_path / "test" / "sprite.png"))).numpy()
    assert sprite.shape == (4 * SIDE, 4 * SIDE, channels)
    assert np.all(sprite[:SIDE, :SIDE] == expected)


def test_large_pictures_are_not_enlarged_nor_copied_and_small_ones_keep_their_colour():
    eight_large = tile(np.zeros((8, 256, 256, 3), np.uint8), columns=8)
    assert enlarged(eight_large) is eight_large
    small = tile(np.tile(RED, (4, SIDE, SIDE, 1)), columns=4)  # 16 x 70: enlarged six times
    large = enlarged(to_uint8(small))
    assert large.shape == (6 * SIDE, 6 * small.shape[1], 3)
    assert np.all(large[:6 * SIDE, :6 * SIDE] == RED_BYTES)


def test_tiling_bytes_pads_with_the_same_grey_as_tiling_probabilities():
    images = np.zeros((2, 2, 2, 3), np.float32)
    np.testing.assert_array_equal(tile(to_uint8(images), columns=2), to_uint8(tile(images, columns=2)))


# --- the projector's sprite ------------------------------------------------------------------------


def test_sprites_fit_the_projector_limit_shrinking_the_images_only_when_they_must():
    assert thumbnail_size(10_000, 64, 64) == (64, 64)  # 100 x 64 = 6,400 pixels: as they are
    # 142 per row of 64 pixels would be 9,088 pixels: 57-pixel thumbnails, 8,094 pixels.
    assert thumbnail_size(20_000, 64, 64) == (57, 57)
    assert thumbnail_size(20_000, 64, 32) == (57, 28)  # the aspect ratio kept
    assert thumbnail_size(50_000, 256, 256) == (36, 36)
    for count, height, width in ((20_000, 64, 64), (50_000, 256, 256), (1_000, 256, 128), (16_385, 64, 64)):
        thumb_height, thumb_width = thumbnail_size(count, height, width)
        assert math.ceil(math.sqrt(count)) * max(thumb_height, thumb_width) <= MAX_SPRITE_SIDE
    assert thumbnail_size(10**9, SIDE, SIDE) is None  # fewer than one pixel each


def test_many_colour_images_get_an_rgb_sprite_of_thumbnails(tmp_path):
    # 300 images of 64x64 on an 18 x 18 sprite: 1,152 pixels, over a limit of 512 (8,192 needs 16,385 images).
    count, limit = 300, 512
    images = np.random.default_rng(0).integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)
    images[0] = RED_BYTES
    projector = EmbeddingProjector(tmp_path, images, labels_of(count), CLASS_NAMES, sprite_limit=limit)
    assert not list(tmp_path.iterdir())  # nothing before the first codes
    projector.write(np.zeros((count, 3), np.float32))
    config = text_format.Parse((tmp_path / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (embedding,) = config.embeddings
    sprite = tf.io.decode_png(tf.io.read_file(str(tmp_path / embedding.sprite.image_path))).numpy()
    side, thumbnail = 18, limit // 18
    assert list(embedding.sprite.single_image_dim) == [thumbnail, thumbnail]
    assert sprite.shape == (side * thumbnail, side * thumbnail, 3) and max(sprite.shape) <= limit
    assert np.all(sprite[:thumbnail, :thumbnail] == RED_BYTES)  # a red image's thumbnail is red
    # Each thumbnail pixel the mean of the pixels it covers: the second thumbnail's mean is its image's.
    second = sprite[:thumbnail, thumbnail:2 * thumbnail].astype(float)
    np.testing.assert_allclose(second.mean(axis=(0, 1)), images[1].mean(axis=(0, 1)), atol=2.0)


def test_probabilities_and_bytes_give_the_same_sprite(tmp_path):
    images = random_images(COLOUR, count=5)
    for folder, same_images in (("floats", images), ("bytes", to_uint8(images))):
        EmbeddingProjector(tmp_path / folder, same_images, labels_of(5), CLASS_NAMES, sprite_limit=20).write(
            np.zeros((5, 3), np.float32))
    floats, as_bytes = (tf.io.decode_png(tf.io.read_file(str(tmp_path / folder / "sprite.png"))).numpy()
                        for folder in ("floats", "bytes"))
    assert floats.shape == (3 * 6, 3 * 6, 3)  # 3 per row, 20 // 3 = 6-pixel thumbnails
    np.testing.assert_allclose(floats.astype(int), as_bytes.astype(int), atol=1)


# --- the GIF ---------------------------------------------------------------------------------------


def read_gif(path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("RGB")))
        return frames


def test_the_interpolation_gif_is_in_colour_for_colour_images(tmp_path):
    red, green, blue = np.eye(3, dtype=np.float32)
    frames = np.stack([np.tile(colour, (SIDE, SIDE, 1)) for colour in (red, green, blue)])
    write_gif(tmp_path / "colour.gif", frames)
    read = read_gif(tmp_path / "colour.gif")
    assert len(read) == 4  # there and back: red, green, blue, green
    assert read[0].shape == (11 * SIDE, 11 * SIDE, 3)  # enlarged to 168 pixels or more
    for frame, expected in zip(read, ([255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 0]), strict=True):
        assert np.all(np.abs(frame.astype(int) - expected) <= 8)


def test_the_interpolation_gif_of_grey_images_is_grey_and_a_model_s_chain_animates(pictures, tmp_path):
    write_gif(tmp_path / "grey.gif", np.linspace(0, 1, 3, dtype=np.float32)[:, None, None, None] * np.ones(GREY))
    with Image.open(tmp_path / "grey.gif") as gif:
        assert gif.mode in ("L", "P")
    read = read_gif(tmp_path / "grey.gif")
    for frame, level in zip(read, (0, 128, 255, 128), strict=True):
        assert np.all(np.abs(frame.astype(int) - level) <= 2)
    # The model's own interpolation, colour or grey, as vae-eval --gif writes it.
    chain = pictures.interpolation_chain()
    write_gif(tmp_path / "chain.gif", chain)
    read = read_gif(tmp_path / "chain.gif")
    assert len(read) >= 2  # Pillow merges consecutive frames that round to the same bytes, if any do
    if channels_of(pictures) == 3:
        assert max(np.ptp(frame.astype(int), axis=-1).max() for frame in read) > 0  # not grey


# --- PSNR and SSIM ---------------------------------------------------------------------------------


def test_psnr_is_that_of_the_mean_squared_error_and_capped_for_a_perfect_reconstruction():
    images = 0.2 + 0.6 * random_images(COLOUR, count=6)[1:]
    quality = ImageQuality(SIDE, SIDE)
    perfect, _ = quality(tf.constant(images), tf.constant(images))
    np.testing.assert_allclose(perfect.numpy(), MAX_PSNR)  # an infinite PSNR, reported as 100 dB
    off, _ = quality(tf.constant(images), tf.constant(images + 0.1))  # every pixel off by 0.1: mse 0.01
    np.testing.assert_allclose(off.numpy(), 10 * math.log10(1 / 0.01), atol=1e-3)
    assert tf.reduce_all(quality(tf.constant(images), tf.constant(images))[1] > 0.9999)
    binary = np.where(images > 0.5, 1.0, 0.0).astype(np.float32)
    exact, _ = quality(tf.constant(images), tf.constant(binary))
    np.testing.assert_allclose(exact.numpy(), 10 * np.log10(1 / np.mean((binary - images) ** 2, axis=(1, 2, 3))),
                               rtol=1e-4)


def test_ssim_of_an_image_with_itself_is_one_and_lower_for_another():
    images = tf.constant(random_images(COLOUR, count=4))
    quality = ImageQuality(SIDE, SIDE)
    _, itself = quality(images, images)
    np.testing.assert_allclose(itself.numpy(), 1.0, atol=1e-4)
    _, other = quality(images, images[::-1])
    assert np.all(other.numpy() < 0.5)


def test_ssim_window_fits_small_images():
    assert ImageQuality(256, 256).ssim_filter == (11, 1.5)
    assert ImageQuality(SIDE, SIDE).ssim_filter == (11, 1.5)
    size, sigma = ImageQuality(8, 6).ssim_filter
    assert size == 6 and sigma == pytest.approx(1.5 * 6 / 11)
    images = tf.constant(np.random.default_rng(1).random((3, 8, 6, 3)), tf.float32)
    _, itself = ImageQuality(8, 6)(images, images)
    np.testing.assert_allclose(itself.numpy(), 1.0, atol=1e-4)


# Each of the evaluator's paths traces its loop anew (XLA's in seconds): all of them for colour only.
@pytest.mark.parametrize(("shape", "every_path"), [pytest.param(COLOUR, True, marks=pytest.mark.slow), (GREY, False)],
                         ids=["colour", "grey"])
def test_the_evaluator_reports_the_mean_psnr_and_ssim_of_the_reconstructions(shape, every_path):
    model = build_model(ConvAEConfig(name="conv_ae", **TINY_CONV), 2, shape, seed=0)
    pixels = np.round(random_images(shape, count=23) * 255).astype(np.uint8)
    images = pixels.astype(np.float32) / 255.0
    batches = InMemoryBatches(tf.constant(pixels), batch_size=10)  # a short last batch
    reconstructions = model.mean_images(model(images))
    psnr, ssim = (values.numpy().mean() for values in ImageQuality(SIDE, SIDE)(tf.constant(images), reconstructions))
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    # In-memory slices on the host replica; the batches of a tf.data pipeline, through the strategy's
    # run and reduce as on several replicas; compiled by XLA: the same figures.
    paths = ((batches, False), (batches.dataset(), False), (batches, True)) if every_path else ((batches, False),)
    for test, jit_compile in paths:
        figures = Evaluator(model, one_device, jit_compile=jit_compile, image_quality=True).evaluate(test)
        assert figures["psnr"] == pytest.approx(psnr, rel=1e-5)
        # SSIM's variances are differences of filtered squares: float32 sums in another order (a graph's
        # fused kernels, XLA's) move an untrained model's 0.046 in its fifth digit.
        assert figures["ssim"] == pytest.approx(ssim, rel=1e-3)
    if not every_path:  # off unless asked for (binarized images)
        assert not {"psnr", "ssim"} & set(Evaluator(model, one_device).evaluate(batches))


def test_image_quality_figures_are_tagged_as_metrics():
    assert scalar_tag("psnr") == "metrics/psnr" and scalar_tag("test_ssim") == "metrics/ssim"
