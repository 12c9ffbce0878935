"""NIfTI export in the geometry the model was trained in, written atomically.

A volume (D, H, W) = NIfTI voxel axes (i, j, k) gets the preprocessing affine (voxel -> RAS mm)
as both qform and sform, so viewers show it in the training data's orientation and spacing (not
the identity affine of the reference code bases). The header's ``descrip`` carries a settings key
and the generation time, which is how a rerun recognises finished samples (see ``plan.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np

from medsynth.errors import ConfigError
from medsynth.io.atomic import atomic_path
from medsynth.models.bundle import Geometry, IntensityMapping

#: NIfTI codes: 1 = scanner-anatomical coordinates (the preprocessing space's RAS mm)
XFORM_CODE = 1
DTYPES = ("float32", "float64", "float16", "int16", "int32", "uint8", "uint16")
INTENSITY_SPACES = ("model", "source")
_DESCRIP = re.compile(r"^medsynth key=(?P<key>[0-9a-f]+) seconds=(?P<seconds>[0-9.]+)")


def label_file_name(file: str) -> str:
    """The label map beside a paired sample: ``sample_00001.nii.gz`` -> ``sample_00001_label.nii.gz``."""
    stem = file[: -len(".nii.gz")] if file.endswith(".nii.gz") else file.rsplit(".", 1)[0]
    return f"{stem}_label.nii.gz"


def check_export_settings(intensity: str, dtype: str, mapping: IntensityMapping | None) -> None:
    """Validate ``intensity`` and ``dtype`` before anything is generated (ConfigError otherwise)."""
    if intensity not in INTENSITY_SPACES:
        raise ConfigError(
            "intensity", f"unknown intensity space '{intensity}' (choose from {', '.join(INTENSITY_SPACES)})"
        )
    if intensity == "source" and mapping is None:
        raise ConfigError(
            "intensity", "is 'source' but the checkpoint records no intensity mapping; use intensity=model"
        )
    if dtype not in DTYPES:
        raise ConfigError("dtype", f"unsupported dtype '{dtype}' (choose from {', '.join(DTYPES)})")
    if np.issubdtype(np.dtype(dtype), np.integer) and intensity == "model":
        raise ConfigError(
            "dtype",
            f"'{dtype}' would round model intensities in [-1, 1] to 3 values; use intensity=source or a float dtype",
        )


def to_output_array(
    volume: np.ndarray, intensity: str, mapping: IntensityMapping | None, dtype: str
) -> np.ndarray:
    """(D, H, W) model-space volume in [-1, 1] -> the stored array (source units if asked, cast to ``dtype``)."""
    values = np.asarray(volume, dtype=np.float64)
    if intensity == "source":
        assert mapping is not None
        values = mapping.to_source(values)
    target = np.dtype(dtype)
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(target)


def write_volume(
    path: str | Path,
    volume: np.ndarray,
    geometry: Geometry,
    intensity: str = "model",
    mapping: IntensityMapping | None = None,
    dtype: str = "float32",
    key: str = "",
    seconds: float = 0.0,
) -> Path:
    """Write a (D, H, W) volume as NIfTI-1 with ``geometry``'s affine; atomic (temp name, then rename)."""
    volume = np.asarray(volume)
    if tuple(volume.shape) != tuple(geometry.shape):
        raise ValueError(f"volume shape {volume.shape} != checkpoint geometry {tuple(geometry.shape)}")
    affine = np.asarray(geometry.affine, dtype=np.float64)
    image = nib.Nifti1Image(to_output_array(volume, intensity, mapping, dtype), affine)
    header = image.header
    header.set_qform(affine, code=XFORM_CODE)
    header.set_sform(affine, code=XFORM_CODE)
    header.set_xyzt_units(xyz="mm")
    header["descrip"] = f"medsynth key={key} seconds={seconds:.3f}".encode()[:79]
    if intensity == "source" and mapping is not None and mapping.unit:
        header["aux_file"] = mapping.unit.encode()[:23]
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return Path(path)


def read_settings_key(path: str | Path) -> tuple[str, float] | None:
    """(settings key, seconds) from a medsynth NIfTI's header, or None if it is not one / unreadable."""
    try:
        header = nib.load(str(path)).header
        descrip = bytes(header["descrip"]).split(b"\x00")[0].decode(errors="ignore")
    except Exception:  # noqa: BLE001 - any unreadable file is simply "not finished"
        return None
    match = _DESCRIP.match(descrip)
    if not match:
        return None
    return match["key"], float(match["seconds"])
