"""Label maps that travel with their images through ``medsynth data prepare``.

A label map is an integer volume (background 0, classes 1..K-1) on exactly its image's voxel grid.
``data prepare`` reads it from a manifest column (``label_map.column``, default ``label``: a path
relative to the CSV) or from a Decathlon ``label`` key, checks it here before anything is written,
moves it through the image's spatial transforms with nearest-neighbour interpolation
(:func:`medsynth.data.preprocessing.preprocess_pair`) and writes ``labels/<subject_id>.nii.gz``
(uint8, the image's affine) next to the prepared image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medsynth.data.reading import Volume
from medsynth.errors import ConfigError, InputFileError

#: sub-folder of a prepared (or demo) dataset holding the label maps
LABEL_DIR = "labels"
#: manifest column of a paired ``medsynth sample`` folder naming each sample's label map (beside the image)
PAIRED_LABEL_COLUMN = "label_file"
#: largest label value a uint8 label map holds
MAX_LABEL = int(np.iinfo(np.uint8).max)


@dataclass(frozen=True)
class LabelMapSettings:
    """How label maps are found and checked (``label_map`` section of conf/data_prepare.yaml).

    Attributes:
        column: manifest column whose values name label-map files (other values are kept as columns).
        num_classes: K; label values must lie in 0..K-1. None: any integer in 0..255.
        grid_tolerance_mm: largest distance (mm) between the image's and the label's voxel corners.
    """

    column: str = "label"
    num_classes: int | None = None
    grid_tolerance_mm: float = 0.05

    @classmethod
    def from_config(cls, cfg) -> LabelMapSettings:
        """Build from the ``label_map`` config section; ConfigError names a bad key."""
        section = cfg.get("label_map") if cfg is not None else None
        if section is None:
            return cls()
        num_classes = section.get("num_classes")
        if num_classes is not None and not 2 <= int(num_classes) <= MAX_LABEL + 1:
            raise ConfigError("label_map.num_classes", f"expected 2..{MAX_LABEL + 1} or null, got {num_classes}")
        tolerance = float(section.get("grid_tolerance_mm", cls.grid_tolerance_mm))
        if tolerance < 0:
            raise ConfigError("label_map.grid_tolerance_mm", f"must be >= 0, got {tolerance}")
        return cls(
            column=str(section.get("column", cls.column)),
            num_classes=None if num_classes is None else int(num_classes),
            grid_tolerance_mm=tolerance,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def _corners_mm(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World positions (8, 3) in mm of the corner voxel centres of a grid."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    return (affine[:3, :3] @ corners + affine[:3, 3:4]).T


def check_label_grid(image: Volume, label: Volume, tolerance_mm: float) -> None:
    """Raise InputFileError (naming the label file) unless ``label`` lies on ``image``'s voxel grid."""
    if label.array.ndim != 3:
        raise InputFileError(label.path, f"label map must be 3D, got shape {list(label.array.shape)}")
    image_shape, label_shape = tuple(image.array.shape[:3]), tuple(label.array.shape)
    if image_shape != label_shape:
        raise InputFileError(
            label.path,
            f"label map on another grid than its image {image.path}: shape {list(label_shape)} vs {list(image_shape)}",
        )
    distance = float(
        np.max(np.linalg.norm(_corners_mm(label_shape, label.affine) - _corners_mm(image_shape, image.affine), axis=1))
    )
    if distance > tolerance_mm:
        raise InputFileError(
            label.path,
            f"label map on another grid than its image {image.path}: voxel positions differ by up to "
            f"{distance:.3g} mm (label_map.grid_tolerance_mm={tolerance_mm:g})",
        )


def check_label_values(label: Volume, num_classes: int | None, key: str = "label_map.num_classes") -> np.ndarray:
    """The label map as uint8 (X, Y, Z); InputFileError for non-integer values or values outside the classes.

    ``key`` names the setting that holds ``num_classes`` in the error line.
    """
    values = label.array
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        raise InputFileError(label.path, "label map holds non-integer values (is it an image, not a label map?)")
    upper = MAX_LABEL if num_classes is None else num_classes - 1
    present = np.unique(values)
    outside = present[(present < 0) | (present > upper)]
    if outside.size:
        shown = ", ".join(f"{v:g}" for v in outside[:5]) + (" ..." if outside.size > 5 else "")
        where = f"{key}={num_classes}" if num_classes is not None else "uint8"
        raise InputFileError(label.path, f"label values {shown} outside 0..{upper} ({where})")
    return values.astype(np.uint8)


def check_label_map(image: Volume, label: Volume, settings: LabelMapSettings) -> np.ndarray:
    """Grid and value checks of one image's label map; returns it as uint8 (X, Y, Z)."""
    check_label_grid(image, label, settings.grid_tolerance_mm)
    return check_label_values(label, settings.num_classes)


def paired_label_files(folder: str | Path) -> set[str]:
    """Names of the label maps a folder's ``manifest.csv`` lists in ``label_file`` (paired samples).

    Folder readers that take every volume directly inside a folder (evaluate, study) leave these
    out: a label map is never a scan. Empty when there is no manifest or no such column.
    """
    import pandas as pd

    manifest = Path(folder) / "manifest.csv"
    if not manifest.is_file():
        return set()
    try:
        frame = pd.read_csv(manifest, usecols=lambda c: c == PAIRED_LABEL_COLUMN)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return set()
    if PAIRED_LABEL_COLUMN not in frame.columns:
        return set()
    return {Path(str(v)).name for v in frame[PAIRED_LABEL_COLUMN].dropna()}
