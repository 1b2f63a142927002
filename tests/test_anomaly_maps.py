"""Anomaly maps (L2, SSIM), image scores read from them, and the pixel-level figures of MVTec AD (pixel
AUROC, PRO), thresholds and F1: on small planted arrays, against hand arithmetic and slow references."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from vae_train.errors import ConfigError, DataError
from vae_train.evaluation.anomaly_maps import (
    ANOMALY_MAPS,
    IMAGE_SCORES,
    anomaly_maps,
    image_scores,
    l2_map,
    smooth,
    ssim_map,
)
from vae_train.evaluation.segmentation import (
    f1_at,
    pixel_auroc,
    pro_curve,
    pro_score,
    quantile_threshold,
    region_labels,
)

WINDOW_RADIUS = 5  # of the 11-pixel SSIM window


def rectangle_masks(count: int, size: int, seed: int, most_regions: int = 3) -> np.ndarray:
    """Boolean masks with 0 to ``most_regions`` rectangles each, the first image always with one."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, size, size), dtype=bool)
    for index, mask in enumerate(masks):
        for _ in range(max(int(index == 0), rng.integers(0, most_regions + 1))):
            height, width = rng.integers(2, size // 3, size=2)
            top, left = rng.integers(0, size - height), rng.integers(0, size - width)
            mask[top:top + height, left:left + width] = True
    return masks


def smooth_images(count: int, size: int, channels: int, seed: int) -> np.ndarray:
    """Images in [0, 1] with structure at a few pixels' scale, like photographs rather than noise."""
    rng = np.random.default_rng(seed)
    noise = rng.random((count, size, size, channels))
    blurred = ndimage.gaussian_filter(noise, sigma=(0, 1.5, 1.5, 0))
    return ((blurred - blurred.min()) / (blurred.max() - blurred.min())).astype(np.float32)


# --- maps ---------------------------------------------------------------------------------------


def test_l2_map_is_the_squared_error_summed_over_channels():
    images = np.zeros((1, 1, 2, 3), np.float32)
    reconstructions = np.array([[[[0.1, 0.2, 0.3], [0.5, 0.0, 1.0]]]], np.float32)
    # Pixel (0, 0): 0.01 + 0.04 + 0.09 = 0.14; pixel (0, 1): 0.25 + 0 + 1 = 1.25.
    np.testing.assert_allclose(l2_map(images, reconstructions).numpy(), [[[0.14, 1.25]]], rtol=1e-6)
    grey = l2_map(images[..., :1], reconstructions[..., :1]).numpy()
    np.testing.assert_allclose(grey, [[[0.01, 0.25]]], rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [32, 6])
def test_ssim_map_of_an_image_with_itself_is_zero(channels, size):
    images = smooth_images(3, size, channels, seed=channels + size)
    maps = ssim_map(images, images).numpy()
    assert maps.shape == (3, size, size) and maps.dtype == np.float32
    assert np.abs(maps).max() <= 1e-6


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_map_is_positive_where_images_differ_and_zero_beyond_the_window(channels):
    images = smooth_images(2, 32, channels, seed=7)
    noised = images.copy()
    rng = np.random.default_rng(8)
    noised[:, 12:18, 10:16] = np.clip(noised[:, 12:18, 10:16] + rng.normal(0, 0.2, (2, 6, 6, channels)), 0, 1)
    maps = ssim_map(images, noised).numpy()
    assert (maps[:, 12:18, 10:16] > 1e-3).all()
    # Pixels whose whole 11x11 window misses the noised patch compare equal windows.
    far = np.ones((32, 32), bool)
    far[12 - WINDOW_RADIUS:18 + WINDOW_RADIUS, 10 - WINDOW_RADIUS:16 + WINDOW_RADIUS] = False
    assert np.abs(maps[:, far]).max() <= 1e-6
    assert (maps >= -1e-6).all() and (maps <= 2 * channels + 1e-6).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_map_away_from_the_borders_agrees_with_tensorflow_ssim(channels):
    """tf.image.ssim is the mean SSIM of the windows inside the image, averaged over channels."""
    images = smooth_images(2, 24, channels, seed=11)
    rng = np.random.default_rng(12)
    shifted = np.clip(np.roll(images, 1, axis=2) + rng.normal(0, 0.05, images.shape), 0, 1).astype(np.float32)
    maps = ssim_map(images, shifted).numpy()
    interior = maps[:, WINDOW_RADIUS:-WINDOW_RADIUS, WINDOW_RADIUS:-WINDOW_RADIUS]
    expected = 1.0 - tf.image.ssim(images, shifted, max_val=1.0).numpy()
    np.testing.assert_allclose(interior.mean(axis=(1, 2)) / channels, expected, atol=1e-5)


def test_ssim_on_images_smaller_than_the_window():
    images = smooth_images(2, 6, 1, seed=3)[:, :, :5]  # 6 x 5: a 5-pixel window
    noised = images.copy()
    noised[:, 2, 2] = 1.0 - noised[:, 2, 2]
    maps = ssim_map(images, noised).numpy()
    assert maps.shape == (2, 6, 5) and np.isfinite(maps).all() and (maps[:, 2, 2] > 0).all()


def test_maps_are_picked_by_name():
    assert set(ANOMALY_MAPS) == {"l2", "ssim"}
    images = smooth_images(1, 12, 1, seed=0)
    np.testing.assert_array_equal(anomaly_maps(images, 1 - images, "l2").numpy(), l2_map(images, 1 - images).numpy())
    with pytest.raises(ConfigError, match="l2, ssim"):
        anomaly_maps(images, images, "l1")


def test_smoothing_blurs_each_map_on_its_own():
    maps = np.zeros((2, 15, 15), np.float32)
    maps[0, 7, 7] = 1.0
    np.testing.assert_array_equal(smooth(maps, 0), maps)
    blurred = smooth(maps, 1.0)
    assert blurred.dtype == np.float32
    assert blurred[0, 7, 7] < 1.0 and blurred[0, 7, 8] > 0.0
    assert blurred[0].sum() == pytest.approx(1.0, abs=1e-5)
    assert not blurred[1].any()  # nothing bleeds from one map into the next


# --- image scores -------------------------------------------------------------------------------


def test_image_scores_on_planted_maps():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 1, 2] = 10.0  # one hot pixel
    maps[1] = np.arange(16).reshape(4, 4)
    assert set(IMAGE_SCORES) == {"mean", "max", "top_k"}
    np.testing.assert_allclose(image_scores(maps, "mean"), [10 / 16, 7.5])
    np.testing.assert_allclose(image_scores(maps, "max"), [10.0, 15.0])
    # The top quarter of 0..15 is 12..15, mean 13.5; of the hot map, the 10 and three zeros.
    np.testing.assert_allclose(image_scores(maps, "top_k", top_share=0.25), [2.5, 13.5])
    np.testing.assert_allclose(image_scores(maps, "top_k", top_share=1.0), image_scores(maps, "mean"))
    np.testing.assert_allclose(image_scores(maps, "top_k", top_share=1 / 16), image_scores(maps, "max"))
    with pytest.raises(ConfigError):
        image_scores(maps, "top_k", top_share=0.0)
    with pytest.raises(ConfigError, match="max, mean, top_k"):
        image_scores(maps, "median")


# --- pixel figures ------------------------------------------------------------------------------


def reference_pro(maps: np.ndarray, masks: np.ndarray, max_fpr: float) -> float:
    """PRO the slow, literal way: each threshold in turn, each region in turn, each segment in turn."""
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(index, labelled == region) for region in range(1, count + 1)]
    normal = ~masks
    # "map > t" for every distinct score t, from the highest (nothing flagged) down, then everything.
    thresholds = [*np.unique(maps)[::-1], -np.inf]
    points = []
    for threshold in thresholds:
        flagged = maps > threshold
        overlap = np.mean([flagged[index][region].mean() for index, region in regions])
        points.append((flagged[normal].mean(), overlap))
    area = 0.0
    for (fpr_start, pro_start), (fpr_end, pro_end) in zip(points, points[1:], strict=False):
        if fpr_start >= max_fpr:
            break
        if fpr_end > max_fpr:
            pro_end = pro_start + (pro_end - pro_start) * (max_fpr - fpr_start) / (fpr_end - fpr_start)
            fpr_end = max_fpr
        area += (fpr_end - fpr_start) * (pro_start + pro_end) / 2
    return area / max_fpr


def test_a_map_equal_to_the_mask_is_perfect():
    masks = rectangle_masks(5, 24, seed=1)
    maps = masks.astype(np.float32)
    assert pixel_auroc(maps, masks) == 1.0
    assert pro_score(maps, masks) == pytest.approx(1.0, abs=1e-12)


def test_constant_and_random_maps_score_at_chance():
    masks = rectangle_masks(8, 64, seed=2)
    constant = np.full(masks.shape, 0.5, np.float32)
    assert pixel_auroc(constant, masks) == 0.5
    # All pixels tie, so the curve is the one step (0, 0)-(1, 1): PRO = FPR, area 0.3^2 / 2, over 0.3.
    assert pro_score(constant, masks) == pytest.approx(0.15, abs=1e-12)
    random = np.random.default_rng(3).random(masks.shape).astype(np.float32)
    assert pixel_auroc(random, masks) == pytest.approx(0.5, abs=0.02)
    assert pro_score(random, masks) == pytest.approx(0.15, abs=0.02)


def test_pro_of_a_hand_computed_case():
    # Image A (4x4): region R1, the 2x2 block at the top left, scored 0.9, 0.9, 0.2, 0.0.
    # Image B (4x4): region R2, the single pixel (2, 2), scored 0.9.
    # Normal pixels: 12 + 15 = 27, all 0 but three at 0.5 (two in A, one in B).
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[1, 2, 2] = True
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 0, :2] = 0.9
    maps[0, 1, 0] = 0.2
    maps[1, 2, 2] = 0.9
    maps[0, 3, 2:] = 0.5
    maps[1, 0, 3] = 0.5
    # Thresholds (score >= t), FPR and PRO = mean(R1 share, R2 share):
    #   above 0.9: (0, 0);  0.9: FPR 0, PRO (2/4 + 1)/2 = 0.75;  0.5: FPR 3/27 = 1/9, PRO 0.75;
    #   0.2: FPR 1/9, PRO (3/4 + 1)/2 = 0.875;  0.0: (1, 1).
    fprs, pros = pro_curve(maps, masks)
    np.testing.assert_allclose(fprs, [0, 0, 1 / 9, 1 / 9, 1, 1])
    np.testing.assert_allclose(pros, [0, 0.75, 0.75, 0.875, 1, 1])
    # Up to 0.05: PRO is 0.75 throughout, so the normalized area is 0.75.
    assert pro_score(maps, masks, max_fpr=0.05) == pytest.approx(0.75)
    # Up to 0.3: 0.75 * 1/9 = 1/12, then the segment (1/9, 0.875)-(1, 1) of slope 0.125 / (8/9) = 9/64,
    # at 0.3: 0.875 + 9/64 * (0.3 - 1/9) = 0.875 + 17/640 = 577/640; trapezoid (560 + 577)/1280 * 17/90.
    area = 1 / 12 + (560 + 577) / 1280 * 17 / 90
    assert pro_score(maps, masks, max_fpr=0.3) == pytest.approx(area / 0.3)  # 28929 / 34560 = 0.8371
    # Up to 1: 1/12 + (0.875 + 1) / 2 * 8/9 = 11/12.
    assert pro_score(maps, masks, max_fpr=1.0) == pytest.approx(11 / 12)


@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 1.0])
@pytest.mark.parametrize("decimals", [None, 1])  # distinct scores, and many ties
def test_vectorized_pro_equals_the_slow_reference(max_fpr, decimals):
    masks = rectangle_masks(4, 16, seed=4)
    maps = np.random.default_rng(5).random(masks.shape) + 0.4 * masks
    maps = (maps if decimals is None else np.round(maps, decimals)).astype(np.float32)
    assert pro_score(maps, masks, max_fpr) == pytest.approx(reference_pro(maps, masks, max_fpr), abs=1e-9)


def test_regions_are_eight_connected_and_numbered_across_images():
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # touching diagonally: one region
    masks[0, 4, 4] = True
    masks[1, 2, 0:3] = True
    labels, count = region_labels(masks)
    assert count == 3
    assert labels[0, 0, 0] == labels[0, 1, 1] == 1 and labels[0, 4, 4] == 2 and (labels[1, 2, 0:3] == 3).all()


def test_figures_refuse_masks_without_defects():
    masks = np.zeros((2, 8, 8), bool)
    maps = np.random.default_rng(0).random(masks.shape)
    with pytest.raises(DataError):
        pro_score(maps, masks)
    with pytest.raises(DataError):
        pixel_auroc(maps, masks)


# --- thresholds ---------------------------------------------------------------------------------


def test_quantile_threshold_and_f1_on_planted_scores():
    assert quantile_threshold(np.arange(101) / 100, 0.95) == pytest.approx(0.95)
    scores = np.array([0.97, 0.99, 0.5, 0.1, 0.96, 0.2])
    is_anomaly = np.array([True, True, True, False, False, False])
    # Flagged above 0.95: two anomalies and one normal; one anomaly missed. Precision = recall = 2/3.
    assert f1_at(scores, is_anomaly, 0.95) == pytest.approx(2 / 3)
    assert f1_at(scores, is_anomaly, 0.4) == pytest.approx(2 * 3 / (2 * 3 + 1))  # TP 3, FP 1, FN 0
    with pytest.raises(ConfigError):
        quantile_threshold(scores, 1.5)
