"""The anomaly scores of the codes alone (latent_knn, latent_mahalanobis), on planted codes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vae_train.evaluation.latent_scores import NormalCodes


def planted(seed: int = 0, dims: int = 4, normal: int = 300, outliers: int = 20):
    """Normal codes in a stretched, tilted Gaussian cluster; test codes: more of them, then outliers placed
    just off the cluster across its thin axes, closer to its centre in plain distance than its far ends."""
    rng = np.random.default_rng(seed)
    scales = np.array([5.0, 0.2, 0.2, 0.2][:dims])
    rotation, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    train = (rng.normal(size=(normal, dims)) * scales) @ rotation.T
    test_normal = (rng.normal(size=(100, dims)) * scales) @ rotation.T
    offsets = np.zeros((outliers, dims))
    offsets[:, 1] = rng.choice([-1.0, 1.0], outliers) * 4.0  # 20 standard deviations across
    offsets[:, 0] = rng.uniform(-2.0, 2.0, outliers)
    test = np.concatenate([test_normal, offsets @ rotation.T])
    is_outlier = np.r_[np.zeros(100, bool), np.ones(outliers, bool)]
    return train, test, is_outlier


@pytest.mark.parametrize("name", ["latent_knn", "latent_mahalanobis"])
def test_the_scores_rank_the_planted_outliers_first(name):
    train, test, is_outlier = planted()
    scores = NormalCodes.fit(train, knn_k=5).scores(test)[name]
    assert scores.shape == (len(test),)
    assert scores[is_outlier].min() > scores[~is_outlier].max()
    assert roc_auc_score(is_outlier, scores) == 1.0


def test_the_mahalanobis_distance_is_in_standard_deviations_of_the_codes():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(20_000, 3)) * [1.0, 2.0, 4.0] + 7.0
    test = np.array([[7.0, 7.0, 7.0], [8.0, 7.0, 7.0], [7.0, 11.0, 7.0], [7.0, 7.0, 15.0]])
    # Close to zero shrinkage on this many codes: the distances of the true covariance.
    distances = NormalCodes.fit(train, knn_k=5).mahalanobis_distance(test)
    np.testing.assert_allclose(distances, [0.0, 1.0, 2.0, 2.0], atol=0.05)


def test_a_collapsed_dimension_neither_breaks_nor_swamps_the_mahalanobis_distance():
    """A VAE's inactive unit: its posterior mean barely varies. The shrunk covariance stays invertible, and
    a wobble along it far below the codes' spread does not outrank a true outlier."""
    train, test, is_outlier = planted(dims=4)
    rng = np.random.default_rng(2)
    train = np.c_[train, rng.normal(size=len(train)) * 1e-6]
    test = np.c_[test, rng.normal(size=len(test)) * 1e-3]  # a thousand times the training codes' spread
    scores = NormalCodes.fit(train, knn_k=5).mahalanobis_distance(test)
    assert np.all(np.isfinite(scores))
    assert scores[is_outlier].min() > scores[~is_outlier].max()


def test_knn_distance_is_the_mean_distance_to_the_nearest_training_codes():
    train = np.array([[0.0], [1.0], [3.0], [10.0]])
    np.testing.assert_allclose(NormalCodes.fit(train, knn_k=2).knn_distance(np.array([[0.0], [9.0]])), [0.5, 3.5])
    # Fewer training codes than k: all of them.
    np.testing.assert_allclose(NormalCodes.fit(train[:2], knn_k=5).knn_distance(np.array([[2.0]])), [1.5])


def test_a_training_code_is_left_out_of_its_own_neighbours():
    train = np.array([[0.0], [1.0], [3.0], [10.0]])
    # 0: to 1 and 3; 1: to 0 and 3; 3: to 1 and 0; 10: to 3 and 1; never the code itself at distance 0.
    np.testing.assert_allclose(NormalCodes.fit(train, knn_k=2).own_knn_distance(), [2.0, 1.5, 2.5, 8.0])
    # Fewer others than k: all of them.
    np.testing.assert_allclose(NormalCodes.fit(train[:2], knn_k=5).own_knn_distance(), [1.0, 1.0])


def test_the_training_codes_own_scores_are_only_those_named_and_match_the_test_scores_of_unseen_codes():
    train, _, _ = planted()
    fitted = NormalCodes.fit(train, knn_k=5)
    assert set(fitted.own_scores(["reconstruction", "latent_knn"])) == {"latent_knn"}
    own = fitted.own_scores(["latent_knn", "latent_mahalanobis"])
    # Left out of its own neighbours, a training code scores as it would against the others alone.
    others = NormalCodes.fit(train[1:], knn_k=5)
    np.testing.assert_allclose(own["latent_knn"][0], others.knn_distance(train[:1])[0])
    np.testing.assert_allclose(own["latent_mahalanobis"], fitted.mahalanobis_distance(train))
