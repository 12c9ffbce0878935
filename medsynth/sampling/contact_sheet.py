"""A PNG contact sheet: axial, coronal and sagittal mid-slices of the first samples, one row each.

Volumes are read back from their NIfTI files and turned to the closest RAS orientation, so the
sheet shows what a viewer will show (radiological layout: anterior up, superior up), with the
voxel spacing as the aspect ratio.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medsynth.io.atomic import atomic_path

PLANES = ("axial", "coronal", "sagittal")


def mid_slices(path: str | Path) -> list[tuple[np.ndarray, float]]:
    """(2D slice for imshow with origin='lower', aspect) for the axial, coronal, sagittal mid-planes."""
    image = nib.as_closest_canonical(nib.load(str(path)))
    data = np.asarray(image.dataobj, dtype=np.float32)
    sx, sy, sz = (float(z) for z in image.header.get_zooms()[:3])
    i, j, k = (s // 2 for s in data.shape[:3])
    return [
        (data[:, :, k].T, sy / sx),  # axial: x right, y anterior
        (data[:, j, :].T, sz / sx),  # coronal: x right, z superior
        (data[i, :, :].T, sz / sy),  # sagittal: y anterior, z superior
    ]


def write_contact_sheet(paths: list[Path], out_path: str | Path, title: str = "") -> Path | None:
    """Draw ``paths`` (one row per volume) into ``out_path`` atomically; None when there is nothing to draw."""
    if not paths:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [mid_slices(p) for p in paths]
    values = np.concatenate([s.ravel() for row in rows for s, _ in row])
    vmin, vmax = np.percentile(values, [0.5, 99.5])
    fig, axes = plt.subplots(len(rows), 3, figsize=(6, 2 * len(rows)), squeeze=False)
    for r, (path, row) in enumerate(zip(paths, rows, strict=True)):
        for c, (slice_2d, aspect) in enumerate(row):
            ax = axes[r][c]
            ax.imshow(slice_2d, cmap="gray", origin="lower", aspect=aspect, vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(PLANES[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(Path(path).name.split(".")[0], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(out_path)
