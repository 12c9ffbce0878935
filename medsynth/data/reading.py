"""Read a 3D (or 4D) medical volume from disk into a voxel array plus a RAS affine.

NIfTI-1/NIfTI-2 (``.nii``, ``.nii.gz``) go through nibabel. MetaImage (``.mha``/``.mhd``), NRRD
(``.nrrd``/``.nhdr``) and DICOM series (files checked and sorted by
:mod:`medsynth.data.dicom_series`) go through SimpleITK and are converted to the NIfTI
convention: array axes (X, Y, Z[, T]) = (i, j, k) index axes, affine maps voxel index to RAS mm.
What ITK would print to stderr is collected (:class:`ITKMessages`) and kept on the volume.
The ITK -> RAS conversion is written here because MONAI's ITK reader needs the separate ``itk``
package, and SimpleITK's own physical-space metadata makes it a 4-line matrix product.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: file name endings read with nibabel
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: file name endings read with SimpleITK
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
#: every single-file volume format that discovery picks up
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

#: LPS (ITK, DICOM) <-> RAS (NIfTI) flip of the first two world axes
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A volume in voxel space with its geometry.

    Attributes:
        array: float32 voxels, shape (X, Y, Z) or (X, Y, Z, T); axes are the affine's index axes.
        affine: (4, 4) voxel index -> RAS world coordinates in mm.
        path: where it was read from (a file or a DICOM series folder).
        warnings: what the reader reported without failing (e.g. ITK warnings), one line each.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the three index axes."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def volume_suffix(path: str | Path) -> str:
    """The format-defining ending of ``path`` (``.nii.gz`` counts as one), lower case."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def strip_volume_suffix(path: str | Path) -> str:
    """File name without its volume ending: ``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def is_volume_file(path: str | Path) -> bool:
    """True if ``path`` has one of :data:`VOLUME_SUFFIXES`."""
    return volume_suffix(path) in VOLUME_SUFFIXES


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array float32 (X, Y, Z[, ...]), affine (4, 4)) of a NIfTI file via nibabel."""
    import nibabel as nib

    image = nib.load(str(path))
    array = np.asarray(image.dataobj, dtype=np.float32)
    return array, np.asarray(image.affine, dtype=np.float64)


def sitk_to_array_affine(image) -> tuple[np.ndarray, np.ndarray]:
    """Convert a SimpleITK image to (array (X, Y, Z[, C]) float32, RAS affine (4, 4)).

    ITK stores the array as (Z, Y, X[, C]) and the geometry in LPS: world = origin + D @ (spacing * index).
    """
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    dim = image.GetDimension()
    n_components = image.GetNumberOfComponentsPerPixel()
    spatial_axes = tuple(range(dim))[::-1]
    if n_components > 1:
        array = np.transpose(array, (*spatial_axes, dim))
    else:
        array = np.transpose(array, spatial_axes)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    lps = np.eye(4)
    k = min(dim, 3)
    lps[:k, :k] = (direction * spacing[None, :])[:k, :k]
    lps[:k, 3] = origin[:k]
    return array.astype(np.float32, copy=False), _LPS_TO_RAS @ lps


class ITKMessages:
    """Collect what ITK/SimpleITK would print to stderr (warnings such as "Non uniform sampling").

    Used as ``with ITKMessages() as messages: ...``; afterwards ``messages.warnings`` holds one line
    per ITK warning or error text, without ITK's source-file prefix. SimpleITK's
    ``LoggerBase.SetAsGlobalITKLogger`` routes the text here instead of stderr.
    """

    def __init__(self):
        self.warnings: list[str] = []
        self._previous = None

    def __enter__(self) -> ITKMessages:
        import SimpleITK as sitk

        collector = self

        class _Logger(sitk.LoggerBase):
            def DisplayText(self, text):
                collector._add(text)

            DisplayWarningText = DisplayErrorText = DisplayGenericOutputText = DisplayText

            def DisplayDebugText(self, text):
                pass

        self._logger = _Logger()
        self._previous = self._logger.SetAsGlobalITKLogger()
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            self._previous.SetAsGlobalITKLogger()
        self._previous = None

    def _add(self, text: str) -> None:
        lines = [line.strip() for line in str(text).splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(("WARNING: In ", "ERROR: In "))]
        # "ImageSeriesReader (0x55ec...): Non uniform sampling ..." -> "ImageSeriesReader: Non uniform ..."
        message = " ".join(re.sub(r" \(0x[0-9a-fA-F]+\)", "", line) for line in lines)
        if message:
            self.warnings.append(message)


def read_itk_file(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(array, RAS affine, ITK warnings) of a MetaImage / NRRD file via SimpleITK."""
    import SimpleITK as sitk

    with ITKMessages() as messages:
        image = sitk.ReadImage(str(path))
    return (*sitk_to_array_affine(image), messages.warnings)


def read_dicom_files(files: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(array, RAS affine, ITK warnings) of DICOM slices given in order along the slice normal.

    The order and the regular spacing are checked beforehand by
    :func:`medsynth.data.dicom_series.check_series`; SimpleITK/GDCM decodes the pixels (compressed
    transfer syntaxes included) and applies the rescale slope/intercept (e.g. to HU).
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    with ITKMessages() as messages:
        image = reader.Execute()
    return (*sitk_to_array_affine(image), messages.warnings)


def read_volume(path: str | Path, dicom_files: Sequence[Path] | None = None) -> Volume:
    """Read any supported volume without checks (see :func:`medsynth.data.validation.load_checked_volume`).

    Args:
        path: a volume file, or a DICOM series folder.
        dicom_files: for a folder, the series' files sorted along the slice normal (required).
    """
    path = Path(path)
    warnings: list[str] = []
    if path.is_dir():
        if not dicom_files:
            raise ValueError("a DICOM folder is read from its checked series files (load_checked_volume)")
        array, affine, warnings = read_dicom_files(dicom_files)
    elif volume_suffix(path) in NIFTI_SUFFIXES:
        array, affine = read_nifti(path)
    elif volume_suffix(path) in ITK_SUFFIXES:
        array, affine, warnings = read_itk_file(path)
    else:
        raise ValueError(f"unsupported file type '{volume_suffix(path) or path.name}'")
    return Volume(array=array, affine=affine, path=path, warnings=warnings)
