"""The one-class ``combined`` score: several anomaly scores summed, each first standardized by its mean
and standard deviation over the normal training images.

The scores see different things: the reconstruction error, pixels a model cannot redraw; the codes'
distances, images the encoder maps away from the normal ones. On one-class MNIST each misses digits
the other finds (the codes' k-NN distance wins on 2s and 8s, where the reconstruction error loses), and
their sum beats either (docs/results.md). Standardizing puts nats and code distances on one scale,
weighting each score by how tightly the normal images hold it; it uses the training images only, so no
test image informs its own score. The training images are reconstructed a little better than unseen
normal ones, which moves the reconstruction score's mean but no image's rank among the test images.
"""

from __future__ import annotations

import numpy as np

COMBINED = "combined"


def standardized_sum(normal_scores: dict[str, np.ndarray], test_scores: dict[str, np.ndarray],
                     parts: list[str]) -> np.ndarray:
    """The sum over ``parts`` of each test score standardized by the normal images' mean and standard
    deviation of that score (a part constant over the normal images counts as their spread of 1)."""
    total = np.zeros(len(test_scores[parts[0]]), np.float64)
    for name in parts:
        normal = np.asarray(normal_scores[name], np.float64)
        spread = normal.std() or 1.0
        total += (np.asarray(test_scores[name], np.float64) - normal.mean()) / spread
    return total
