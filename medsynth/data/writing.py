"""Write float32 NIfTI volumes atomically, with a full geometry header (sform + qform, mm units).

nibabel writes ``.nii.gz`` through a deterministic gzip stream (mtime 0, no file name in the
header), so the same array and affine always give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsynth.io.atomic import atomic_path

#: NIfTI xform code for "scanner anatomical" coordinates
SCANNER_XFORM_CODE = 1


def nifti_image(array: np.ndarray, affine: np.ndarray):
    """A ``nibabel.Nifti1Image`` of ``array`` (X, Y, Z) as float32 with ``affine`` in sform and qform."""
    import nibabel as nib

    image = nib.Nifti1Image(
        np.ascontiguousarray(array, dtype=np.float32), np.asarray(affine, dtype=np.float64)
    )
    image.set_sform(affine, code=SCANNER_XFORM_CODE)
    image.set_qform(affine, code=SCANNER_XFORM_CODE)
    image.header.set_xyzt_units(xyz="mm")
    return image


def label_nifti_image(label: np.ndarray, affine: np.ndarray):
    """A ``nibabel.Nifti1Image`` of a label map (X, Y, Z) as uint8 with ``affine`` in sform and qform."""
    import nibabel as nib

    values = np.asarray(label)
    if values.size and (values.min() < 0 or values.max() > np.iinfo(np.uint8).max):
        raise ValueError(f"label values must be in 0..255, got {values.min()}..{values.max()}")
    image = nib.Nifti1Image(np.ascontiguousarray(values, dtype=np.uint8), np.asarray(affine, dtype=np.float64))
    image.set_sform(affine, code=SCANNER_XFORM_CODE)
    image.set_qform(affine, code=SCANNER_XFORM_CODE)
    image.header.set_xyzt_units(xyz="mm")
    image.header.set_intent("label")
    return image


def write_label_nifti(path: str | Path, label: np.ndarray, affine: np.ndarray) -> Path:
    """Write a label map (X, Y, Z) as uint8 with ``affine`` (4, 4, voxel -> RAS mm) to ``path`` atomically."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(label_nifti_image(label, affine), str(tmp))
    return Path(path)


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` (X, Y, Z) float32 with ``affine`` (4, 4, voxel -> RAS mm) to ``path`` atomically."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(nifti_image(array, affine), str(tmp))
    return Path(path)
