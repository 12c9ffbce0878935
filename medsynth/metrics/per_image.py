"""Per-image realism scores of synthetic volumes, for joining with reader ratings (``case_id``).

All volumes here are unit-range (see :func:`medsynth.metrics.volume_folder.robust_unit_range`)
arrays (X, Y, Z) on one grid; features are real-standardised z-scores (N, F).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def feature_distance_to_real(z_features: np.ndarray) -> np.ndarray:
    """RMS z-score of each row w.r.t. the real set, ||z|| / sqrt(F), shape (N,).

    A typical real volume scores about 1; larger = further from the real distribution.
    """
    return np.linalg.norm(z_features, axis=1) / np.sqrt(z_features.shape[1])


def nearest_real_feature_distance(z_synthetic: np.ndarray, z_real: np.ndarray) -> np.ndarray:
    """Euclidean distance / sqrt(F) from each synthetic row to its nearest real row, shape (N_syn,)."""
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(z_synthetic, z_real).min(axis=1) / np.sqrt(z_real.shape[1])


def _standardised_rows(volumes: Sequence[np.ndarray]) -> np.ndarray:
    """(N, V) rows with zero mean and unit norm (a constant volume becomes a zero row)."""
    rows = np.stack([v.reshape(-1) for v in volumes]).astype(np.float64)
    rows -= rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def nearest_neighbour_correlation(
    queries: Sequence[np.ndarray], references: Sequence[np.ndarray], exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Highest voxel-wise Pearson correlation of each query with any reference volume.

    Args:
        queries, references: volumes (X, Y, Z) of one shape.
        exclude_self: queries are the references (same order): skip the diagonal.

    Returns:
        (similarity (N_q,) in [-1, 1], index of the nearest reference (N_q,))
    """
    q = _standardised_rows(queries)
    r = q if exclude_self else _standardised_rows(references)
    similarity = q @ r.T
    if exclude_self:
        np.fill_diagonal(similarity, -np.inf)
    index = similarity.argmax(axis=1)
    return similarity[np.arange(len(q)), index], index


def memorisation_threshold(
    train: Sequence[np.ndarray], distance_ratio: float = 0.5, min_similarity: float = 0.9
) -> float:
    """Correlation above which a synthetic volume counts as a copy of a training scan.

    A copy is closer to its source than any two distinct training subjects are to each other:
    flagged when its distance (1 - r) to the nearest training scan is below ``distance_ratio``
    times the smallest such distance between two training scans, and r > ``min_similarity``.
    """
    if len(train) < 2:
        return float(min_similarity)
    closest, _ = nearest_neighbour_correlation(train, train, exclude_self=True)
    return max(float(min_similarity), 1.0 - distance_ratio * (1.0 - float(closest.max())))


def slice_consistency(volume: np.ndarray) -> float:
    """How well neighbouring slices fit together: the lowest, over the three axes, of the pooled
    Pearson correlation between each slice and the next (each slice centred on its own mean).

    1 = neighbouring slices identical; a stack whose slices were shuffled along any axis, or
    generated independently, scores lower. Empty (constant) slices add nothing to the pooled sums.
    """
    scores = []
    for axis in range(volume.ndim):
        stack = np.moveaxis(volume.astype(np.float64), axis, 0).reshape(volume.shape[axis], -1)
        stack = stack - stack.mean(axis=1, keepdims=True)
        a, b = stack[:-1], stack[1:]
        denominator = np.sqrt((a * a).sum() * (b * b).sum())
        scores.append(float((a * b).sum() / denominator) if denominator > 0 else 1.0)
    return min(scores)


def intensity_histogram(volume: np.ndarray, bins: int) -> np.ndarray:
    """Normalised histogram (bins,) of a unit-range volume over [0, 1]."""
    counts, _ = np.histogram(volume, bins=bins, range=(0.0, 1.0))
    return counts / max(1, counts.sum())


def histogram_distance(volume: np.ndarray, reference_histogram: np.ndarray) -> float:
    """Wasserstein-1 (earth mover's) distance, in unit-range intensity, between the volume's
    histogram and a reference histogram on the same [0, 1] bins (scipy)."""
    from scipy.stats import wasserstein_distance

    bins = len(reference_histogram)
    centres = (np.arange(bins) + 0.5) / bins
    return float(
        wasserstein_distance(centres, centres, intensity_histogram(volume, bins), reference_histogram)
    )
