"""Per-image realism scores of synthetic volumes, for joining with reader ratings (``case_id``).

All volumes here are unit-range arrays (X, Y, Z) on one grid (the model's [-1, 1] mapped to
[0, 1], see :func:`medsynth.metrics.volume_folder.model_to_unit`), and image-space scores use one
foreground mask shared by real and synthetic volumes (:func:`shared_foreground_mask`); features
are real-standardised z-scores (N, F).
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


def shared_foreground_mask(real: Sequence[np.ndarray], threshold: float, min_fraction: float) -> np.ndarray:
    """One boolean mask (X, Y, Z) for every per-image metric of real and synthetic volumes alike.

    A voxel is foreground when it is above ``threshold`` (unit range) in at least ``min_fraction``
    of the real volumes: derived from the real set only, so a synthetic volume cannot move the
    region it is judged on. Falls back to the whole grid when no voxel qualifies.
    """
    votes = np.mean([np.asarray(v) > threshold for v in real], axis=0)
    mask = votes >= min_fraction
    return mask if mask.any() else np.ones_like(mask, dtype=bool)


def _standardised_rows(volumes: Sequence[np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
    """(N, V) rows of the (masked) voxels with zero mean and unit norm (a constant row stays zero)."""
    rows = np.stack([v[mask] if mask is not None else v.reshape(-1) for v in volumes]).astype(np.float64)
    rows -= rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def copy_variants(volume: np.ndarray, max_shift: int = 1) -> list[np.ndarray]:
    """The volume, its flips along each axis, and each of these shifted by up to ``max_shift``
    voxels along one axis (``np.roll``; the border is background): the copies a memorisation
    check must still recognise. 4 x (1 + 6 max_shift) variants."""
    flips = [volume] + [np.flip(volume, axis) for axis in range(volume.ndim)]
    out = []
    for flipped in flips:
        out.append(flipped)
        for axis in range(volume.ndim):
            for step in range(1, max_shift + 1):
                out += [np.roll(flipped, step, axis), np.roll(flipped, -step, axis)]
    return out


def nearest_neighbour_correlation(
    queries: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    exclude_self: bool = False,
    mask: np.ndarray | None = None,
    max_shift: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Highest voxel-wise Pearson correlation of each query with any reference volume.

    Args:
        queries, references: volumes (X, Y, Z) of one shape.
        exclude_self: queries are the references (same order): skip the diagonal.
        mask: correlate only these voxels (the shared foreground mask); None = every voxel.
        max_shift: None compares the volumes as they are; an integer also tries each query's
            :func:`copy_variants` (flips, shifts up to ``max_shift`` voxels) and keeps the best.

    Returns:
        (similarity (N_q,) in [-1, 1], index of the nearest reference (N_q,))
    """
    r = _standardised_rows(references, mask)
    best = np.full(len(queries), -np.inf)
    index = np.zeros(len(queries), dtype=int)
    for i, query in enumerate(queries):
        variants = [query] if max_shift is None else copy_variants(np.asarray(query), max_shift)
        similarity = _standardised_rows(variants, mask) @ r.T  # (variants, N_ref)
        if exclude_self:
            similarity[:, i] = -np.inf
        flat = int(np.argmax(similarity))
        best[i], index[i] = similarity.flat[flat], flat % similarity.shape[1]
    return best, index


def memorisation_threshold(
    train: Sequence[np.ndarray],
    quantile: float = 0.9,
    distance_ratio: float = 0.5,
    min_similarity: float = 0.9,
    mask: np.ndarray | None = None,
    max_shift: int | None = 1,
) -> tuple[float, dict]:
    """Similarity above which a synthetic volume counts as a copy of a training scan.

    Calibrated on the training set itself: for every training scan, its similarity to the nearest
    *other* training scan (same mask, same flip/shift search as the check). With d_q = 1 - the
    ``quantile`` of those similarities (a high quantile: a few near-duplicate pairs in the
    training set move it little), a volume is flagged when its distance 1 - r to the nearest
    training scan is below ``distance_ratio`` x d_q, and r is above the absolute floor
    ``min_similarity`` in any case.

    Returns:
        (threshold on r, calibration record {quantile_similarity, n_train, ...} for metrics.json)
    """
    record = {"quantile": float(quantile), "distance_ratio": float(distance_ratio), "n_train": len(train)}
    record |= {"min_similarity": float(min_similarity), "max_shift": max_shift}
    if len(train) < 2:
        return float(min_similarity), record | {"quantile_similarity": None}
    others, _ = nearest_neighbour_correlation(train, train, exclude_self=True, mask=mask, max_shift=max_shift)
    high = float(np.quantile(others, quantile))
    threshold = max(float(min_similarity), 1.0 - distance_ratio * (1.0 - high))
    return threshold, record | {"quantile_similarity": high}


def slice_consistency(volume: np.ndarray, mask: np.ndarray | None = None) -> float:
    """How well neighbouring slices fit together: the lowest, over the three axes, of the pooled
    Pearson correlation between each slice and the next, over voxels inside ``mask`` in both
    slices (each slice centred on its own masked mean; None = every voxel).

    1 = neighbouring slices identical; a stack whose slices were shuffled along any axis, or
    generated independently, scores lower. Empty (constant) slices add nothing to the pooled sums.
    """
    full = np.ones(volume.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    scores = []
    for axis in range(volume.ndim):
        stack = np.moveaxis(volume.astype(np.float64), axis, 0).reshape(volume.shape[axis], -1)
        inside = np.moveaxis(full, axis, 0).reshape(volume.shape[axis], -1)
        both = inside[:-1] & inside[1:]
        a, b = stack[:-1], stack[1:]
        count = np.maximum(both.sum(axis=1, keepdims=True), 1)
        a = np.where(both, a - (a * both).sum(axis=1, keepdims=True) / count, 0.0)
        b = np.where(both, b - (b * both).sum(axis=1, keepdims=True) / count, 0.0)
        denominator = np.sqrt((a * a).sum() * (b * b).sum())
        scores.append(float((a * b).sum() / denominator) if denominator > 0 else 1.0)
    return min(scores)


def intensity_histogram(volume: np.ndarray, bins: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalised histogram (bins,) of a unit-range volume over [0, 1] (voxels in ``mask`` only)."""
    values = volume if mask is None else volume[mask]
    counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    return counts / max(1, counts.sum())


def histogram_distance(
    volume: np.ndarray, reference_histogram: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Wasserstein-1 (earth mover's) distance, in unit-range intensity, between the volume's
    histogram (voxels in ``mask``) and a reference histogram on the same [0, 1] bins (scipy)."""
    from scipy.stats import wasserstein_distance

    bins = len(reference_histogram)
    centres = (np.arange(bins) + 0.5) / bins
    return float(
        wasserstein_distance(centres, centres, intensity_histogram(volume, bins, mask), reference_histogram)
    )
