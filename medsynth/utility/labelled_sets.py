"""Labelled sets for ``medsynth utility``: which volumes, with which target, checked before any training.

A set is a folder with ``manifest.csv``: ``file`` (the image, relative to the folder), optionally
``subject_id``, and the target column named by the task: a label-map file (segmentation; real sets
from ``medsynth data prepare`` call it ``label``, paired ``medsynth sample`` sets ``label_file``) or
an integer class (classification). Every image and label map is read and checked here (same grid,
label values in 0..K-1, one shape for the whole run), so bad input is one line before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medsynth.data.label_maps import check_label_grid, check_label_values
from medsynth.data.reading import Volume, strip_volume_suffix
from medsynth.data.validation import load_checked_volume
from medsynth.errors import ConfigError, InputFileError

MANIFEST = "manifest.csv"
TASKS = ("segmentation", "classification")


@dataclass
class LabelledSet:
    """Images and targets of one set, in memory.

    Attributes:
        name: ``real``, ``test`` or ``synthetic``.
        subject_ids: one per volume (synthetic: the file stem).
        images: (N, 1, X, Y, Z) float32.
        targets: segmentation (N, X, Y, Z) uint8 label maps; classification (N,) int64 classes.
        spacing: voxel size (mm) along X, Y, Z (for HD95).
    """

    name: str
    subject_ids: list[str]
    images: np.ndarray
    targets: np.ndarray
    spacing: tuple[float, float, float]

    def __len__(self) -> int:
        return len(self.subject_ids)

    def subset(self, ids: list[str]) -> LabelledSet:
        """The volumes of ``ids`` in that order."""
        where = {sid: i for i, sid in enumerate(self.subject_ids)}
        index = [where[sid] for sid in ids]
        return LabelledSet(self.name, list(ids), self.images[index], self.targets[index], self.spacing)


def _manifest(folder: Path, key: str) -> pd.DataFrame:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ConfigError(key, f"folder {folder} does not exist")
    if not path.is_file():
        raise ConfigError(key, f"{folder} has no {MANIFEST} (utility needs each volume's label)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not a readable CSV ({' '.join(str(err).split())[:120]})") from None
    if "file" not in frame.columns:
        raise InputFileError(path, "no 'file' column naming the volumes")
    return frame


def _class_value(value: object, num_classes: int, path: Path, row: int, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or number != round(number) or not 0 <= number < num_classes:
        raise InputFileError(
            path, f"row {row}: {column}={value!r} is not a class in 0..{num_classes - 1} (task.num_classes={num_classes})"
        )
    return int(number)


def read_labelled_set(folder: str | Path, key: str, name: str, task) -> LabelledSet:
    """Read and check every volume and target of one set.

    Args:
        folder: the set's folder (with manifest.csv).
        key: the config key that named it (``real_dir``, ``synthetic_dir``, ``test_dir``), for errors.
        name: ``real``, ``test`` or ``synthetic``.
        task: the ``task`` config (``name``, ``num_classes``, ``real_label_column``, ``synthetic_label_column``).

    Raises:
        ConfigError / InputFileError: one line naming the key or file and the reason.
    """
    folder = Path(str(folder)).expanduser()
    frame = _manifest(folder, key)
    manifest = folder / MANIFEST
    column = str(task.synthetic_label_column if name == "synthetic" else task.real_label_column)
    option = f"task.{'synthetic' if name == 'synthetic' else 'real'}_label_column"
    if column not in frame.columns:
        raise InputFileError(manifest, f"no column '{column}' with the {task.name} labels ({option})")
    if frame.empty:
        raise InputFileError(manifest, "lists no volumes")
    num_classes = int(task.num_classes)
    ids, images, targets, shapes = [], [], [], None
    spacing = None
    for row_number, row in enumerate(frame.to_dict(orient="records"), start=2):
        image = load_checked_volume(folder / str(row["file"]))
        if image.array.ndim != 3:
            raise InputFileError(image.path, f"expected a 3D volume, got shape {list(image.array.shape)}")
        if shapes is None:
            shapes, spacing = image.array.shape, image.spacing
        elif image.array.shape != shapes:
            raise InputFileError(
                image.path, f"shape {list(image.array.shape)} differs from the set's {list(shapes)} (prepare both alike)"
            )
        value = row[column]
        if task.name == "segmentation":
            if not isinstance(value, str) or not value.strip():
                raise InputFileError(manifest, f"row {row_number}: no label map in column '{column}'")
            label = load_checked_volume(folder / value.strip())
            check_label_grid(image, label, tolerance_mm=_grid_tolerance(image))
            targets.append(check_label_values(label, num_classes, key="task.num_classes"))
        else:
            targets.append(_class_value(value, num_classes, manifest, row_number, column))
        sid = row.get("subject_id")
        ids.append(str(sid) if isinstance(sid, str) and sid else strip_volume_suffix(image.path))
        images.append(image.array.astype(np.float32, copy=False))
    if len(set(ids)) != len(ids):
        raise InputFileError(manifest, "subject_id values repeat (each subject once)")
    target_array = np.stack(targets).astype(np.uint8 if task.name == "segmentation" else np.int64)
    return LabelledSet(name, ids, np.stack(images)[:, None], target_array, tuple(float(s) for s in spacing))


def _grid_tolerance(image: Volume) -> float:
    """Label/image corner mismatch allowed: a hundredth of the smallest voxel side (mm)."""
    return 0.01 * min(image.spacing)


def check_same_grid(sets: list[LabelledSet]) -> None:
    """All sets share one voxel grid shape (the networks see one input size); ConfigError names ``<name>_dir``."""
    reference = sets[0]
    for labelled in sets[1:]:
        if labelled.images.shape[1:] != reference.images.shape[1:]:
            raise ConfigError(
                f"{labelled.name}_dir",
                f"volumes of shape {list(labelled.images.shape[2:])} differ from {reference.name}'s "
                f"{list(reference.images.shape[2:])} (prepare/sample them on one grid)",
            )
