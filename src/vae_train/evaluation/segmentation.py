"""Pixel-level anomaly figures against ground-truth defect masks, as the MVTec AD paper (Bergmann et al.
2019, 2021) and its evaluation code define them, and the thresholds that turn scores into decisions.

Inputs are anomaly maps ``(n, h, w)`` (higher: more anomalous) and boolean masks ``(n, h, w)`` (true on
defect pixels). Images without defects take part with all-false masks: their pixels are normal pixels, as
in MVTec's evaluation, where the good test images get all-zero ground truth.

* :func:`pixel_auroc`: scikit-learn's ROC AUC over every pixel, the defect pixels as the positive class.
* :func:`pro_score`: the normalized area under the per-region overlap (PRO) curve up to a false-positive
  rate of ``max_fpr`` (0.3 in MVTec AD). Regions are the connected components of each image's mask under
  8-connectivity (SciPy's ``ndimage.label`` with a 3x3 structure of ones, the structure MVTec's
  ``compute_pro`` passes; SciPy's own default would be 4-connectivity, which splits diagonal defects). At
  a threshold t, PRO(t) is the mean over all regions of all images of the share of the region's pixels
  with a score of at least t, and FPR(t) the share of all normal pixels with a score of at least t.
  Every distinct score is a threshold, so the curve is exact (no binning); tied pixels enter together,
  as one step. The curve starts at (0, 0), is integrated by the trapezoid rule up to ``max_fpr`` (the
  curve interpolated linearly there) and divided by ``max_fpr``, so a perfect map scores 1, a random one
  about ``max_fpr / 2`` and a constant one exactly that (its curve is the single step (0, 0)-(1, 1)).
* :func:`quantile_threshold` and :func:`f1_at`: a threshold set on normal validation scores, and the F1
  of the decisions ``score > threshold`` (scikit-learn).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc, f1_score, roc_auc_score

from vae_train.errors import ConfigError, DataError

EIGHT_CONNECTIVITY = np.ones((3, 3), dtype=bool)
PRO_MAX_FPR = 0.3  # the integration limit of MVTec AD


def _checked(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The maps as a float array (float32 kept, without a copy) and the masks as bools, same shape."""
    maps = np.asarray(maps)
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float32)
    masks = np.asarray(masks, dtype=bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"Maps and masks must both be (n, h, w) of one shape, not {maps.shape} and {masks.shape}.")
    if not np.isfinite(maps).all():
        raise DataError("The anomaly maps contain NaN or infinite values; the model's reconstructions diverged.")
    return maps, masks


def region_labels(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """The defect regions: an int32 ``(n, h, w)`` array, 0 on normal pixels and on each region's pixels an
    id (1, 2, ...) unique across all images, and the number of regions. 8-connectivity, as MVTec."""
    masks = np.asarray(masks, dtype=bool)
    labels = np.zeros(masks.shape, dtype=np.int32)
    region_count = 0
    for image_labels, mask in zip(labels, masks, strict=True):
        count = ndimage.label(mask, structure=EIGHT_CONNECTIVITY, output=image_labels)
        # Shift this image's ids past the previous images' so that every region has its own.
        image_labels[mask] += region_count
        region_count += count
    return labels, region_count


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float:
    """The ROC AUC of the map scores of all pixels, the defect pixels as positives (scikit-learn)."""
    maps, masks = _checked(maps, masks)
    if masks.all() or not masks.any():
        raise DataError("Pixel AUROC needs both defect and normal pixels among the masks given.")
    # Flattened views (for contiguous input), not float64 copies: the maps stay float32 and the masks bool.
    return float(roc_auc_score(masks.reshape(-1), maps.reshape(-1)))


def pro_curve(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve: false-positive rates and per-region overlaps, both non-decreasing, from (0, 0).

    Exact at every distinct score (see the module docstring). With ``max_fpr`` below 1, the curve holds
    every point up to ``max_fpr`` and at least the first point past it (needed to interpolate at
    ``max_fpr``), and no more: the pixels below the threshold of that point cannot change the curve up
    to ``max_fpr``, so they are left out before sorting. With ``max_fpr`` 1 it ends at (1, 1).
    """
    maps, masks = _checked(maps, masks)
    if not 0.0 < max_fpr <= 1.0:
        raise ConfigError(f"The PRO integration limit must be in (0, 1], not {max_fpr}.")
    labels, region_count = region_labels(masks)
    if region_count == 0:
        raise DataError("PRO needs defect regions, but every mask given is empty.")
    scores = maps.reshape(-1)
    labels = labels.reshape(-1)
    # From all pixels, before any are left out: a region's overlap is its flagged share of all of itself.
    region_sizes = np.bincount(labels, minlength=region_count + 1)
    normal_count = int(region_sizes[0])
    if normal_count == 0:
        raise DataError("PRO needs normal pixels, but the masks given cover every pixel.")

    # One more normal pixel than max_fpr allows, rounded up, so the last threshold kept lies past max_fpr.
    normal_needed = math.ceil(max_fpr * normal_count) + 1
    truncated = normal_needed <= normal_count
    if truncated:
        normal_scores = scores[labels == 0]
        cut_index = normal_count - normal_needed
        normal_scores.partition(cut_index)
        kept = scores >= normal_scores[cut_index]
        scores, labels = scores[kept], labels[kept]

    descending = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[descending]
    sorted_labels = labels[descending]
    overlap_per_pixel = np.zeros(region_count + 1)
    overlap_per_pixel[1:] = 1.0 / region_sizes[1:]
    false_positives = np.cumsum(sorted_labels == 0)
    overlaps = np.cumsum(overlap_per_pixel[sorted_labels])
    # A threshold flags all pixels of its score at once, so of each run of ties only the last point counts.
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    fprs = np.concatenate(([0.0], false_positives[last_of_tie] / normal_count))
    # Sums of thousands of 1/size terms can end a hair above 1.
    pros = np.concatenate(([0.0], np.minimum(overlaps[last_of_tie] / region_count, 1.0)))
    if not truncated:
        fprs, pros = np.append(fprs, 1.0), np.append(pros, 1.0)
    return fprs, pros


def _area_up_to(fprs: np.ndarray, pros: np.ndarray, max_fpr: float) -> float:
    """The trapezoid area under the curve from FPR 0 to ``max_fpr``, the curve interpolated linearly at
    ``max_fpr`` when no point lies there."""
    inside = int(np.searchsorted(fprs, max_fpr, side="right"))
    fprs_inside, pros_inside = fprs[:inside], pros[:inside]
    if fprs_inside[-1] < max_fpr:
        before_fpr, before_pro = fprs[inside - 1], pros[inside - 1]
        after_fpr, after_pro = fprs[inside], pros[inside]
        pro_at_limit = before_pro + (after_pro - before_pro) * (max_fpr - before_fpr) / (after_fpr - before_fpr)
        fprs_inside = np.append(fprs_inside, max_fpr)
        pros_inside = np.append(pros_inside, pro_at_limit)
    return float(auc(fprs_inside, pros_inside))


def pro_score(maps: np.ndarray, masks: np.ndarray, max_fpr: float = PRO_MAX_FPR) -> float:
    """The area under the PRO curve from FPR 0 to ``max_fpr``, divided by ``max_fpr``: 1 for a perfect
    map, about ``max_fpr / 2`` for a random one."""
    fprs, pros = pro_curve(maps, masks, max_fpr)
    return _area_up_to(fprs, pros, max_fpr) / max_fpr


def quantile_threshold(normal_scores: np.ndarray, quantile: float) -> float:
    """The ``quantile`` quantile of scores of normal (validation) images or pixels: deciding
    ``score > threshold`` then flags about ``1 - quantile`` of normal data."""
    if not 0.0 <= quantile <= 1.0:
        raise ConfigError(f"The threshold quantile must be in [0, 1], not {quantile}.")
    normal_scores = np.asarray(normal_scores).reshape(-1)
    if normal_scores.size == 0:
        raise DataError("A threshold needs normal scores, but none were given.")
    return float(np.quantile(normal_scores, quantile))


def f1_at(scores: np.ndarray, is_anomaly: np.ndarray, threshold: float) -> float:
    """scikit-learn's F1 of the decisions ``score > threshold`` against ``is_anomaly`` (any equal shapes:
    images or pixels), 0 when nothing is flagged and nothing anomalous."""
    scores = np.asarray(scores).reshape(-1)
    is_anomaly = np.asarray(is_anomaly, dtype=bool).reshape(-1)
    return float(f1_score(is_anomaly, scores > threshold, zero_division=0.0))
