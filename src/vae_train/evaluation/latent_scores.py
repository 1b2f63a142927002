"""Anomaly scores from the codes alone: how far an image's code lies from the codes of the normal
training images, in the one-class protocol (``data.train_classes``). Higher is more anomalous, as for
the likelihood scores of :mod:`.anomaly`, whose figures (AUROC, AP, FPR95) they get.

``latent_knn``: the mean Euclidean distance to the ``evaluation.knn_k`` nearest normal training codes
(scikit-learn's ``NearestNeighbors``): no assumption on the codes' shape, so it follows a normal class
whose codes curve or split into several clusters.

``latent_mahalanobis``: the Mahalanobis distance to the normal training codes' mean under their
covariance, in standard deviations: one ellipsoid, which suits a VAE's roughly Gaussian codes. The
covariance is scikit-learn's ``LedoitWolf`` rather than ``EmpiricalCovariance``: its shrinkage towards
a scaled identity keeps the inverse well conditioned where the empirical one is nearly singular, which
a VAE's collapsed latent dimensions make it (their posterior means barely vary, and an empirical
inverse would count a tiny wobble along them as many standard deviations), as do few normal images
for a large code; on well-spread codes the shrinkage is close to zero and the two agree.

Pure functions of the codes, (training codes, test codes) -> one score per test code.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

LATENT_SCORES = ("latent_knn", "latent_mahalanobis")


def knn_distance(train_codes: np.ndarray, test_codes: np.ndarray, k: int) -> np.ndarray:
    """The mean distance of each test code to its ``k`` nearest training codes (all of them if fewer)."""
    neighbours = NearestNeighbors(n_neighbors=min(k, len(train_codes))).fit(train_codes)
    distances, _ = neighbours.kneighbors(test_codes)
    return distances.mean(axis=1)


def own_knn_distance(train_codes: np.ndarray, k: int) -> np.ndarray:
    """:func:`knn_distance` of each training code to the other training codes, itself left out: the
    score a training image would get were it unseen."""
    neighbours = NearestNeighbors(n_neighbors=min(k, len(train_codes) - 1)).fit(train_codes)
    distances, _ = neighbours.kneighbors()  # scikit-learn leaves each point out of its own neighbours
    return distances.mean(axis=1)


def mahalanobis_distance(train_codes: np.ndarray, test_codes: np.ndarray) -> np.ndarray:
    """The Mahalanobis distance of each test code to the training codes' mean, under their Ledoit-Wolf
    covariance."""
    covariance = LedoitWolf().fit(train_codes)
    return np.sqrt(covariance.mahalanobis(test_codes))  # scikit-learn's is the squared distance


def latent_scores(train_codes: np.ndarray, test_codes: np.ndarray, knn_k: int) -> dict[str, np.ndarray]:
    """``latent_knn`` and ``latent_mahalanobis`` of ``test_codes`` against the normal ``train_codes``."""
    return {"latent_knn": knn_distance(train_codes, test_codes, knn_k),
            "latent_mahalanobis": mahalanobis_distance(train_codes, test_codes)}


def own_latent_scores(train_codes: np.ndarray, knn_k: int) -> dict[str, np.ndarray]:
    """The same scores of the training codes themselves, each left out of its own neighbours (the
    Mahalanobis distance's mean and covariance, fitted on thousands of codes, keep it in)."""
    return {"latent_knn": own_knn_distance(train_codes, knn_k),
            "latent_mahalanobis": mahalanobis_distance(train_codes, train_codes)}
