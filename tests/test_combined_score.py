"""The one-class combined score: scores of different units, standardized on the normal images and summed."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from vae_train.evaluation.combined_score import standardized_sum


def planted(seed: int = 0):
    """Two scores of normal images on scales a thousand times apart; half the anomalies stand out in the
    first score only, the other half in the second only, each by four of its standard deviations."""
    rng = np.random.default_rng(seed)
    normal = {"pixels": rng.normal(100.0, 5.0, 2000), "codes": rng.normal(0.02, 0.005, 2000)}
    test = {"pixels": rng.normal(100.0, 5.0, 400), "codes": rng.normal(0.02, 0.005, 400)}
    is_anomaly = np.arange(400) >= 300
    test["pixels"][300:350] += 20.0
    test["codes"][350:400] += 0.02
    return normal, test, is_anomaly


def test_the_sum_finds_what_each_score_alone_misses():
    normal, test, is_anomaly = planted()
    combined = standardized_sum(normal, test, ["pixels", "codes"])
    alone = [roc_auc_score(is_anomaly, test[name]) for name in ("pixels", "codes")]
    assert max(alone) < 0.8
    assert roc_auc_score(is_anomaly, combined) > 0.97
    # Summed raw, the pixels' nats would drown the codes' distances.
    assert roc_auc_score(is_anomaly, test["pixels"] + test["codes"]) < 0.8


def test_the_sum_does_not_depend_on_a_score_s_unit_or_offset():
    normal, test, _ = planted(1)
    rescaled = {name: {**scores, "codes": scores["codes"] * 1000.0 + 7.0} for name, scores in
                (("normal", normal), ("test", test))}
    np.testing.assert_allclose(standardized_sum(rescaled["normal"], rescaled["test"], ["pixels", "codes"]),
                               standardized_sum(normal, test, ["pixels", "codes"]), rtol=1e-9, atol=1e-9)


def test_normal_images_score_about_zero_and_a_constant_score_counts_as_unit_spread():
    normal, test, is_anomaly = planted(2)
    combined = standardized_sum(normal, test, ["pixels", "codes"])
    assert abs(np.mean(combined[~is_anomaly])) < 0.3
    constant = {"flat": np.full(10, 3.0), "other": np.arange(10.0)}
    result = standardized_sum(constant, {"flat": np.array([5.0]), "other": np.array([4.5])}, ["flat", "other"])
    np.testing.assert_allclose(result, [2.0])
