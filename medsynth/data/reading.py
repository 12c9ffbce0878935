"""Read a 3D (or 4D) medical volume from disk into a voxel array plus a RAS affine.

NIfTI-1/NIfTI-2 (``.nii``, ``.nii.gz``) go through nibabel. MetaImage (``.mha``/``.mhd``), NRRD
(``.nrrd``/``.nhdr``) and DICOM series folders go through SimpleITK and are converted to the NIfTI
convention: array axes (X, Y, Z[, T]) = (i, j, k) index axes, affine maps voxel index to RAS mm.
The ITK -> RAS conversion is written here because MONAI's ITK reader needs the separate ``itk``
package, and SimpleITK's own physical-space metadata makes it a 4-line matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path

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


def read_itk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array, RAS affine) of a MetaImage / NRRD file via SimpleITK."""
    import SimpleITK as sitk

    return sitk_to_array_affine(sitk.ReadImage(str(path)))


def dicom_series_files(folder: Path) -> list[str]:
    """File names of the first DICOM series in ``folder`` (sorted by GDCM along the slice normal)."""
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        return []
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))


def read_dicom_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(array, RAS affine) of the first DICOM series in ``folder`` via SimpleITK/GDCM (rescaled, e.g. HU)."""
    import SimpleITK as sitk

    files = dicom_series_files(folder)
    if not files:
        raise ValueError("no DICOM series found in folder")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return sitk_to_array_affine(reader.Execute())


def read_volume(path: str | Path) -> Volume:
    """Read any supported volume without checks (see :func:`medsynth.data.validation.load_checked_volume`)."""
    path = Path(path)
    if path.is_dir():
        array, affine = read_dicom_series(path)
    elif volume_suffix(path) in NIFTI_SUFFIXES:
        array, affine = read_nifti(path)
    elif volume_suffix(path) in ITK_SUFFIXES:
        array, affine = read_itk_file(path)
    else:
        raise ValueError(f"unsupported file type '{volume_suffix(path) or path.name}'")
    return Volume(array=array, affine=affine, path=path)
