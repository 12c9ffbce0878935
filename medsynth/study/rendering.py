"""Identical display preprocessing for real and synthetic cases, and slice rendering to PNG.

Every case goes through the same steps: read (validated), reorient to RAS, optionally map
[-1, 1] model units back to physical units (``rescale_from_unit``), resample to the study's common
grid (trilinear, so voxel spacing differences never reach the reader), window, and render one
plane to an 8-bit grey PNG without metadata. Readers only ever receive these PNG bytes.

Display convention (radiological): axial and coronal images show the patient's right on the
viewer's left; superior/anterior are at the top; sagittal images show anterior on the left.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLANES = ("axial", "coronal", "sagittal")
_PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # RAS array axes (X, Y, Z)


@dataclass(frozen=True)
class Window:
    """Display window in the volume's intensity units: values in level +- width / 2 map to 0..255."""

    level: float
    width: float

    def apply(self, image: np.ndarray) -> np.ndarray:
        width = max(float(self.width), 1e-6)
        low = self.level - width / 2
        scaled = (image.astype(np.float32) - low) / width
        return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_display_volume(
    path: str | Path, grid: Sequence[int], rescale_from_unit: Sequence[float] | None = None
) -> np.ndarray:
    """Read ``path`` and resample it to ``grid``: returns (X, Y, Z) float32 in RAS orientation.

    Raises:
        InputFileError: the file is missing, corrupt, not 3D or holds NaN/Inf.
    """
    import nibabel as nib
    from scipy import ndimage

    from medsynth.data.validation import load_checked_volume

    volume = load_checked_volume(path)
    array = np.asarray(volume.array, dtype=np.float32)
    ornt = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(volume.affine), nib.orientations.axcodes2ornt(("R", "A", "S"))
    )
    array = nib.orientations.apply_orientation(array, ornt).astype(np.float32)
    if rescale_from_unit is not None:
        low, high = float(rescale_from_unit[0]), float(rescale_from_unit[1])
        array = low + (array + 1.0) / 2.0 * (high - low)
    zoom = [g / s for g, s in zip(grid, array.shape, strict=True)]
    if any(abs(z - 1.0) > 1e-9 for z in zoom):
        array = ndimage.zoom(array, zoom, order=1, mode="nearest", grid_mode=True)
    return np.ascontiguousarray(array, dtype=np.float32)


def auto_window(volume: np.ndarray, percentiles: Sequence[float]) -> Window:
    """MR automatic window: the ``percentiles`` (low, high) of the voxels above the volume minimum."""
    flat = volume.ravel()
    foreground = flat[flat > flat.min()]
    if foreground.size < 16:
        foreground = flat
    low, high = np.percentile(foreground, [float(percentiles[0]), float(percentiles[1])])
    if high <= low:
        high = low + 1.0
    return Window(level=float((low + high) / 2), width=float(high - low))


def resolve_window(volume: np.ndarray, preset: str, render: Mapping, manual: Window | None = None) -> Window:
    """The window for ``preset``: ``"auto"`` (percentiles), ``"manual"`` or a named CT preset."""
    if preset == "manual" and manual is not None:
        return manual
    presets = render.get("presets", {}) or {}
    if preset in presets:
        return Window(level=float(presets[preset]["level"]), width=float(presets[preset]["width"]))
    return auto_window(volume, render.get("auto_percentiles", (1.0, 99.5)))


def plane_image(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D display image (rows, cols) of slice ``index`` in ``plane`` of a RAS (X, Y, Z) volume."""
    if plane not in _PLANE_AXIS:
        raise ValueError(f"plane must be one of {PLANES}")
    axis = _PLANE_AXIS[plane]
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    slab = np.take(volume, index, axis=axis)  # axial (X, Y); coronal (X, Z); sagittal (Y, Z)
    # rows: Y or Z reversed (anterior/superior on top); columns: X or Y reversed (patient's right,
    # or anterior for sagittal, on the viewer's left)
    return np.ascontiguousarray(slab.T[::-1, ::-1])


def render_png(volume: np.ndarray, plane: str, index: int, window: Window, size: int) -> bytes:
    """Slice -> windowed 8-bit PNG of ``size`` x ``size`` pixels (bilinear), no metadata."""
    from PIL import Image

    image = Image.fromarray(window.apply(plane_image(volume, plane, index)), mode="L")
    image = image.resize((int(size), int(size)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
