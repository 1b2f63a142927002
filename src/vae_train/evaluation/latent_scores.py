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

``NormalCodes`` fits both on the training codes once, then scores test codes, or the training codes
themselves for the one-class ``combined`` score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

LATENT_SCORES = ("latent_knn", "latent_mahalanobis")


@dataclass(frozen=True)
class NormalCodes:
    """The normal training codes with their nearest-neighbour index and Ledoit-Wolf covariance, fitted once."""

    codes: np.ndarray
    neighbours: NearestNeighbors
    covariance: LedoitWolf
    knn_k: int

    @classmethod
    def fit(cls, train_codes: np.ndarray, knn_k: int) -> NormalCodes:
        return cls(train_codes, NearestNeighbors().fit(train_codes), LedoitWolf().fit(train_codes), knn_k)

    @property
    def count(self) -> int:
        return len(self.codes)

    def knn_distance(self, test_codes: np.ndarray) -> np.ndarray:
        """The mean distance of each test code to its ``knn_k`` nearest training codes (all if fewer)."""
        distances, _ = self.neighbours.kneighbors(test_codes, n_neighbors=min(self.knn_k, self.count))
        return distances.mean(axis=1)

    def own_knn_distance(self) -> np.ndarray:
        """:meth:`knn_distance` of each training code to the other training codes, itself left out: the
        score a training image would get were it unseen."""
        # Without test codes scikit-learn leaves each point out of its own neighbours.
        distances, _ = self.neighbours.kneighbors(n_neighbors=min(self.knn_k, self.count - 1))
        return distances.mean(axis=1)

    def mahalanobis_distance(self, test_codes: np.ndarray) -> np.ndarray:
        """The Mahalanobis distance of each test code to the training codes' mean, under their covariance."""
        return np.sqrt(self.covariance.mahalanobis(test_codes))  # scikit-learn's is the squared distance

    def scores(self, test_codes: np.ndarray) -> dict[str, np.ndarray]:
        """``latent_knn`` and ``latent_mahalanobis`` of ``test_codes``."""
        return {"latent_knn": self.knn_distance(test_codes),
                "latent_mahalanobis": self.mahalanobis_distance(test_codes)}

    def own_scores(self, names: list[str]) -> dict[str, np.ndarray]:
        """The scores ``names`` (of :data:`LATENT_SCORES`) of the training codes themselves, each left out of
        its own neighbours (the Mahalanobis distance's mean and covariance, fitted on thousands of codes,
        keep it in)."""
        own = {"latent_knn": self.own_knn_distance,
               "latent_mahalanobis": lambda: self.mahalanobis_distance(self.codes)}
        return {name: own[name]() for name in names if name in own}
