"""Find the volumes to prepare: a folder, a CSV manifest, a Decathlon dataset.json, or one file.

Each found volume becomes a :class:`SourceItem` (where it is, a unique subject id, and the label /
covariate columns carried over from a manifest). Every DICOM series of a folder is its own item
(manifest column ``series_instance_uid``); ``series=`` keeps only some. Folders are walked with
symlinks resolved and loops not followed; the same scan reached twice is caught by
:mod:`medsynth.data.duplicates`. Problems with a single entry (a manifest row pointing to a missing
file, an unreadable DICOM file) are kept on the item and reported with the other bad files;
problems with the input as a whole (no such path, unreadable CSV, a dataset.json that breaks the
Decathlon schema, no volumes found) raise at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medsynth.data.dicom_series import DEFAULT_SPACING_TOLERANCE, DicomSeries, looks_like_dicom, scan_folder
from medsynth.data.duplicates import resolve_duplicates
from medsynth.data.reading import VOLUME_SUFFIXES, is_volume_file, strip_volume_suffix
from medsynth.errors import InputFileError

#: manifest columns that prepare writes itself and so never carries over
RESERVED_COLUMNS = ("file", "subject_id", "source", "intensity_low", "intensity_high")
#: manifest column naming the DICOM series of a folder (written by prepare, read from CSV manifests)
SERIES_COLUMN = "series_instance_uid"
#: a manifest file at the top of an input folder is used for labels
FOLDER_MANIFEST = "manifest.csv"

__all__ = ["SourceItem", "discover", "looks_like_dicom"]


@dataclass
class SourceItem:
    """One volume to prepare.

    Attributes:
        source: a volume file, or a folder holding one DICOM series.
        subject_id: unique, file-name safe; the output is ``<subject_id>.nii.gz``.
        columns: labels / covariates carried into the prepared manifest.
        problem: why the entry is unusable before even reading it (e.g. missing file), or None.
        label: the subject's label map (a volume file on the image's grid), or None.
        series_uid: for a DICOM folder, the SeriesInstanceUID to read (None: its only series).
        series: the series' files as found by discovery (spares reading every header again).
        spacing_tolerance: DICOM: accepted relative deviation of a slice step from the median.
        content_id: what makes two entries the same scan when already known (a DICOM series:
            its SOPInstanceUIDs); files are compared by canonical path and content hash.
    """

    source: Path
    subject_id: str
    columns: dict = field(default_factory=dict)
    problem: str | None = None
    label: Path | None = None
    series_uid: str | None = None
    series: DicomSeries | None = None
    spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE
    content_id: str | None = None


def _safe_id(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("._") or "subject"


def _unique_ids(items: list[SourceItem]) -> list[SourceItem]:
    seen: dict[str, int] = {}
    for item in items:
        base = _safe_id(item.subject_id)
        count = seen.get(base, 0)
        seen[base] = count + 1
        item.subject_id = base if count == 0 else f"{base}_{count + 1}"
    return items


def walk_folder(folder: Path) -> list[tuple[Path, list[Path]]]:
    """(directory, its files) for ``folder`` and every sub-folder, in name order.

    Symlinked folders are followed, except into one of their own ancestors (a loop); hidden files
    and folders (``.name``) are left out.
    """
    found: list[tuple[Path, list[Path]]] = []

    def visit(directory: Path, ancestors: tuple[Path, ...]) -> None:
        try:
            entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
        except OSError:
            return
        found.append((directory, [p for p in entries if p.is_file()]))
        for sub in entries:
            if sub.is_dir() and sub.resolve() not in ancestors:
                visit(sub, (*ancestors, sub.resolve()))

    visit(folder, (folder.resolve(),))
    return found


def _series_items(
    directory: Path, sid: str, files: list[Path], series_filter: Sequence[str] | None
) -> list[SourceItem]:
    """One item per DICOM series in ``directory`` (and one per unreadable DICOM-looking file)."""
    series, unreadable = scan_folder(directory, files)
    items = [
        SourceItem(source=path, subject_id=f"{sid}_{path.name}", problem=reason) for path, reason in unreadable
    ]
    if series_filter:
        wanted = {str(v).lower() for v in series_filter}
        series = [
            s for s in series if s.uid.lower() in wanted or s.modality.lower() in wanted or s.description.lower() in wanted
        ]
    for one in series:
        name = sid if len(series) == 1 else f"{sid}_{_series_tag(one)}"
        items.append(
            SourceItem(
                source=directory,
                subject_id=name,
                columns={SERIES_COLUMN: one.uid},
                series_uid=one.uid,
                series=one,
                content_id="dicom:" + ",".join(one.sop_instance_uids),
            )
        )
    return items


def _series_tag(series: DicomSeries) -> str:
    number = "" if series.number is None else str(series.number)
    return f"{series.modality or 'series'}{number}" or series.uid[-8:]


def discover_folder(
    folder: Path, exclude: Sequence[Path] = (), series_filter: Sequence[str] | None = None
) -> list[SourceItem]:
    """Every volume file (recursive) and every DICOM series under ``folder``.

    Subject ids are the relative path without the ending, ``/`` replaced by ``_``; a folder with
    several DICOM series adds ``_<Modality><SeriesNumber>`` per series.
    """
    excluded = [e.resolve() for e in exclude]
    items: list[SourceItem] = []
    for directory, files in walk_folder(folder):
        resolved = directory.resolve()
        if any(resolved == e or e in resolved.parents for e in excluded):
            continue
        relative = directory.relative_to(folder)
        for path in files:
            if is_volume_file(path):
                sid = "_".join([*relative.parts, strip_volume_suffix(path)])
                items.append(SourceItem(source=path, subject_id=sid))
        dicom = [p for p in files if not is_volume_file(p) and looks_like_dicom(p)]
        if dicom:
            sid = "_".join(relative.parts) if relative.parts else directory.name
            items += _series_items(directory, sid, dicom, series_filter)
    return items


def _path_column(frame: pd.DataFrame, candidates: Sequence[str], csv_path: Path) -> str:
    for name in candidates:
        if name in frame.columns:
            return name
    raise InputFileError(csv_path, f"manifest has no path column (expected one of {', '.join(candidates)})")


def _label_map_path(value: object, base: Path) -> Path | None:
    """The label-map file a manifest cell names (a string ending in a volume suffix), else None."""
    if not isinstance(value, str) or not is_volume_file(value.strip()):
        return None
    path = Path(value.strip())
    return path if path.is_absolute() else base / path


def discover_manifest(csv_path: Path, path_columns: Sequence[str], label_column: str | None = None) -> list[SourceItem]:
    """Rows of a CSV manifest: a path column (relative to the CSV's folder) plus carried columns.

    Cells of ``label_column`` that name volume files become the items' label maps (relative to the
    CSV's folder); other values of that column (e.g. an integer class) are carried like any column.
    """
    try:
        frame = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(
            csv_path, f"not a readable CSV manifest ({' '.join(str(err).split())[:150]})"
        ) from None
    column = _path_column(frame, path_columns, csv_path)
    carried = [c for c in frame.columns if c != column and c not in RESERVED_COLUMNS]
    items = []
    for row_number, row in enumerate(frame.to_dict(orient="records"), start=2):
        raw = row[column]
        if not isinstance(raw, str) or not raw.strip():
            items.append(
                SourceItem(
                    source=csv_path,
                    subject_id=f"row{row_number}",
                    problem=f"manifest row {row_number} has an empty '{column}'",
                )
            )
            continue
        path = Path(raw)
        path = path if path.is_absolute() else csv_path.parent / path
        sid = (
            str(row["subject_id"])
            if "subject_id" in row and pd.notna(row["subject_id"])
            else strip_volume_suffix(path)
        )
        problem = (
            None if path.exists() else f"file does not exist (manifest {csv_path.name} row {row_number})"
        )
        columns = {c: row[c] for c in carried}
        label = _label_map_path(row.get(label_column), csv_path.parent) if label_column else None
        if label is not None:
            columns.pop(label_column, None)
            if problem is None and not label.exists():
                problem = f"label map {label} does not exist (manifest {csv_path.name} row {row_number})"
        uid = row.get(SERIES_COLUMN)
        items.append(
            SourceItem(
                source=path,
                subject_id=sid,
                columns=columns,
                problem=problem,
                label=label,
                series_uid=str(uid) if isinstance(uid, str) and uid.strip() else None,
            )
        )
    return items


def check_decathlon_schema(content: object, section: str, json_path: Path) -> None:
    """The Medical Segmentation Decathlon layout: ``section`` is a list of ``{"image": path, ...}``.

    The ``test`` list of the original datasets holds plain path strings, which are accepted too.

    Raises:
        InputFileError: naming the file, the entry and what is wrong.
    """
    if not isinstance(content, dict) or section not in content:
        raise InputFileError(json_path, f"no '{section}' list (set decathlon_section=training|test)")
    entries = content[section]
    if not isinstance(entries, list):
        raise InputFileError(
            json_path, f"'{section}' must be a list of entries, got {type(entries).__name__} (Decathlon schema)"
        )
    for index, entry in enumerate(entries):
        if isinstance(entry, str) and entry.strip():
            continue
        if not isinstance(entry, dict):
            raise InputFileError(json_path, f"'{section}' entry {index}: expected an object with 'image', got {entry!r:.60}")
        image = entry.get("image")
        if not isinstance(image, str) or not image.strip():
            raise InputFileError(json_path, f"'{section}' entry {index}: no 'image' path (Decathlon schema)")
        label = entry.get("label")
        if label is not None and not isinstance(label, str):
            raise InputFileError(json_path, f"'{section}' entry {index}: 'label' must be a path string")


def discover_decathlon(json_path: Path, section: str) -> list[SourceItem]:
    """Images of a Medical Segmentation Decathlon ``dataset.json`` (MONAI's datalist loader)."""
    from monai.data import load_decathlon_datalist

    try:
        with open(json_path) as handle:
            content = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(
            json_path, f"not a readable JSON file ({err.msg if hasattr(err, 'msg') else err})"
        ) from None
    check_decathlon_schema(content, section, json_path)
    entries = load_decathlon_datalist(json_path, is_segmentation=True, data_list_key=section)
    items = []
    for entry in entries:
        path = Path(entry["image"])
        problem = None if path.exists() else "file does not exist (listed in dataset.json)"
        label = Path(entry["label"]) if isinstance(entry.get("label"), str) else None
        if problem is None and label is not None and not label.exists():
            problem = f"label map {label} does not exist (listed in dataset.json)"
        items.append(SourceItem(source=path, subject_id=strip_volume_suffix(path), problem=problem, label=label))
    return items


def discovery_options(cfg) -> dict:
    """``series``, ``on_duplicate`` and ``spacing_tolerance`` for :func:`discover` from conf/data_prepare.yaml."""
    series = cfg.get("series")
    if isinstance(series, str):
        series = [series]
    return {
        "series": [str(s) for s in series] if series else None,
        "on_duplicate": str(cfg.get("on_duplicate", "error")),
        "spacing_tolerance": float(cfg.dicom.spacing_tolerance) if "dicom" in cfg else DEFAULT_SPACING_TOLERANCE,
    }


def discover(
    input_path: str | Path,
    path_columns: Sequence[str],
    decathlon_section: str,
    exclude=(),
    label_column: str | None = None,
    series: Sequence[str] | None = None,
    on_duplicate: str = "error",
    spacing_tolerance: float = DEFAULT_SPACING_TOLERANCE,
) -> list[SourceItem]:
    """Dispatch on the kind of ``input_path``; return items with unique subject ids.

    Args:
        series: DICOM folders: keep only series whose SeriesInstanceUID, Modality or
            SeriesDescription is one of these (case-insensitive); None keeps every series.
        on_duplicate: the same scan reached twice: ``error`` | ``skip`` | ``keep``
            (:func:`medsynth.data.duplicates.resolve_duplicates`).
        spacing_tolerance: DICOM slice-step tolerance carried on each item.

    Raises:
        InputFileError: the input does not exist, is unreadable, or holds no volume.
    """
    path = Path(input_path)
    if not path.exists():
        raise InputFileError(path, "input does not exist")
    if path.is_dir():
        if (path / FOLDER_MANIFEST).is_file():
            items = discover_manifest(path / FOLDER_MANIFEST, path_columns, label_column)
        else:
            items = discover_folder(path, exclude=exclude, series_filter=series)
    elif path.suffix.lower() == ".csv":
        items = discover_manifest(path, path_columns, label_column)
    elif path.suffix.lower() == ".json":
        items = discover_decathlon(path, decathlon_section)
    else:
        items = [SourceItem(source=path, subject_id=strip_volume_suffix(path))]
    if not items:
        raise InputFileError(path, f"no volumes found ({', '.join(VOLUME_SUFFIXES)} or DICOM series folders)")
    for item in items:
        item.spacing_tolerance = float(spacing_tolerance)
    return resolve_duplicates(_unique_ids(items), on_duplicate)
