"""What the codes are worth as a dimensionality reduction, against PCA at the same size.

On the test set: a logistic-regression probe and k-nearest neighbours fitted on the training codes
(their accuracy), and k-means with one cluster per class (the normalized mutual information of its
clusters with the classes, and its accuracy once each cluster is matched to a class by the Hungarian
assignment); with ``evaluation.clustering=umap_gmm`` also a Gaussian mixture on a UMAP embedding of
the codes (umap-learn, an optional extra), each clustering timed. The same for PCA with as many
components as the code has dimensions, fitted on the training images, with PCA's own reconstruction
error; and for VAEs the active units, the latent dimensions whose posterior mean varies across the
test set (Burda et al., 2015). All by scikit-learn and SciPy, but the UMAP embedding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vae_train.config import Clustering

log = logging.getLogger(__name__)

ACTIVE_UNIT_COVARIANCE = 0.01  # Burda et al.'s threshold on Cov_x(E_q[z_i])
# The probe's solver stops here: enough for standardized codes of up to a few dozen dimensions.
PROBE_ITERATIONS = 1000


@dataclass
class Codes:
    """Codes of the training and test images with their labels."""

    train: np.ndarray
    train_labels: np.ndarray
    test: np.ndarray
    test_labels: np.ndarray


def clustering_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """The share of images whose cluster, matched one to one to a class by the Hungarian assignment
    that maximizes the matches, is their class."""
    classes, label_index = np.unique(labels, return_inverse=True)
    cluster_ids, cluster_index = np.unique(clusters, return_inverse=True)
    counts = np.zeros((len(cluster_ids), len(classes)), np.int64)
    np.add.at(counts, (cluster_index, label_index), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, columns].sum() / len(labels))


def supervised_figures(codes: Codes, knn_k: int) -> dict[str, float]:
    """``probe_accuracy`` and ``knn_accuracy`` on the test codes, both fitted on the training codes."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_ITERATIONS))
    probe.fit(codes.train, codes.train_labels)
    neighbours = KNeighborsClassifier(n_neighbors=knn_k).fit(codes.train, codes.train_labels)
    return {"probe_accuracy": float(probe.score(codes.test, codes.test_labels)),
            "knn_accuracy": float(neighbours.score(codes.test, codes.test_labels))}


def kmeans_clusters(codes: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    return KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(codes)


# UMAP set for clustering rather than for a picture, as umap-learn's guide "Using UMAP for Clustering"
# advises: more neighbours than its default 15 (more of the global structure), points packed tightly
# (min_dist 0), a low-dimensional embedding for the mixture to fit.
UMAP_NEIGHBOURS = 30
UMAP_COMPONENTS = 2
GMM_INITS = 5  # the mixture's EM from several k-means starts, as k-means itself restarts


def umap_gmm_clusters(codes: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """A full-covariance Gaussian mixture with ``clusters`` components on the codes' UMAP embedding."""
    import umap  # the optional extra; importing it compiles numba code, so only when asked for

    # Seeded, UMAP runs on one thread whatever n_jobs says; saying so spares its warning.
    embedding = umap.UMAP(n_neighbors=min(UMAP_NEIGHBOURS, len(codes) - 1), n_components=UMAP_COMPONENTS,
                          min_dist=0.0, random_state=seed, n_jobs=1).fit_transform(codes)
    return GaussianMixture(n_components=clusters, n_init=GMM_INITS, random_state=seed).fit_predict(embedding)


# Each clustering by its figures' prefix: (codes, clusters, seed) -> a cluster per code.
CLUSTERINGS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "kmeans": kmeans_clusters,
    "umap_gmm": umap_gmm_clusters,
}
# What each evaluation.clustering runs: k-means always, so every run has the figures sweeps compare.
CLUSTERINGS_RUN = {Clustering.kmeans: ("kmeans",), Clustering.umap_gmm: ("kmeans", "umap_gmm")}


def clustering_figures(test_codes: np.ndarray, test_labels: np.ndarray, clusters: int, seed: int,
                       clustering: Clustering = Clustering.kmeans) -> dict[str, float]:
    """``<method>_nmi`` and ``<method>_accuracy`` of each clustering ``clustering`` runs on the test codes,
    without their labels; when it runs several, also ``<method>_seconds``, the cost each adds."""
    methods = CLUSTERINGS_RUN[clustering]
    figures = {}
    for method in methods:
        started = time.perf_counter()
        assigned = CLUSTERINGS[method](test_codes, clusters, seed)
        figures[f"{method}_nmi"] = float(normalized_mutual_info_score(test_labels, assigned))
        figures[f"{method}_accuracy"] = clustering_accuracy(test_labels, assigned)
        if len(methods) > 1:
            figures[f"{method}_seconds"] = time.perf_counter() - started
    return figures


def code_figures(codes: Codes, classes: int, knn_k: int, seed: int,
                 clustering: Clustering = Clustering.kmeans) -> dict[str, float]:
    """The probe's, k-NN's and the clusterings' figures of ``codes``; the supervised ones only when the
    training codes hold two classes or more (a one-class run has nothing to tell apart), with one log line."""
    figures = clustering_figures(codes.test, codes.test_labels, classes, seed, clustering)
    if len(np.unique(codes.train_labels)) < 2:
        log.info("The training images are of one class: no probe or k-NN accuracy.")
        return figures
    return {**supervised_figures(codes, knn_k), **figures}


PCA_ERROR_CHUNK = 1000  # test images reconstructed by PCA at a time


def pca_baseline(train_images: np.ndarray, test_images: np.ndarray, components: int, seed: int,
                 reconstruction_loss: Callable[[np.ndarray, np.ndarray], np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """PCA with ``components`` components fitted on the training images (flattened): the training and
    test codes, and PCA's reconstruction error on the test images in the model's units, by the
    model's ``reconstruction_loss`` of (images, logits) with the reconstruction clipped into (0, 1).
    Fewer training images than ``components`` (a short run of a large code) give as many components as images."""
    flat_train = train_images.reshape(len(train_images), -1)
    flat_test = test_images.reshape(len(test_images), -1)
    pca = PCA(n_components=min(components, *flat_train.shape), random_state=seed).fit(flat_train)
    test_codes = pca.transform(flat_test)
    # In chunks: the float64 reconstructions and their logits of 20,000 images of 64x64x3 took 10 GB at once.
    errors = []
    for start in range(0, len(flat_test), PCA_ERROR_CHUNK):
        chunk = slice(start, start + PCA_ERROR_CHUNK)
        reconstructed = np.clip(pca.inverse_transform(test_codes[chunk]), 1e-6, 1 - 1e-6)
        logits = (np.log(reconstructed) - np.log1p(-reconstructed)).astype(np.float32)
        errors.append(np.asarray(reconstruction_loss(test_images[chunk].astype(np.float32),
                                                     logits.reshape(test_images[chunk].shape))))
    error = float(np.mean(np.concatenate(errors)))
    return pca.transform(flat_train), test_codes, error


def active_units(test_means: np.ndarray) -> int:
    """Latent dimensions whose posterior mean varies across the test set: covariance above 0.01."""
    return int(np.sum(np.var(test_means, axis=0) > ACTIVE_UNIT_COVARIANCE))
