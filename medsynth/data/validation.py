"""Check that a volume file is usable before anything is written, and say why not in one line.

:func:`validate_volume_file` is the contract used by ``medsynth data prepare`` and by the training
DataModule: it raises :class:`~medsynth.errors.InputFileError` (path + reason) for a missing, empty,
unreadable, truncated/corrupt-gzip, non-image, NaN/Inf, 2D or wrong-dimensional file, and for a
DICOM folder everything :func:`medsynth.data.dicom_series.check_series` refuses.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

from medsynth.data.dicom_series import (
    DEFAULT_SPACING_TOLERANCE,
    DicomSeries,
    SeriesError,
    check_series,
    find_series,
    warning_lines,
)
from medsynth.data.reading import ITK_SUFFIXES, NIFTI_SUFFIXES, Volume, read_volume, volume_suffix
from medsynth.errors import InputFileError

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:200]


def check_gzip_stream(path: Path) -> None:
    """Decompress ``path`` end to end; raise InputFileError if it is truncated or corrupt."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(_CHUNK):
                pass
    except EOFError:
        raise InputFileError(path, "truncated gzip (compressed data ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise InputFileError(path, f"corrupt gzip ({_one_line(err)})") from None


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, but a folder we may not even look into is reported, not raised."""
    try:
        path.stat()
    except PermissionError:
        raise InputFileError(path, "cannot read file (permission denied)") from None
    except OSError:
        return False
    return path.is_dir()


def check_readable_file(path: Path) -> None:
    """Existence, type, size and permission checks that need no image library."""
    _is_dir(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a volume file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except PermissionError:
        raise InputFileError(path, "cannot read file (permission denied)") from None
    except OSError as err:
        raise InputFileError(path, f"cannot read file ({_one_line(err)})") from None
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty (0 bytes)")
    suffix = volume_suffix(path)
    if suffix not in NIFTI_SUFFIXES + ITK_SUFFIXES:
        raise InputFileError(path, f"not a supported image file (ending '{suffix or path.name}')")
    if head == _GZIP_MAGIC or suffix == ".nii.gz":
        if head != _GZIP_MAGIC:
            raise InputFileError(path, "not gzip-compressed although named .gz (not an image)")
        check_gzip_stream(path)


def check_volume_content(volume: Volume, allow_4d: bool = False) -> None:
    """Dimension and finiteness checks on a loaded volume."""
    path = volume.path
    shape = volume.array.shape
    # NIfTI stores 3D volumes with trailing singleton dims sometimes (X, Y, Z, 1): drop them
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    volume.array = volume.array.reshape(shape)
    spatial = [s for s in shape[:3] if s > 1]
    if len(shape) < 3 or len(spatial) < 3:
        raise InputFileError(path, f"2D image (shape {list(shape)}), need a 3D volume")
    if len(shape) == 4 and not allow_4d:
        raise InputFileError(path, f"4D image (shape {list(shape)}), need a 3D volume")
    if len(shape) > 4:
        raise InputFileError(path, f"{len(shape)}D image (shape {list(shape)}), need a 3D volume")
    if not np.all(np.isfinite(volume.affine)) or abs(np.linalg.det(volume.affine[:3, :3])) < 1e-12:
        raise InputFileError(path, "invalid geometry (singular or non-finite affine)")
    bad = int(volume.array.size - np.count_nonzero(np.isfinite(volume.array)))
    if bad:
        raise InputFileError(path, f"contains {bad} NaN/Inf voxel(s)")


def load_checked_volume(
    path: str | Path,
    allow_4d: bool = False,
    series_uid: str | None = None,
    spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE,
    series: DicomSeries | None = None,
) -> Volume:
    """Read a volume file or DICOM series folder, with every check of :func:`validate_volume_file`.

    Args:
        path: a volume file or a folder of DICOM files.
        allow_4d: accept (X, Y, Z, T).
        series_uid: for a folder, the SeriesInstanceUID to read (None: the folder's only series).
        spacing_tolerance: DICOM: largest relative deviation of a slice step from the median step.
        series: the folder's series as already scanned (then ``series_uid`` is not looked up again).

    Returns:
        the :class:`~medsynth.data.reading.Volume` (array (X, Y, Z) or (X, Y, Z, T) float32, RAS affine).

    Raises:
        InputFileError: with the path and one-line reason.
    """
    path = Path(path)
    dicom_files = None
    header_warnings: list[str] = []
    if _is_dir(path):
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputFileError(path, "cannot read folder (permission denied)")
        try:
            with warnings.catch_warnings(record=True) as caught:  # pydicom's warnings become ours
                warnings.simplefilter("always")
                found = series if series is not None else find_series(path, series_uid)
                dicom_files = check_series(found, spacing_tolerance)
        except SeriesError as err:
            raise InputFileError(path, str(err)) from None
        header_warnings = list(dict.fromkeys([*found.warnings, *warning_lines(caught)]))
    else:
        check_readable_file(path)
    from nibabel.filebasedimages import ImageFileError

    try:
        volume = read_volume(path, dicom_files=dicom_files)
    except InputFileError:
        raise
    except MemoryError:
        raise InputFileError(path, "volume does not fit in memory") from None
    except ImageFileError:
        raise InputFileError(path, "not an image (no NIfTI header recognised)") from None
    except Exception as err:  # nibabel/SimpleITK raise many types for unparsable files
        raise InputFileError(path, f"not a readable image ({_one_line(err)})") from None
    check_volume_content(volume, allow_4d=allow_4d)
    volume.warnings = [f"{path}: {warning}" for warning in [*header_warnings, *volume.warnings]]
    return volume


def load_checked_item(item, allow_4d: bool = True) -> Volume:
    """:func:`load_checked_volume` of a discovered :class:`~medsynth.data.discovery.SourceItem`."""
    return load_checked_volume(
        item.source,
        allow_4d=allow_4d,
        series_uid=item.series_uid,
        spacing_tolerance=item.spacing_tolerance,
        series=item.series,
    )


def validate_volume_file(path: str | Path, allow_4d: bool = False) -> None:
    """Raise :class:`InputFileError` (path, reason) unless ``path`` holds a usable 3D volume.

    Checks: exists, is readable, not empty, gzip intact, parses as NIfTI/MetaImage/NRRD (or a
    DICOM series folder), 3 spatial dimensions (4D only with ``allow_4d``), finite voxels.
    """
    load_checked_volume(path, allow_4d=allow_4d)
