"""Find and load the volumes of one evaluation set (a folder of NIfTI/MetaImage/NRRD files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsynth.data.label_maps import paired_label_files
from medsynth.data.reading import is_volume_file, strip_volume_suffix
from medsynth.data.validation import load_checked_volume
from medsynth.errors import ConfigError, InputFileError


def list_volume_files(folder: str | Path, key: str, minimum: int = 3) -> list[Path]:
    """Sorted volume files directly inside ``folder`` (hidden ``.tmp-*`` leftovers are ignored).

    Args:
        folder: the set's folder.
        key: the config key that named it (for the error line).
        minimum: fewest volumes a set may hold (nearest-neighbour set statistics need 3).

    Raises:
        ConfigError: the folder is missing, not a folder, or holds fewer than ``minimum`` volumes.
    """
    path = Path(str(folder)).expanduser()
    if not path.exists():
        raise ConfigError(key, f"folder {path} does not exist")
    if not path.is_dir():
        raise ConfigError(key, f"{path} is not a folder")
    labels = paired_label_files(path)  # a paired sample's label maps are not scans
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and is_volume_file(p) and p.name not in labels
    )
    if len(files) < minimum:
        found = "no volume files" if not files else f"only {len(files)} volume file(s)"
        raise ConfigError(key, f"{path} holds {found} (.nii/.nii.gz/.mha/.nrrd); need at least {minimum}")
    return files


def case_ids(files: Sequence[Path]) -> list[str]:
    """File names without their volume ending (``sample_00001.nii.gz`` -> ``sample_00001``)."""
    return [strip_volume_suffix(f) for f in files]


def load_volume(path: str | Path) -> np.ndarray:
    """One checked 3D volume as float32 (X, Y, Z); raises InputFileError with the reason."""
    volume = load_checked_volume(path)
    if volume.array.ndim != 3:
        raise InputFileError(path, f"expected a 3D volume, got shape {list(volume.array.shape)}")
    return np.ascontiguousarray(volume.array, dtype=np.float32)


def load_volumes(files: Sequence[Path]) -> list[np.ndarray]:
    """Checked volumes of ``files`` in order, each float32 (X, Y, Z)."""
    return [load_volume(f) for f in files]


def model_to_unit(volume: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Map the model space's fixed intensity range [low, high] linearly to [0, 1], clipped.

    Every set shares one preprocessing fingerprint (checked before this runs), so one fixed map
    keeps intensity differences between volumes visible to the image-space metrics (a per-volume
    percentile rescale would hide a synthetic volume's wrong contrast).
    """
    return np.clip((np.asarray(volume, dtype=np.float32) - low) / (high - low), 0.0, 1.0).astype(np.float32)
