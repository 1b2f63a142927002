"""Per-pixel anomaly maps of images against their reconstructions, and image-level scores read from them.

The visual-inspection protocol of MVTec AD (Bergmann et al. 2019, 2021): an autoencoder trained on good
images reconstructs a test image, and where the two differ the image is likely defective.

Maps, picked by config name from :data:`ANOMALY_MAPS`, each computed in TensorFlow on a batch of images
and reconstructions (float32 in [0, 1], shape ``(batch, h, w, c)``) and returned as ``(batch, h, w)``
float32:

* ``l2``: the squared reconstruction error of each pixel, summed over channels.
* ``ssim``: one minus the local SSIM of each pixel, summed over channels (the AE-SSIM of Bergmann et al.
  2019). SSIM uses the standard Gaussian window (11 pixels, sigma 1.5) and constants (K1 = 0.01,
  K2 = 0.03, max value 1); see :func:`ssim_map` for the borders and tiny images.

:func:`smooth` blurs the maps (a Gaussian per map), and :func:`image_scores` reduces each map to one
number by a rule from :data:`IMAGE_SCORES`: ``mean``, ``max`` or ``top_k`` (the mean of the map's
highest ``top_share`` of pixels).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from scipy import ndimage

from vae_train.errors import ConfigError

SSIM_WINDOW_SIZE = 11
SSIM_WINDOW_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_MAX_VALUE = 1.0


def l2_map(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """The squared error of each pixel, summed over channels: ``(batch, h, w)``."""
    images = tf.convert_to_tensor(images, tf.float32)
    reconstructions = tf.convert_to_tensor(reconstructions, tf.float32)
    return tf.reduce_sum(tf.square(images - reconstructions), axis=-1)


def _gaussian_window(size: int, sigma: float) -> tf.Tensor:
    """The normalized 1-D Gaussian of ``size`` taps centred on the middle tap; its outer product with
    itself is the 2-D window MATLAB's ``fspecial('gaussian')`` and ``tf.image.ssim`` use."""
    offsets = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    weights = tf.exp(-tf.square(offsets) / (2.0 * sigma**2))
    return weights / tf.reduce_sum(weights)


def _window_size_for(height: int, width: int) -> int:
    """11, or for images smaller than that the largest odd size that fits: an odd window stays centred
    on its pixel, where an even one would shift every map by half a pixel."""
    fitting = min(SSIM_WINDOW_SIZE, height, width)
    return fitting if fitting % 2 == 1 else fitting - 1


def _blur(tensor: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """The Gaussian-weighted sum around each pixel, per channel, with zeros outside the image: two 1-D
    depthwise convolutions ('SAME'), as the 2-D Gaussian is separable."""
    channels = tf.shape(tensor)[-1]
    size = tf.shape(window)[0]
    down = tf.tile(tf.reshape(window, (size, 1, 1, 1)), (1, 1, channels, 1))
    across = tf.tile(tf.reshape(window, (1, size, 1, 1)), (1, 1, channels, 1))
    strides = (1, 1, 1, 1)
    blurred = tf.nn.depthwise_conv2d(tensor, down, strides, padding="SAME")
    return tf.nn.depthwise_conv2d(blurred, across, strides, padding="SAME")


def ssim_map(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """``1 - SSIM`` of each pixel's neighbourhood, summed over channels: ``(batch, h, w)``, each channel's
    term in [0, 2], exactly 0 where the two agree over the whole window.

    Borders: the map keeps the image's size, so windows at the border reach past it. They are zero-padded
    ('SAME' convolution, no reflection, which would invent structure the image does not have) and then
    divided by the weight of the window inside the image, so a border pixel's statistics are the Gaussian-
    weighted statistics of the pixels that exist. Pixels at least ``window // 2`` from every border see the
    whole window and get the standard SSIM: the mean of that part of the map, per channel, is
    ``1 - tf.image.ssim`` (which computes only that part, 'VALID', and only its mean).

    The terms are rearranged with ``d = x - y`` so that equal windows give exactly 0 rather than a rounding
    residue: ``mu_x^2 + mu_y^2 = 2 mu_x mu_y + mean(d)^2`` and ``var_x + var_y = 2 cov_xy + var(d)``; a
    window where ``d`` is 0 then has ``mean(d) = var(d) = 0`` to the bit, whatever order the convolution
    sums in.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    reconstructions = tf.convert_to_tensor(reconstructions, tf.float32)
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        height, width = (int(side) for side in tf.shape(images)[1:3])
    window = _gaussian_window(_window_size_for(height, width), SSIM_WINDOW_SIGMA)
    window_inside = _blur(tf.ones((1, height, width, 1), tf.float32), window)

    difference = images - reconstructions
    # One convolution for the five statistics: they are stacked along the channel axis.
    stacked = tf.concat([images, reconstructions, images * reconstructions, difference, tf.square(difference)],
                        axis=-1)
    means = _blur(stacked, window) / window_inside
    mean_x, mean_y, mean_xy, mean_d, mean_d_squared = tf.split(means, 5, axis=-1)

    c1 = (SSIM_K1 * SSIM_MAX_VALUE) ** 2
    c2 = (SSIM_K2 * SSIM_MAX_VALUE) ** 2
    twice_mean_product = 2.0 * mean_x * mean_y
    twice_covariance = 2.0 * (mean_xy - mean_x * mean_y)
    # A variance cannot be negative; rounding can make E[d^2] - E[d]^2 so when d is nearly constant.
    variance_d = tf.maximum(mean_d_squared - tf.square(mean_d), 0.0)
    luminance = (twice_mean_product + c1) / (twice_mean_product + tf.square(mean_d) + c1)
    contrast_structure = (twice_covariance + c2) / (twice_covariance + variance_d + c2)
    return tf.reduce_sum(1.0 - luminance * contrast_structure, axis=-1)


ANOMALY_MAPS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {"l2": l2_map, "ssim": ssim_map}


def anomaly_maps(images: tf.Tensor, reconstructions: tf.Tensor, kind: str) -> tf.Tensor:
    """The ``kind`` map (a key of :data:`ANOMALY_MAPS`) of each image against its reconstruction."""
    if kind not in ANOMALY_MAPS:
        raise ConfigError(f"Unknown anomaly map {kind!r}; choose one of {', '.join(sorted(ANOMALY_MAPS))}.")
    return ANOMALY_MAPS[kind](images, reconstructions)


def smooth(maps: np.ndarray | tf.Tensor, sigma: float) -> np.ndarray:
    """Each map blurred by a Gaussian of ``sigma`` pixels (0: unchanged), as float32 ``(n, h, w)``.

    Blurring only within a map (sigma 0 along the batch axis); the edges are reflected (SciPy's default)
    so that border pixels are averaged with their neighbours rather than dimmed by zeros.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if sigma < 0:
        raise ConfigError(f"The smoothing sigma must be 0 (none) or positive, not {sigma}.")
    if sigma == 0:
        return maps
    return ndimage.gaussian_filter(maps, sigma=(0, sigma, sigma)).astype(np.float32, copy=False)


def _mean_score(flat_maps: np.ndarray, top_share: float) -> np.ndarray:
    return flat_maps.mean(axis=1, dtype=np.float64)


def _max_score(flat_maps: np.ndarray, top_share: float) -> np.ndarray:
    return flat_maps.max(axis=1).astype(np.float64)


def _top_k_score(flat_maps: np.ndarray, top_share: float) -> np.ndarray:
    pixels = flat_maps.shape[1]
    # Rounded to the nearest count rather than ceil'd, so 0.07 of 100 pixels is 7, not 8 from 7.000000001.
    kept = min(pixels, max(1, round(top_share * pixels)))
    highest = np.partition(flat_maps, pixels - kept, axis=1)[:, pixels - kept:]
    return highest.mean(axis=1, dtype=np.float64)


IMAGE_SCORES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "mean": _mean_score,
    "max": _max_score,
    "top_k": _top_k_score,
}


def image_scores(maps: np.ndarray, kind: str, top_share: float = 0.01) -> np.ndarray:
    """One score per map ``(n,)``, float64, by the rule ``kind`` of :data:`IMAGE_SCORES`.

    ``top_share`` (in (0, 1]) is only read by ``top_k``: the share of each map's pixels, the highest, whose
    mean is the score (at least one pixel); 1.0 gives the mean, one pixel the max.
    """
    if kind not in IMAGE_SCORES:
        raise ConfigError(f"Unknown image score {kind!r}; choose one of {', '.join(sorted(IMAGE_SCORES))}.")
    if not 0.0 < top_share <= 1.0:
        raise ConfigError(f"The top share of pixels must be in (0, 1], not {top_share}.")
    maps = np.asarray(maps)
    return IMAGE_SCORES[kind](maps.reshape(maps.shape[0], -1), top_share)
