"""The codes' worth (probe, k-NN, k-means against PCA, active units) and the latent walks
(interpolations, traversals), on planted data and tiny runs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from conftest import IMAGE_SHAPE, compose, synthetic_digits
from vae_train.config import Clustering, Interpolation, to_settings
from vae_train.config.schema import evaluation as evaluation_schema
from vae_train.errors import ConfigError
from vae_train.evaluation.latent_walks import (
    dimensions_by_variance,
    interpolation_codes,
    pairs_of_different_classes,
    traversal_codes,
)
from vae_train.evaluation.pictures import Pictures
from vae_train.evaluation.representation import (
    CLUSTERINGS,
    Codes,
    active_units,
    clustering_accuracy,
    clustering_figures,
    code_figures,
    pca_baseline,
)
from vae_train.models import build_model


def planted_codes(seed: int = 0, classes: int = 4, per_class: int = 60, shuffle_labels: bool = False) -> Codes:
    """Codes of planted classes: well apart clusters in 3-D, train and test drawn alike."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 3)) * 10

    def draw():
        labels = np.repeat(np.arange(classes), per_class)
        codes = centres[labels] + rng.normal(size=(len(labels), 3)) * 0.1
        return codes, rng.permutation(labels) if shuffle_labels else labels

    (train, train_labels), (test, test_labels) = draw(), draw()
    return Codes(train, train_labels, test, test_labels)


def test_probe_knn_and_kmeans_are_perfect_on_codes_that_separate_the_classes():
    figures = code_figures(planted_codes(), classes=4, knn_k=5, seed=0)
    assert figures == {"probe_accuracy": 1.0, "knn_accuracy": 1.0, "kmeans_nmi": pytest.approx(1.0),
                       "kmeans_accuracy": 1.0}


def test_probe_and_knn_are_at_chance_on_shuffled_labels():
    figures = code_figures(planted_codes(shuffle_labels=True), classes=4, knn_k=5, seed=0)
    assert figures["probe_accuracy"] == pytest.approx(0.25, abs=0.1)
    assert figures["knn_accuracy"] == pytest.approx(0.25, abs=0.1)
    assert figures["kmeans_nmi"] < 0.1


def test_one_class_codes_get_the_clustering_figures_only_and_say_so(caplog):
    codes = planted_codes()
    codes.train_labels = np.zeros_like(codes.train_labels)
    with caplog.at_level(logging.INFO):
        figures = code_figures(codes, classes=4, knn_k=5, seed=0)
    assert set(figures) == {"kmeans_nmi", "kmeans_accuracy"}
    assert "one class: no probe or k-NN accuracy" in caplog.text


def test_umap_gmm_adds_its_figures_and_the_time_each_clustering_took(monkeypatch):
    # A stand-in for UMAP and the mixture (k-means itself), so the figures' path runs without umap-learn.
    monkeypatch.setitem(CLUSTERINGS, "umap_gmm", CLUSTERINGS["kmeans"])
    figures = code_figures(planted_codes(), classes=4, knn_k=5, seed=0, clustering=Clustering.umap_gmm)
    assert set(figures) == {"probe_accuracy", "knn_accuracy", "kmeans_nmi", "kmeans_accuracy", "kmeans_seconds",
                            "umap_gmm_nmi", "umap_gmm_accuracy", "umap_gmm_seconds"}
    assert figures["umap_gmm_accuracy"] == figures["kmeans_accuracy"] == 1.0
    assert figures["kmeans_seconds"] >= 0 and figures["umap_gmm_seconds"] >= 0


@pytest.mark.slow  # numba compiles UMAP's code on first use: 25 to 50 s on two cores
def test_umap_and_a_gaussian_mixture_cluster_separable_codes_perfectly():
    pytest.importorskip("umap", reason="umap-learn is not installed: pip install 'vae-train[umap]'")
    codes = planted_codes()
    figures = clustering_figures(codes.test, codes.test_labels, 4, seed=0, clustering=Clustering.umap_gmm)
    assert figures["umap_gmm_accuracy"] == 1.0 and figures["umap_gmm_nmi"] == pytest.approx(1.0)


def test_umap_gmm_without_umap_learn_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setattr(evaluation_schema, "umap_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"umap-learn is not installed .* pip install 'vae-train\[umap\]'"):
        to_settings(compose(["evaluation.clustering=umap_gmm"]))
    assert to_settings(compose()).evaluation.clustering is Clustering.kmeans


def test_clustering_accuracy_matches_clusters_to_classes_one_to_one():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(labels, np.array([2, 2, 0, 0, 1, 1])) == 1.0  # renamed clusters
    assert clustering_accuracy(labels, np.array([0, 0, 0, 0, 1, 1])) == pytest.approx(4 / 6)


def test_pca_reconstructs_a_data_set_of_its_rank_exactly():
    rng = np.random.default_rng(0)
    rank = 3
    basis = rng.normal(size=(rank, 28 * 28)) * 0.02
    train = (0.5 + rng.normal(size=(200, rank)) @ basis).reshape(200, 28, 28, 1)
    test = (0.5 + rng.normal(size=(50, rank)) @ basis).reshape(50, 28, 28, 1)
    assert test.min() > 0.05 and test.max() < 0.95

    def squared_error(images, logits):
        return np.sum((1 / (1 + np.exp(-logits)) - images) ** 2, axis=(1, 2, 3))

    train_codes, test_codes, error = pca_baseline(train, test, rank, seed=0, reconstruction_loss=squared_error)
    assert train_codes.shape == (200, rank) and test_codes.shape == (50, rank)
    assert error < 1e-8
    _, _, fewer = pca_baseline(train, test, rank - 1, seed=0, reconstruction_loss=squared_error)
    assert fewer > 1e-3


def test_active_units_count_the_dimensions_the_posterior_means_vary_along():
    rng = np.random.default_rng(0)
    means = np.column_stack([rng.normal(size=500), rng.normal(size=500) * 0.01, np.full(500, 3.0)])
    assert active_units(means) == 1


# --- latent walks ------------------------------------------------------------------------------


def test_pairs_are_of_different_classes_and_used_once():
    labels = np.array([1, 1, 2, 1, 3, 3, 2])
    pairs = pairs_of_different_classes(labels, 3)
    assert pairs == [(0, 2), (1, 4), (3, 5)]
    assert all(labels[a] != labels[b] for a, b in pairs)


@pytest.mark.parametrize("kind", list(Interpolation))
def test_interpolations_start_and_end_at_the_two_codes(kind):
    codes = np.random.default_rng(0).normal(size=(4, 6))
    walk = interpolation_codes(codes, [(0, 1), (2, 3)], steps=7, kind=kind)
    assert walk.shape == (14, 6)
    np.testing.assert_allclose(walk[[0, 6, 7, 13]], codes[[0, 1, 2, 3]], rtol=1e-5, atol=1e-6)


def test_slerp_keeps_the_codes_norm_between_equal_norms_where_the_line_cuts_inside():
    start, end = np.array([3.0, 0.0]), np.array([0.0, 3.0])
    slerp = interpolation_codes(np.stack([start, end]), [(0, 1)], steps=5, kind=Interpolation.slerp)
    line = interpolation_codes(np.stack([start, end]), [(0, 1)], steps=5, kind=Interpolation.linear)
    np.testing.assert_allclose(np.linalg.norm(slerp, axis=1), 3.0, rtol=1e-5)
    assert np.linalg.norm(line[2]) == pytest.approx(3 / np.sqrt(2), rel=1e-5)


def test_traversal_rows_hold_every_other_dimension_fixed():
    code = np.array([0.5, -1.0, 2.0])
    scales = np.array([1.0, 2.0, 0.5])
    walk = traversal_codes(code, [2, 0], scales, steps=5).reshape(2, 5, 3)
    for row, dimension in zip(walk, [2, 0], strict=True):
        others = [d for d in range(3) if d != dimension]
        np.testing.assert_array_equal(row[:, others], np.repeat(code[None, others], 5, axis=0))
        np.testing.assert_allclose(row[:, dimension], code[dimension] + np.linspace(-3, 3, 5) * scales[dimension])


def test_traversed_dimensions_are_those_the_codes_vary_most_along():
    codes = np.random.default_rng(0).normal(size=(100, 4)) * np.array([0.1, 3.0, 1.0, 0.01])
    assert dimensions_by_variance(codes, 2) == [1, 2]


@pytest.mark.parametrize("model_name", ["cvae", "dense_ae"])
def test_the_pictures_endpoints_are_the_images_own_reconstructions(model_name):
    settings = to_settings(compose([f"model={model_name}", "latent_dim=3", "evaluation.interpolations=2",
                                    "evaluation.interpolation_steps=5"]))
    images, labels = synthetic_digits(40, seed=2)
    images = images[..., None].astype(np.float32) / 255.0
    pictures = Pictures(build_model(settings.model, 3, IMAGE_SHAPE, seed=0), images, labels,
                        tuple(str(d) for d in range(10)), settings.evaluation, seed=0)
    walk_codes = pictures.codes(pictures.walk_images)
    frames = pictures.interpolations(walk_codes).reshape(2, 5, 28, 28, 1)
    reconstructions = tf.sigmoid(pictures.model(tf.constant(images))).numpy()
    for (first, second), row in zip(pictures.pairs, frames, strict=True):
        np.testing.assert_allclose(row[0], reconstructions[first], atol=1e-5)
        np.testing.assert_allclose(row[-1], reconstructions[second], atol=1e-5)
    assert pictures.interpolation is (Interpolation.slerp if model_name == "cvae" else Interpolation.linear)
    traversals = pictures.traversals(walk_codes)
    assert traversals.shape == (3 * settings.evaluation.traversal_steps, 28, 28, 1)


# --- settings and a whole run ------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "phrase"), [
    (["evaluation.knn_k=0"], "evaluation.knn_k must be a positive number"),
    (["evaluation.traversal_dims=3"], r"traversal_dims=3 exceeds latent_dim=2: give 0..2"),
    (["evaluation.interpolation_steps=1"], "interpolation_steps must be >= 2"),
])
def test_out_of_range_settings_are_refused(overrides, phrase):
    with pytest.raises(ConfigError, match=phrase):
        to_settings(compose(overrides))


def test_an_unknown_interpolation_lists_the_valid_ones():
    with pytest.raises(Exception, match="evaluation.interpolation=cubic") as excinfo:
        compose(["evaluation.interpolation=cubic"])
    assert "Invalid value 'cubic', expected one of [linear, slerp]" in str(excinfo.value.__cause__)


def test_a_run_reports_its_codes_beside_pca(finished_run):
    run_dir, results = finished_run
    for key in ("probe_accuracy", "knn_accuracy", "kmeans_nmi", "kmeans_accuracy", "pca_probe_accuracy",
                "pca_knn_accuracy", "pca_kmeans_nmi", "pca_kmeans_accuracy"):
        assert 0.0 <= results[key] <= 1.0, key
    assert results["pca_reconstruction"] > 0 and 0 <= results["active_units"] <= 2
    assert results["representation_seconds"] > 0
    from test_training import read_scalars

    scalars = read_scalars(run_dir / "test")
    assert scalars["representation/probe_accuracy"][-1][1] == pytest.approx(results["probe_accuracy"])
    assert "representation/pca_reconstruction" in scalars and "loss/nll_iw" in scalars


def test_encoding_can_keep_fewer_images_than_codes():
    from vae_train.evaluation.codes import encode, encode_with_images

    model = build_model(to_settings(compose(["model=dense_ae"])).model, 3, IMAGE_SHAPE, seed=0)
    images = (synthetic_digits(10, seed=0)[0][..., None] / 255.0).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(4)

    codes, kept = encode_with_images(model, batches, image_limit=5)
    assert codes.shape == (10, 3) and len(kept) == 5
    np.testing.assert_allclose(codes, encode(model, batches), rtol=1e-6)
    np.testing.assert_array_equal(kept, images[:5])
    codes, kept = encode_with_images(model, batches, limit=6, image_limit=8)
    assert len(codes) == len(kept) == 6
