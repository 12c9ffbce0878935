"""Find the volumes to prepare: a folder, a CSV manifest, a Decathlon dataset.json, or one file.

Each found volume becomes a :class:`SourceItem` (where it is, a unique subject id, and the label /
covariate columns carried over from a manifest). Problems with a single entry (a manifest row
pointing to a missing file) are kept on the item and reported with the other bad files; problems
with the input as a whole (no such path, unreadable CSV, no volumes found) raise at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medsynth.data.reading import VOLUME_SUFFIXES, is_volume_file, strip_volume_suffix, volume_suffix
from medsynth.errors import InputFileError

#: manifest columns that prepare writes itself and so never carries over
RESERVED_COLUMNS = ("file", "subject_id", "source", "intensity_low", "intensity_high")
#: a manifest file at the top of an input folder is used for labels
FOLDER_MANIFEST = "manifest.csv"
_DICOM_MAGIC_OFFSET = 128


@dataclass
class SourceItem:
    """One volume to prepare.

    Attributes:
        source: a volume file, or a folder holding one DICOM series.
        subject_id: unique, file-name safe; the output is ``<subject_id>.nii.gz``.
        columns: labels / covariates carried into the prepared manifest.
        problem: why the entry is unusable before even reading it (e.g. missing file), or None.
        label: the subject's label map (a volume file on the image's grid), or None.
    """

    source: Path
    subject_id: str
    columns: dict = field(default_factory=dict)
    problem: str | None = None
    label: Path | None = None


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


def discover_folder(folder: Path, exclude: Sequence[Path] = ()) -> list[SourceItem]:
    """Every volume file (recursive) and every folder holding DICOM files under ``folder``.

    Subject ids are the relative path without the ending, ``/`` replaced by ``_``.
    """
    excluded = [e.resolve() for e in exclude]
    items: list[SourceItem] = []
    for directory in sorted([folder, *(p for p in folder.rglob("*") if p.is_dir())]):
        resolved = directory.resolve()
        if any(resolved == e or e in resolved.parents for e in excluded):
            continue
        if any(part.startswith(".") for part in directory.relative_to(folder).parts):
            continue
        files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
        for path in files:
            if is_volume_file(path):
                relative = path.relative_to(folder)
                sid = "_".join([*relative.parts[:-1], strip_volume_suffix(path)])
                items.append(SourceItem(source=path, subject_id=sid))
        if any(volume_suffix(p) not in VOLUME_SUFFIXES and looks_like_dicom(p) for p in files):
            relative = directory.relative_to(folder)
            sid = "_".join(relative.parts) if relative.parts else directory.name
            items.append(SourceItem(source=directory, subject_id=sid))
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
        items.append(SourceItem(source=path, subject_id=sid, columns=columns, problem=problem, label=label))
    return items


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
    if not isinstance(content, dict) or section not in content:
        raise InputFileError(json_path, f"no '{section}' list (set decathlon_section=training|test)")
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


def discover(
    input_path: str | Path,
    path_columns: Sequence[str],
    decathlon_section: str,
    exclude=(),
    label_column: str | None = None,
) -> list[SourceItem]:
    """Dispatch on the kind of ``input_path``; return items with unique subject ids.

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
            items = discover_folder(path, exclude=exclude)
    elif path.suffix.lower() == ".csv":
        items = discover_manifest(path, path_columns, label_column)
    elif path.suffix.lower() == ".json":
        items = discover_decathlon(path, decathlon_section)
    else:
        items = [SourceItem(source=path, subject_id=strip_volume_suffix(path))]
    if not items:
        raise InputFileError(path, f"no volumes found ({', '.join(VOLUME_SUFFIXES)} or DICOM series folders)")
    return _unique_ids(items)
