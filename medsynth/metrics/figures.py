"""Figures of an evaluation (PNG, written atomically): feature-space PCA, per-image distance
histogram, nearest-neighbour pairs as mid-slices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsynth.io.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def pca_embedding(z_real: np.ndarray, z_synthetic: np.ndarray, path: Path) -> Path:
    """Scatter of the first two principal components of the standardised radiomics features
    (fitted on real + synthetic): overlapping clouds = similar distributions."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    both = np.concatenate([z_real, z_synthetic])
    pca = PCA(n_components=2).fit(both)
    real_2d, syn_2d = pca.transform(z_real), pca.transform(z_synthetic)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(real_2d[:, 0], real_2d[:, 1], s=18, alpha=0.7, label=f"real (n={len(z_real)})")
    ax.scatter(
        syn_2d[:, 0], syn_2d[:, 1], s=18, alpha=0.7, marker="^", label=f"synthetic (n={len(z_synthetic)})"
    )
    ratio = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
    ax.set_title("Radiomics feature space (PCA)")
    ax.legend(frameon=False)
    return _save(fig, path)


def distance_histogram(real_distance: np.ndarray, synthetic_distance: np.ndarray, path: Path) -> Path:
    """Histograms of the per-image feature distance to the real distribution (RMS z-score)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    top = float(max(real_distance.max(), synthetic_distance.max()))
    bins = np.linspace(0.0, top * 1.05 + 1e-9, 25)
    ax.hist(real_distance, bins=bins, alpha=0.6, label="real (reference)")
    ax.hist(synthetic_distance, bins=bins, alpha=0.6, label="synthetic")
    ax.set_xlabel("feature distance to real distribution (RMS z-score; real ~ 1)")
    ax.set_ylabel("volumes")
    ax.legend(frameon=False)
    return _save(fig, path)


def nearest_neighbour_pairs(
    synthetic: Sequence[np.ndarray],
    neighbours: Sequence[np.ndarray],
    titles: Sequence[str],
    neighbour_titles: Sequence[str],
    path: Path,
) -> Path:
    """Rows of (synthetic, its nearest neighbour) mid-slices along the last axis, grey, each pair
    on one intensity window. Volumes are unit-range (X, Y, Z)."""
    plt = _pyplot()
    rows = len(synthetic)
    fig, axes = plt.subplots(rows, 2, figsize=(5, 2.4 * rows), squeeze=False, layout="constrained")
    for row in range(rows):
        for col, (volume, title) in enumerate(
            ((synthetic[row], titles[row]), (neighbours[row], neighbour_titles[row]))
        ):
            ax = axes[row, col]
            ax.imshow(np.rot90(volume[:, :, volume.shape[2] // 2]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("Synthetic (left) and nearest neighbour (right), mid-slice", fontsize=9)
    return _save(fig, path)
