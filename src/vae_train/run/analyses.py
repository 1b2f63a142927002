"""What a finished run's model is worth, beyond its test loss: the likelihood bound, the one-class
anomaly scores and their AUROC, and the codes against PCA. Computed at the end of training (into
results.json and TensorBoard) and by ``vae-eval`` (into metrics.json and eval/), by the same code."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from vae_train.config import Config
from vae_train.data.pipeline import ImageDataset, ImagePipelines, class_indices
from vae_train.evaluation.anomaly import detection_figures, score_histograms
from vae_train.evaluation.codes import encode_with_images, reconstruction_errors
from vae_train.evaluation.likelihood import has_likelihood_bound, per_image_bounds
from vae_train.evaluation.pictures import ENCODE_BATCH, rasterize
from vae_train.evaluation.representation import Codes, active_units, code_figures, pca_baseline
from vae_train.models import Autoencoder

log = logging.getLogger(__name__)


@dataclass
class Analysis:
    figures: dict[str, float] = field(default_factory=dict)  # results.json / metrics.json
    pictures: dict[str, np.ndarray] = field(default_factory=dict)  # TensorBoard's test run / PNG files
    per_image: dict[str, np.ndarray] = field(default_factory=dict)  # eval/*.npy
    test_scores: dict[str, np.ndarray] = field(default_factory=dict)  # per test image, as computed (anomaly_scores)


def anomaly_scores(model: Autoencoder, pipelines: ImagePipelines, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """The anomaly scores of every test image of ``pipelines``: ``reconstruction``, and for a VAE with a
    likelihood, ``neg_elbo`` and ``nll_iw`` from ``num_samples`` importance samples."""
    started = time.perf_counter()
    scores = {"reconstruction": reconstruction_errors(model, pipelines.test())}
    timing = f"reconstruction {time.perf_counter() - started:.1f} s"
    if has_likelihood_bound(model, num_samples):
        started = time.perf_counter()
        scores["neg_elbo"], scores["nll_iw"] = per_image_bounds(model, pipelines.test_batches(), num_samples, seed)
        timing += f", neg_elbo and nll_iw (K = {num_samples}) {time.perf_counter() - started:.1f} s"
    log.info("Anomaly scores of %d images: %s.", len(scores["reconstruction"]), timing)
    return scores


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


def representation(model: Autoencoder, dataset: ImageDataset, pipelines: ImagePipelines, settings: Config) -> dict:
    """The codes' figures and PCA's at the same size (see :mod:`vae_train.evaluation.representation`);
    for unlabelled images, only PCA's reconstruction error and the active units."""
    started = time.perf_counter()
    limit = _representation_limit(dataset, settings)
    train_codes, train_images = encode_with_images(model, pipelines.in_order("train", ENCODE_BATCH), limit)
    test_codes, test_images = encode_with_images(model, pipelines.in_order("test", ENCODE_BATCH))
    if not (np.all(np.isfinite(train_codes)) and np.all(np.isfinite(test_codes))):
        log.warning("No figures of the codes: some codes are not finite (a model gone NaN?).")
        return {}
    train_labels, test_labels = dataset.train.labels[:len(train_codes)], dataset.test.labels
    classes = len(dataset.class_names)
    seed, knn_k = settings.seed, settings.evaluation.knn_k
    pca_train, pca_test, pca_error = pca_baseline(train_images, test_images, model.latent_dim, seed,
                                                  lambda images, logits: model.reconstruction_loss(images, logits))
    figures = {}
    if dataset.labelled:
        figures = code_figures(Codes(train_codes, train_labels, test_codes, test_labels), classes, knn_k, seed)
        pca = code_figures(Codes(pca_train, train_labels, pca_test, test_labels), classes, knn_k, seed)
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


def analyse(model: Autoencoder, dataset: ImageDataset, pipelines: ImagePipelines, settings: Config,
            one_class: bool = True) -> Analysis:
    """The end-of-run figures of ``model`` on the run's test set; with ``one_class``, its images of the
    classes the run did not train on (``data.train_classes``) scored as anomalies; without, every
    anomaly score of the test set is kept in ``test_scores`` for the caller's other dataset."""
    analysis = Analysis()
    num_samples, seed = settings.evaluation.iw_samples, settings.seed
    classes = settings.data.train_classes
    is_anomaly = (None if classes is None or not one_class
                  else ~np.isin(dataset.test.labels, class_indices(classes, dataset.class_names)))
    if is_anomaly is not None and is_anomaly.any() and not is_anomaly.all():
        scores = anomaly_scores(model, pipelines, num_samples, seed)
        detect(scores, dataset.test.labels, is_anomaly, f"classes {classes} normal, the others anomalous", analysis)
    elif not one_class:
        scores = anomaly_scores(model, pipelines, num_samples, seed)
    else:
        if is_anomaly is not None:
            log.info("No anomaly figures: the evaluated images are all of the training classes %s.", classes)
        scores = ({"nll_iw": per_image_bounds(model, pipelines.test_batches(), num_samples, seed)[1]}
                  if has_likelihood_bound(model, num_samples) else {})
    analysis.test_scores = scores
    if "nll_iw" in scores:  # the same samples as the anomaly scores'
        analysis.figures.update({"test_nll_iw": float(np.mean(scores["nll_iw"], dtype=np.float64)),
                                 "iw_samples": num_samples})
    if settings.evaluation.representation:
        analysis.figures.update(representation(model, dataset, pipelines, settings))
    return analysis
