"""Visual inspection: where an image is anomalous. Per-pixel anomaly maps of a model's reconstructions
(:mod:`.anomaly_maps`), image scores from each map, the pixel-level figures against defect masks
(:mod:`.segmentation`), and the picture of images, reconstructions, maps and masks side by side.

Image scores are named ``<map>_<reduction>``: ``l2_mean``, ``l2_max``, ``l2_top_k``, ``ssim_mean``, ...
Pixel figures are ``anomaly_pixel_auroc_<map>`` and ``anomaly_pro_<map>`` (PRO up to a false-positive
rate of 30%, as MVTec AD defines it), overall and per defect type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from vae_train.evaluation.anomaly_maps import ANOMALY_MAPS, IMAGE_SCORES, image_scores, smooth
from vae_train.evaluation.segmentation import PRO_MAX_FPR, pixel_auroc, pro_score
from vae_train.models import Autoencoder
from vae_train.runtime.functions import run_function

# Test images of each defect type (and of the normal images) in the inspection picture.
PICTURED_PER_CLASS = 2
PICTURED_CLASSES = 6


@run_function(reduce_retracing=True)
def _reconstructions(model: Autoencoder, images: tf.Tensor) -> tf.Tensor:
    return model.mean_images(model(images))


@dataclass
class Inspection:
    """The maps of a split's images, by map name, and the image scores they give."""

    maps: dict[str, np.ndarray]  # name -> (images, height, width) float32
    scores: dict[str, np.ndarray]  # "<map>_<reduction>" -> (images,)


def inspect(model: Autoencoder, batches: tf.data.Dataset, map_names: list[str], sigma: float,
            top_share: float) -> Inspection:
    """Each image's maps (``map_names``, blurred by ``sigma`` pixels) and their image scores."""
    maps: dict[str, list[np.ndarray]] = {name: [] for name in map_names}
    for images in batches:
        reconstructions = _reconstructions(model, images)
        for name in map_names:
            maps[name].append(ANOMALY_MAPS[name](images, reconstructions).numpy())
    joined = {name: smooth(np.concatenate(parts), sigma).astype(np.float32) for name, parts in maps.items()}
    scores = {f"{name}_{reduction}": image_scores(values, reduction, top_share)
              for name, values in joined.items() for reduction in IMAGE_SCORES}
    return Inspection(joined, scores)


def key_of(class_name: str) -> str:
    """A class name as a part of a figure's name (results.json key, TensorBoard tag)."""
    return "".join(character if character.isalnum() else "_" for character in class_name.lower()).strip("_")


def pixel_figures(maps: dict[str, np.ndarray], masks: np.ndarray, has_mask: np.ndarray, labels: np.ndarray,
                  class_names: tuple[str, ...], normal_labels: tuple[int, ...]) -> dict[str, float]:
    """Pixel AUROC and PRO of each map over the images with a known mask (the normal ones have an empty
    one), and per defect type (its images beside the normal ones)."""
    masks = np.asarray(masks)[..., 0] > 0
    normal = np.isin(labels, normal_labels)
    groups = {"": has_mask}
    for label in sorted(set(labels[~normal].tolist())):
        groups[f"_{key_of(class_names[label])}"] = has_mask & (normal | (labels == label))
    figures = {}
    for name, values in maps.items():
        for suffix, chosen in groups.items():
            if not masks[chosen].any():  # no defect pixel to find: no pixel figure
                continue
            figures[f"anomaly_pixel_auroc_{name}{suffix}"] = pixel_auroc(values[chosen], masks[chosen])
            figures[f"anomaly_pro_{name}{suffix}"] = pro_score(values[chosen], masks[chosen], PRO_MAX_FPR)
    return figures


def _coloured(maps: np.ndarray, highest: float) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["inferno"](np.clip(maps / max(highest, 1e-12), 0, 1))[..., :3].astype(np.float32)


def pictured(labels: np.ndarray, normal_labels: tuple[int, ...]) -> np.ndarray:
    """The test images the inspection picture shows: the first of each defect type, then normal ones."""
    order = [label for label in dict.fromkeys(labels.tolist()) if label not in normal_labels]
    order = order[:PICTURED_CLASSES - 1] + [label for label in normal_labels if label in labels][:1]
    return np.array([index for label in order for index in np.flatnonzero(labels == label)[:PICTURED_PER_CLASS]],
                    dtype=np.int64)


def inspection_picture(images: np.ndarray, reconstructions: np.ndarray, maps: dict[str, np.ndarray],
                       masks: np.ndarray | None) -> np.ndarray:
    """Rows of the images, their reconstructions, each map (a colour map, one scale per map) and the
    masks; a column per image. RGB floats in [0, 1]."""
    from vae_train.evaluation.pictures import tile

    def rgb(batch: np.ndarray) -> np.ndarray:
        return np.repeat(batch, 3, axis=-1) if batch.shape[-1] == 1 else batch

    rows = [rgb(images), rgb(reconstructions)]
    rows += [_coloured(values, float(values.max())) for values in maps.values()]
    if masks is not None:
        rows.append(rgb((np.asarray(masks) > 0).astype(np.float32)))
    return tile(np.concatenate(rows).astype(np.float32), columns=len(images))
