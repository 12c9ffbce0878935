"""DICOM series integrity: group the files of a folder into series and refuse what is not one 3D volume.

GDCM (through SimpleITK) reads the first series of a folder, builds the volume as if its slices
were evenly spaced and only warns on stderr when they are not. Here every file's header is read
with pydicom first, and a series is accepted only when its slices form one regular stack:

==========================  ===============================================================
notation                    meaning
==========================  ===============================================================
``r``, ``c``                row and column direction cosines (ImageOrientationPatient, LPS)
``n = r x c``               slice normal
``p_k``                     ImagePositionPatient of slice k (mm, LPS)
``t_k = n . p_k``           position of slice k along the normal (mm); slices sorted by it
``d_k = t_{k+1} - t_k``     slice step (mm); must all equal their median within
                            ``spacing_tolerance`` (relative), else gaps / missing slices
``p_k - t_k n``             in-plane offset; must not drift by more than half a pixel
                            (gantry tilt or a sheared stack)
==========================  ===============================================================

What is refused, each with one line naming the series (see docs/data.md): non-image objects
(SEG, RTSTRUCT, SR, presentation states, RT plans/doses ...), multi-frame and enhanced objects,
Siemens MOSAIC, files that do not parse or whose pixel data is cut short, slices of different
size or pixel spacing, mixed orientations, duplicate positions, missing geometry, gaps.
Written by hand because no maintained library checks a series' geometry before reading it
(GDCM and dcm2niix warn, or fix silently); pydicom does the parsing.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsynth.data.reading import is_volume_file

#: single-frame cross-sectional image storage classes read as a stack of slices
SLICE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
}
#: DICOMDIR: an index of the files beside it, not data
MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Siemens CSA tag (0019,100A) NumberOfImagesInMosaic
_SIEMENS_MOSAIC_TAG = (0x0019, 0x100A)
_ORIENTATION_TOLERANCE = 1e-3
#: default of conf/data_prepare.yaml dicom.spacing_tolerance (relative deviation of a slice step)
DEFAULT_SPACING_TOLERANCE = 0.01
_DICOM_MAGIC_OFFSET = 128


class SeriesError(ValueError):
    """A series that cannot become one correct 3D volume (message: the reason, one line)."""


@dataclass(frozen=True)
class DicomSeries:
    """The files of one DICOM series found in a folder.

    Attributes:
        folder: the folder holding the files.
        uid: SeriesInstanceUID.
        modality: Modality (CT, MR, PT, SEG, RTSTRUCT, SR, PR ...).
        description: SeriesDescription ('' when absent).
        number: SeriesNumber, or None.
        files: every file of the series, in name order.
        sop_instance_uids: sorted SOPInstanceUIDs (the same scan copied elsewhere has the same ones).
        warnings: what pydicom warned about while reading the headers, one line each.
    """

    folder: Path
    uid: str
    modality: str
    description: str
    number: int | None
    files: tuple[Path, ...]
    sop_instance_uids: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Short human name: ``series 3 (CT, 'AX 5mm') uid 1.2.3...``."""
        number = f" {self.number}" if self.number is not None else ""
        description = f", '{self.description}'" if self.description else ""
        return f"series{number} ({self.modality or 'no modality'}{description}) uid {self.uid}"


def looks_like_dicom(path: Path) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble) or a ``.dcm`` name."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(_DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM-looking files directly in ``folder`` (not hidden, not a known volume format), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not is_volume_file(p) and looks_like_dicom(p)
    )


def read_dataset(path: Path, stop_before_pixels: bool = False):
    """pydicom dataset of ``path``; files without the Part 10 preamble (older writers) are read too.

    Raises:
        pydicom.errors.InvalidDicomError (or what pydicom raises for a damaged file): not DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        ds = pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
        if "SOPClassUID" not in ds:
            raise
        return ds


def scan_folder(folder: Path, files: Sequence[Path]) -> tuple[list[DicomSeries], list[tuple[Path, str]]]:
    """Group ``files`` (DICOM-looking files of ``folder``) by SeriesInstanceUID.

    Returns:
        (series in SeriesNumber / uid order, [(file, reason)] for files that are not readable DICOM).
        DICOMDIR index files are neither.
    """
    groups: dict[str, list] = {}
    unreadable: list[tuple[Path, str]] = []
    for path in files:
        with warnings.catch_warnings(record=True) as caught:  # pydicom's warnings become ours
            warnings.simplefilter("always")
            try:
                header = read_dataset(path, stop_before_pixels=True)
                special = str(header.get("SOPClassUID", "")) == MEDIA_DIRECTORY_SOP_CLASS
                uid = str(header.get("SeriesInstanceUID", "") or "")
            except Exception as err:  # pydicom raises InvalidDicomError, EOFError, struct.error, ...
                unreadable.append((path, f"not a readable DICOM file ({_one_line(err)})"))
                continue
        if special or path.name.upper() == "DICOMDIR":
            continue
        if not uid:
            unreadable.append((path, "DICOM file without SeriesInstanceUID (not part of a series)"))
            continue
        groups.setdefault(uid, []).append((path, header, warning_lines(caught)))
    series = []
    for uid, members in groups.items():
        first = members[0][1]
        notes = tuple(dict.fromkeys(line for *_, lines in members for line in lines))
        number = first.get("SeriesNumber")
        series.append(
            DicomSeries(
                folder=folder,
                uid=uid,
                modality=str(first.get("Modality", "") or ""),
                description=str(first.get("SeriesDescription", "") or "").strip(),
                number=int(number) if number not in (None, "") else None,
                files=tuple(sorted(p for p, *_ in members)),
                sop_instance_uids=tuple(sorted(str(h.get("SOPInstanceUID", "")) for _, h, _ in members)),
                warnings=notes,
            )
        )
    series.sort(key=lambda s: (s.number if s.number is not None else -1, s.uid))
    return series, unreadable


def find_series(folder: Path, uid: str | None) -> DicomSeries:
    """The series ``uid`` of ``folder`` (or its only series when ``uid`` is None).

    Raises:
        SeriesError: no such series, several series and no uid, or unreadable files in it.
    """
    files = dicom_files(folder)
    series, unreadable = scan_folder(folder, files)
    if uid is None:
        if len(series) > 1:
            names = "; ".join(s.label for s in series)
            raise SeriesError(
                f"holds {len(series)} DICOM series ({names}); give one (series_instance_uid column or series=)"
            )
        if not series:
            raise SeriesError(unreadable[0][1] if unreadable else "folder holds no DICOM series")
        chosen = series[0]
    else:
        matches = [s for s in series if s.uid == uid]
        if not matches:
            raise SeriesError(f"no DICOM series with SeriesInstanceUID {uid}")
        chosen = matches[0]
    if len(series) == 1 and unreadable:
        path, reason = unreadable[0]
        raise SeriesError(f"{chosen.label}: file {path.name}: {reason}")
    return chosen


def warning_lines(caught) -> list[str]:
    """``pydicom: <message>`` for each recorded warning (without pydicom's link to the standard)."""
    return [f"pydicom: {_one_line(w.message).split(' Please see')[0]}" for w in caught]


def _one_line(err: BaseException) -> str:
    return (" ".join(str(err).split()) or type(err).__name__)[:160]


def _expected_pixel_bytes(ds) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    return int(ds.Rows) * int(ds.Columns) * samples * frames * bits // 8


def _refuse_object(ds, series: DicomSeries, name: str) -> None:
    """Non-image, multi-frame, enhanced and MOSAIC objects: SeriesError with the reason."""
    from pydicom.uid import UID

    sop = str(ds.get("SOPClassUID", ""))
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" in image_type or _SIEMENS_MOSAIC_TAG in ds:
        raise SeriesError(
            f"{series.label}: Siemens MOSAIC (slices tiled in one frame, file {name}); "
            "unpack it first (e.g. dcm2niix)"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if sop not in SLICE_SOP_CLASSES:
        kind = UID(sop).name if sop else "no SOP Class UID"
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise SeriesError(f"{series.label}: not an image ({kind}, file {name})")
        if frames > 1 or "Enhanced" in kind or "Multi-frame" in kind:
            raise SeriesError(
                f"{series.label}: multi-frame object ({kind}, {frames} frames, file {name}); "
                "only single-frame CT/MR/PET slices are read (convert with dcm2niix)"
            )
        raise SeriesError(f"{series.label}: not a CT/MR/PET slice ({kind}, file {name})")
    if frames > 1:
        raise SeriesError(f"{series.label}: multi-frame object ({frames} frames, file {name}); convert it with dcm2niix")


def check_series(series: DicomSeries, spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE) -> list[Path]:
    """Check every file of ``series`` and return them sorted along the slice normal.

    Args:
        series: from :func:`scan_folder`.
        spacing_tolerance: largest accepted relative deviation of a slice step from the median step.

    Raises:
        SeriesError: the reason, naming the series (and the file when one file is at fault).
    """
    import pydicom

    rows = []
    for path in series.files:
        try:
            ds = read_dataset(path)
        except Exception as err:
            raise SeriesError(f"{series.label}: file {path.name} is not readable DICOM ({_one_line(err)})") from None
        _refuse_object(ds, series, path.name)
        if "PixelData" not in ds:
            raise SeriesError(f"{series.label}: file {path.name} has no pixel data")
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian)
        if not pydicom.uid.UID(syntax).is_compressed:
            have, need = len(ds.PixelData), _expected_pixel_bytes(ds)
            if have < need:
                raise SeriesError(
                    f"{series.label}: file {path.name} is truncated (pixel data {have} of {need} bytes)"
                )
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise SeriesError(
                f"{series.label}: file {path.name} has no ImagePositionPatient/ImageOrientationPatient "
                "(slice geometry unknown)"
            )
        spacing = ds.get("PixelSpacing") or [1.0, 1.0]
        rows.append(
            (
                path,
                np.asarray(ds.ImagePositionPatient, dtype=np.float64),
                np.asarray(ds.ImageOrientationPatient, dtype=np.float64),
                (int(ds.Rows), int(ds.Columns)),
                np.asarray(spacing, dtype=np.float64),
            )
        )
    return _sorted_stack(series, rows, spacing_tolerance)


def _sorted_stack(series: DicomSeries, rows: list, spacing_tolerance: float) -> list[Path]:
    sizes = {r[3] for r in rows}
    if len(sizes) > 1:
        raise SeriesError(f"{series.label}: slices of different sizes {sorted(sizes)}")
    pixel = np.stack([r[4] for r in rows])
    if np.ptp(pixel, axis=0).max() > 1e-3:
        raise SeriesError(f"{series.label}: slices with different pixel spacing")
    orientation = np.stack([r[2] for r in rows])
    if np.abs(orientation - orientation[0]).max() > _ORIENTATION_TOLERANCE:
        kinds = len({tuple(np.round(o, 3)) for o in orientation})
        raise SeriesError(f"{series.label}: mixed orientations ({kinds} different ImageOrientationPatient)")
    row_dir, col_dir = orientation[0][:3], orientation[0][3:]
    normal = np.cross(row_dir, col_dir)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise SeriesError(f"{series.label}: ImageOrientationPatient is not two orthonormal directions")
    positions = np.stack([r[1] for r in rows])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along, positions = along[order], positions[order]
    files = [rows[i][0] for i in order]
    if len(files) < 2:
        return files
    steps = np.diff(along)
    min_pixel = float(pixel[0].min())
    duplicate = steps < 1e-3 * max(min_pixel, 1e-3)
    if duplicate.any():
        n_positions = len(files) - int(duplicate.sum())
        raise SeriesError(
            f"{series.label}: duplicate slice positions ({len(files)} files at {n_positions} positions; "
            "several echoes, phases or time points in one series?)"
        )
    median = float(np.median(steps))
    deviation = np.abs(steps - median) / median
    if deviation.max() > spacing_tolerance:
        worst = int(np.argmax(deviation))
        missing = int(round(float(steps.sum()) / median)) + 1 - len(files)
        hint = f"; about {missing} slice(s) missing" if missing > 0 else ""
        raise SeriesError(
            f"{series.label}: non-uniform slice spacing (step {steps[worst]:.3g} mm at "
            f"{along[worst]:.4g} mm along the normal, median {median:.3g} mm{hint})"
        )
    in_plane = positions - np.outer(along, normal)
    drift = np.linalg.norm(in_plane - in_plane[0], axis=1).max()
    if drift > 0.5 * min_pixel:
        raise SeriesError(
            f"{series.label}: slices not stacked along their normal (in-plane drift {drift:.3g} mm; "
            "gantry tilt or a sheared stack)"
        )
    return files
