"""What a finished run's model is worth, beyond its test loss: the likelihood bound, the one-class
anomaly scores and their AUROC, and the codes against PCA. Computed at the end of training (into
results.json and TensorBoard) and by ``vae-eval`` (into metrics.json and eval/), by the same code."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from vae_train.config import AnomalyMap, Config
from vae_train.data.pipeline import ImageDataset, ImagePipelines, class_indices
from vae_train.evaluation.anomaly import defect_histograms, detection_figures, score_histograms
from vae_train.evaluation.codes import encode_with_images, reconstruction_errors
from vae_train.evaluation.combined_score import COMBINED, standardized_sum
from vae_train.evaluation.inspection import Inspection, inspect, inspection_picture, key_of, pictured, pixel_figures
from vae_train.evaluation.latent_scores import NormalCodes
from vae_train.evaluation.likelihood import has_likelihood_bound, per_image_bounds
from vae_train.evaluation.pictures import rasterize
from vae_train.evaluation.representation import Codes, active_units, code_figures, pca_baseline
from vae_train.evaluation.segmentation import f1_at, quantile_threshold
from vae_train.models import Autoencoder

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    figures: dict[str, float] = field(default_factory=dict)  # results.json / metrics.json
    pictures: dict[str, np.ndarray] = field(default_factory=dict)  # TensorBoard's test run / PNG files
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # eval/*.npy
    test_scores: dict[str, np.ndarray] = field(default_factory=dict)  # per test image, as computed (anomaly_scores)


def map_names(settings: Config, dataset: ImageDataset) -> list[str]:
    """The anomaly maps to compute: evaluation.anomaly_map; when null, both for an inspection data set."""
    chosen = settings.evaluation.anomaly_map
    if chosen is None:
        return [kind.value for kind in AnomalyMap] if dataset.normal_labels is not None else []
    return [kind.value for kind in chosen]


def anomaly_scores(model: Autoencoder, pipelines: ImagePipelines, settings: Config, split: str = "test",
                   map_names: list[str] = ()) -> dict[str, np.ndarray]:
    """The anomaly scores of every image of ``split``: ``reconstruction``, and for a VAE with a likelihood,
    ``neg_elbo`` and ``nll_iw`` from evaluation.iw_samples importance samples; the image scores of each
    map of ``map_names`` (see :mod:`vae_train.evaluation.inspection`)."""
    return scores_and_maps(model, pipelines, settings, split, map_names)[0]


def scores_and_maps(model: Autoencoder, pipelines: ImagePipelines, settings: Config, split: str = "test",
                    map_names: list[str] = (), progress_folder: Path | None = None
                    ) -> tuple[dict[str, np.ndarray], Inspection | None]:
    """:func:`anomaly_scores`, and the maps of the images. ``progress_folder``: where a long bound of the test
    images saves its parts (:func:`per_image_bounds`)."""
    num_samples, seed, evaluation = settings.evaluation.iw_samples, settings.seed, settings.evaluation
    batches = pipelines.test() if split == "test" else pipelines.in_order(split, pipelines.test_batch_size)
    started = time.perf_counter()
    scores = {"reconstruction": reconstruction_errors(model, batches)}
    timing = [f"reconstruction {time.perf_counter() - started:.1f} s"]
    if has_likelihood_bound(model, num_samples):
        started = time.perf_counter()
        in_memory = pipelines.test_batches() if split == "test" else batches
        scores["neg_elbo"], scores["nll_iw"] = per_image_bounds(
            model, in_memory, num_samples, seed, progress_folder=progress_folder if split == "test" else None)
        timing.append(f"neg_elbo and nll_iw (K = {num_samples}) {time.perf_counter() - started:.1f} s")
    inspection = None
    if map_names:
        started = time.perf_counter()
        inspection = inspect(model, batches, map_names, evaluation.anomaly_map_sigma, evaluation.anomaly_top_k)
        scores.update(inspection.scores)
        timing.append(f"maps {', '.join(inspection.maps)} {time.perf_counter() - started:.1f} s")
    log.info("Anomaly scores of the %d %s images: %s.", len(scores["reconstruction"]), split, ", ".join(timing))
    return scores, inspection


def detect(scores: dict[str, np.ndarray], labels: np.ndarray, is_anomaly: np.ndarray, title: str,
           analysis: Analysis) -> None:
    """The detection figures of ``scores``, their histograms' picture, and the per-image scores with the
    images' labels and whether each is an anomaly."""
    finite = {name: values for name, values in scores.items() if np.all(np.isfinite(values))}
    if len(finite) < len(scores):
        log.warning("No anomaly figures for %s: some images' scores are not finite (a model gone NaN?).",
                    ", ".join(sorted(set(scores) - set(finite))))
    scores = finite
    if not scores:
        return
    analysis.figures.update(detection_figures(scores, is_anomaly))
    analysis.pictures["anomaly_scores"] = rasterize(score_histograms(scores, is_anomaly, analysis.figures, title))
    analysis.per_image.update({f"anomaly_scores_{name}": values for name, values in scores.items()})
    analysis.per_image.update({"anomaly_labels": labels, "anomaly_is_anomaly": is_anomaly})


# The training images the codes' figures encode when evaluation.representation_examples is null: all
# of them up to this many bytes of float pixels (all of MNIST's 60,000; some 10,000 images of 64x64x3),
# since PCA's baseline holds them in memory.
REPRESENTATION_BYTES = 512 * 2**20


def _representation_limit(dataset: ImageDataset, settings: Config) -> int | None:
    if settings.evaluation.representation_examples is not None:
        return settings.evaluation.representation_examples
    affordable = REPRESENTATION_BYTES // (4 * math.prod(dataset.image_shape))
    if affordable < len(dataset.train.images):
        log.info("The codes' figures use the first %d of the %d training images (set "
                 "evaluation.representation_examples to choose).", affordable, len(dataset.train.images))
        return affordable
    return None


class EncodedSplits:
    """Each split's codes, and its float images, encoded once per analysis: the latent anomaly scores and
    the codes' figures share them. The training images within the codes' figures' limit; every test
    image's code (each is scored), but their float images within the same budget (REPRESENTATION_BYTES),
    as PCA's baseline holds them."""

    def __init__(self, model: Autoencoder, dataset: ImageDataset, pipelines: ImagePipelines, settings: Config):
        test_images = REPRESENTATION_BYTES // (4 * math.prod(dataset.image_shape))
        self._limits = {"train": (_representation_limit(dataset, settings), None), "test": (None, test_images)}
        self._model, self._pipelines = model, pipelines
        self._encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``split``'s codes and images, in order (maybe fewer images than codes, for the test split)."""
        if split not in self._encoded:
            batches = self._pipelines.in_order(split, self._pipelines.test_batch_size)
            self._encoded[split] = encode_with_images(self._model, batches, *self._limits[split])
        return self._encoded[split]


def representation(model: Autoencoder, dataset: ImageDataset, encoded: EncodedSplits, settings: Config) -> dict:
    """The codes' figures and PCA's at the same size (see :mod:`vae_train.evaluation.representation`);
    for unlabelled images, only PCA's reconstruction error and the active units."""
    started = time.perf_counter()
    (train_codes, train_images), (test_codes, test_images) = encoded("train"), encoded("test")
    test_codes = test_codes[:len(test_images)]  # the codes' figures and PCA's on the same test images
    if not (np.all(np.isfinite(train_codes)) and np.all(np.isfinite(test_codes))):
        log.warning("No figures of the codes: some codes are not finite (a model gone NaN?).")
        return {}
    train_labels, test_labels = dataset.train.labels[:len(train_codes)], dataset.test.labels[:len(test_codes)]
    classes = len(dataset.class_names)
    seed, knn_k, clustering = settings.seed, settings.evaluation.knn_k, settings.evaluation.clustering
    pca_train, pca_test, pca_error = pca_baseline(train_images, test_images, model.latent_dim, seed,
                                                  lambda images, logits: model.reconstruction_loss(images, logits))
    figures = {}
    if dataset.labelled:
        figures = code_figures(Codes(train_codes, train_labels, test_codes, test_labels), classes, knn_k, seed,
                               clustering)
        pca = code_figures(Codes(pca_train, train_labels, pca_test, test_labels), classes, knn_k, seed, clustering)
        figures.update({f"pca_{name}": value for name, value in pca.items()})
    else:
        log.info("The images are unlabelled: no probe, k-NN or k-means figures of the codes.")
    figures["pca_reconstruction"] = pca_error
    if model.variational:
        figures["active_units"] = active_units(test_codes)
    figures["representation_seconds"] = time.perf_counter() - started
    log.info("The codes' figures, on %d training and %d test images, took %.1f s: %s.", len(train_codes),
             len(test_codes), figures["representation_seconds"],
             ", ".join(f"{key} {value:.3g}" for key, value in figures.items() if key != "representation_seconds"))
    return figures


def normal_codes(encoded: EncodedSplits, settings: Config) -> NormalCodes | None:
    """The (normal) training images' codes, as many as the codes' figures encode, fitted for the latent
    scores (:mod:`vae_train.evaluation.latent_scores`); None when some codes are not finite."""
    (train_codes, _), (test_codes, _) = encoded("train"), encoded("test")
    if not (np.all(np.isfinite(train_codes)) and np.all(np.isfinite(test_codes))):
        log.warning("No latent anomaly scores: some codes are not finite (a model gone NaN?).")
        return None
    return NormalCodes.fit(train_codes, settings.evaluation.knn_k)


def combined_score(model: Autoencoder, pipelines: ImagePipelines, fitted_codes: NormalCodes | None,
                   settings: Config, test_scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``combined``, the sum of evaluation.anomaly_combined's scores standardized over the normal training
    images (:mod:`vae_train.evaluation.combined_score`); none when one of them is missing (non-finite codes)."""
    parts = [part.value for part in settings.evaluation.anomaly_combined or []]
    if not parts or not all(name in test_scores for name in parts):
        return {}
    normal = {}
    if "reconstruction" in parts:
        normal["reconstruction"] = reconstruction_errors(model, pipelines.in_order("train", pipelines.test_batch_size))
    if fitted_codes is not None:
        normal.update(fitted_codes.own_scores(parts))
    return {COMBINED: standardized_sum(normal, test_scores, parts)}


def anomalous_test_images(dataset: ImageDataset, settings: Config) -> tuple[np.ndarray | None, str]:
    """Which test images are the anomalies, and how to say so: those outside the source's normal classes
    (an inspection data set's "good"), else outside data.train_classes; None when neither says."""
    labels = dataset.test.labels
    if dataset.normal_labels is not None:
        normal = [dataset.class_names[label] for label in dataset.normal_labels]
        return ~np.isin(labels, dataset.normal_labels), f"{', '.join(normal)} normal, the defects anomalous"
    classes = settings.data.train_classes
    if classes is None:
        return None, ""
    normal = class_indices(classes, dataset.class_names)
    return ~np.isin(labels, normal), f"classes {classes} normal, the others anomalous"


def per_class_detection(scores: dict[str, np.ndarray], dataset: ImageDataset, is_anomaly: np.ndarray) -> dict:
    """The detection figures of each anomalous class (a defect type) against the normal images."""
    figures = {}
    labels = dataset.test.labels
    for label in sorted(set(labels[is_anomaly].tolist())):
        chosen = ~is_anomaly | (labels == label)
        suffix = key_of(dataset.class_names[label])
        figures.update({f"{name}_{suffix}": value for name, value in
                        detection_figures({n: v[chosen] for n, v in scores.items()}, is_anomaly[chosen]).items()})
    return figures


def thresholds(model: Autoencoder, pipelines: ImagePipelines, settings: Config, scores: dict[str, np.ndarray],
               is_anomaly: np.ndarray, maps: list[str]) -> dict[str, float]:
    """Each score's threshold, its evaluation.anomaly_quantile on the normal validation images (scored as
    the test images were, with the maps ``maps``), and the test F1 at it."""
    validation = anomaly_scores(model, pipelines, settings, "validation", maps)
    figures = {}
    for name, values in scores.items():
        threshold = quantile_threshold(validation[name], settings.evaluation.anomaly_quantile)
        figures[f"anomaly_threshold_{name}"] = threshold
        figures[f"anomaly_f1_{name}"] = f1_at(values, is_anomaly, threshold)
    return figures


def inspection_figures(model: Autoencoder, dataset: ImageDataset, inspection: Inspection, analysis: Analysis) -> None:
    """Pixel AUROC and PRO where the test images have masks, the picture of maps and masks, and the maps
    and image paths for vae-eval's files."""
    test = dataset.test
    if test.masks is not None and test.has_mask is not None and test.has_mask.any():
        analysis.figures.update(pixel_figures(inspection.maps, test.masks, test.has_mask, test.labels,
                                              dataset.class_names, dataset.normal_labels or ()))
    shown = pictured(test.labels, dataset.normal_labels or ())
    if len(shown):
        images = test.images.take(shown, axis=0).astype(np.float32) / 255.0
        reconstructions = model.mean_images(model(tf.constant(images))).numpy()
        masks = None if test.masks is None else test.masks.take(shown, axis=0)
        analysis.pictures["anomaly_maps"] = inspection_picture(
            images, reconstructions, {name: values[shown] for name, values in inspection.maps.items()}, masks)
    analysis.per_image.update({f"anomaly_map_{name}": values.astype(np.float16)
                               for name, values in inspection.maps.items()})
    if test.paths is not None:
        analysis.per_image["anomaly_paths"] = np.asarray(test.paths)


def analyse(model: Autoencoder, dataset: ImageDataset, pipelines: ImagePipelines, settings: Config,
            one_class: bool = True, progress_folder: Path | None = None) -> Analysis:
    """The end-of-run figures of ``model`` on the run's test set; with ``one_class``, its anomalous images
    (outside the source's normal classes, or data.train_classes) scored as anomalies; without, every
    anomaly score of the test set is kept in ``test_scores`` for the caller's other dataset.
    ``progress_folder``: where a long likelihood bound saves its parts, to resume after a stop."""
    analysis = Analysis()
    encoded = EncodedSplits(model, dataset, pipelines, settings)
    num_samples, seed = settings.evaluation.iw_samples, settings.seed
    is_anomaly, title = anomalous_test_images(dataset, settings) if one_class else (None, "")
    if is_anomaly is not None and is_anomaly.any() and not is_anomaly.all():
        started = time.perf_counter()
        maps = map_names(settings, dataset)
        scores, inspection = scores_and_maps(model, pipelines, settings, "test", maps, progress_folder)
        # The latent scores and their combination get the detection figures only: the thresholds' validation
        # images and vae-eval --anomalies' other data set are scored by anomaly_scores, without the run's
        # training codes.
        fitted = normal_codes(encoded, settings)
        latent = {} if fitted is None else fitted.scores(encoded("test")[0])
        latent.update(combined_score(model, pipelines, fitted, settings, {**scores, **latent}))
        detect({**scores, **latent}, dataset.test.labels, is_anomaly, title, analysis)
        if dataset.normal_labels is not None:
            analysis.figures.update(per_class_detection(scores, dataset, is_anomaly))
            analysis.pictures["anomaly_scores_by_class"] = rasterize(defect_histograms(
                scores, dataset.test.labels, dataset.class_names, analysis.figures, title))
        if dataset.validation is not None:
            analysis.figures.update(thresholds(model, pipelines, settings, scores, is_anomaly, maps))
        if inspection is not None:
            inspection_figures(model, dataset, inspection, analysis)
        analysis.figures["anomaly_seconds"] = time.perf_counter() - started
    elif not one_class:
        scores = scores_and_maps(model, pipelines, settings, progress_folder=progress_folder)[0]
    else:
        if is_anomaly is not None:
            log.info("No anomaly figures: the evaluated images are all of the training classes %s.",
                     settings.data.train_classes)
        scores = ({"nll_iw": per_image_bounds(model, pipelines.test_batches(), num_samples, seed,
                                              progress_folder=progress_folder)[1]}
                  if has_likelihood_bound(model, num_samples) else {})
    analysis.test_scores = scores
    if "nll_iw" in scores:  # the same samples as the anomaly scores'
        analysis.figures.update({"test_nll_iw": float(np.mean(scores["nll_iw"], dtype=np.float64)),
                                 "iw_samples": num_samples})
    if settings.evaluation.representation:
        analysis.figures.update(representation(model, dataset, encoded, settings))
    return analysis
