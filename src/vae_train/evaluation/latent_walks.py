"""Walks through the latent space, as codes to decode: interpolations between the codes of two test
images of different classes, and traversals of one image's code along each latent dimension."""

from __future__ import annotations

import numpy as np

from vae_train.config import Interpolation

TRAVERSAL_SPAN = 3.0  # prior standard deviations on each side of the code


def pairs_of_different_classes(labels: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` pairs of indices of images of different classes, in order: each pair's first is
    the first unused image, its second the next unused image of another class."""
    used: set[int] = set()
    pairs = []
    for first in range(len(labels)):
        if len(pairs) == count:
            break
        if first in used:
            continue
        second = next((j for j in range(first + 1, len(labels)) if j not in used and labels[j] != labels[first]),
                      None)
        if second is not None:
            pairs.append((first, second))
            used.update((first, second))
    return pairs


def linear(start: np.ndarray, end: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    return start[None, :] + fractions[:, None] * (end - start)[None, :]


def spherical(start: np.ndarray, end: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Spherical interpolation (slerp) along the great circle between the two codes' directions, their
    norms interpolated along the way: under a Gaussian prior, points on the straight line between
    two codes are atypically close to the origin. Linear where the two directions nearly coincide."""
    norms = np.linalg.norm(start), np.linalg.norm(end)
    if min(norms) == 0:
        return linear(start, end, fractions)
    cosine = np.clip(np.dot(start / norms[0], end / norms[1]), -1.0, 1.0)
    angle = np.arccos(cosine)
    if np.sin(angle) < 1e-6:
        return linear(start, end, fractions)
    weights_start = np.sin((1 - fractions) * angle) / np.sin(angle)
    weights_end = np.sin(fractions * angle) / np.sin(angle)
    return weights_start[:, None] * start[None, :] + weights_end[:, None] * end[None, :]


INTERPOLATIONS = {Interpolation.linear: linear, Interpolation.slerp: spherical}


def interpolation_codes(codes: np.ndarray, pairs: list[tuple[int, int]], steps: int,
                        kind: Interpolation) -> np.ndarray:
    """For each pair, ``steps`` evenly spaced codes from the first image's code to the second's, both
    ends included: (pairs * steps, latent_dim), pair by pair."""
    fractions = np.linspace(0.0, 1.0, steps)
    walks = [INTERPOLATIONS[kind](codes[a], codes[b], fractions) for a, b in pairs]
    return np.concatenate(walks).astype(np.float32) if walks else np.zeros((0, codes.shape[1]), np.float32)


def traversal_codes(code: np.ndarray, dimensions: list[int], scales: np.ndarray, steps: int) -> np.ndarray:
    """For each latent dimension in ``dimensions``, ``steps`` codes sweeping that dimension over
    +-TRAVERSAL_SPAN times its ``scales`` around ``code``, the others held: (dims * steps, latent_dim)."""
    offsets = np.linspace(-TRAVERSAL_SPAN, TRAVERSAL_SPAN, steps)
    rows = []
    for dimension in dimensions:
        row = np.repeat(code[None, :], steps, axis=0)
        row[:, dimension] = code[dimension] + offsets * scales[dimension]
        rows.append(row)
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, len(code)), np.float32)


def dimensions_by_variance(codes: np.ndarray, count: int) -> list[int]:
    """The ``count`` latent dimensions along which ``codes`` vary most, the most varied first."""
    return [int(d) for d in np.argsort(-np.var(codes, axis=0), kind="stable")[:count]]
