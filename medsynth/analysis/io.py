"""Load and validate the analysis inputs: ratings.csv, per_image.csv and set-level metrics JSON.

Every problem becomes one :class:`~medsynth.errors.InputFileError` line naming the file and the
reason (missing column, bad value with its CSV line number, NaN, duplicate), never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medsynth.errors import ConfigError, InputFileError
from medsynth.io.metrics_schema import MetricsFile, read_metrics_file, require_one_schema
from medsynth.io.ratings_schema import (
    RATINGS_OPTIONAL_NUMERIC_COLUMNS,
    RATINGS_REQUIRED_COLUMNS,
    restore_text_cell,
)

RATINGS_REQUIRED = RATINGS_REQUIRED_COLUMNS
RATINGS_OPTIONAL_NUMERIC = RATINGS_OPTIONAL_NUMERIC_COLUMNS


#: per_image.csv columns that name files (medsynth evaluate), not metrics: skipped without a note
NAME_COLUMNS = ("nearest_train", "nearest_real")


@dataclass
class PerImageTable:
    """per_image.csv: ``frame`` indexed by ``case_id`` with the numeric metric columns only."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _read_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputFileError(path, "file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise InputFileError(path, f"not a readable CSV ({' '.join(str(err).split())[:160]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _first_bad_line(mask: pd.Series) -> int:
    """CSV line number (header = line 1) of the first True in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


def _integer_column(frame: pd.DataFrame, column: str, path: Path, allowed: str, ok) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    missing = values.isna()
    if missing.any():
        raw = frame[column][missing].iloc[0]
        what = "an empty/NaN value" if pd.isna(raw) else f"non-numeric value {raw!r}"
        raise InputFileError(
            path,
            f"column '{column}' has {what} at line {_first_bad_line(missing)} ({int(missing.sum())} in all)",
        )
    bad = ~values.map(lambda v: float(v).is_integer() and ok(int(v)))
    if bad.any():
        raise InputFileError(
            path,
            f"column '{column}' must be {allowed}; got {values[bad].iloc[0]!r} at line {_first_bad_line(bad)}",
        )
    return values.astype(int)


def load_ratings(path: str | Path, scale_min: int = 1, scale_max: int = 5) -> pd.DataFrame:
    """Read and validate a ratings.csv (DESIGN.md contract).

    Returns a DataFrame with ``reader_id`` and ``case_id`` as str, the 0/1 and Likert columns as
    int, optional ``slice_consistency``/``anatomy``/``seconds`` as float and ``model`` as str.

    Raises:
        InputFileError: missing file or column, NaN or out-of-range value, a case whose truth
            differs between rows, or the same (reader, case, repeat) twice.
    """
    path = Path(path)
    frame = _read_csv(path)
    for column in frame.columns:  # undo the study export's spreadsheet-formula neutralisation exactly
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(restore_text_cell)
    if "confidence" not in frame.columns:  # no confidence asked: accuracy is defined, AUC is not (null)
        frame["confidence"] = np.nan
    missing = [c for c in RATINGS_REQUIRED if c not in frame.columns]
    if missing:
        raise InputFileError(
            path, f"missing column(s): {', '.join(missing)} (ratings.csv needs {', '.join(RATINGS_REQUIRED)})"
        )
    if frame.empty:
        raise InputFileError(path, "has a header but no ratings")
    for column in ("reader_id", "case_id"):
        empty = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputFileError(path, f"column '{column}' is empty at line {_first_bad_line(empty)}")
        frame[column] = frame[column].astype(str).str.strip()
    likert = f"an integer from {scale_min} to {scale_max}"
    frame["is_synthetic"] = _integer_column(frame, "is_synthetic", path, "0 or 1", lambda v: v in (0, 1))
    frame["called_synthetic"] = _integer_column(
        frame, "called_synthetic", path, "0 or 1", lambda v: v in (0, 1)
    )
    for column in ("confidence", "realism"):
        if column == "confidence" and frame[column].isna().all():
            frame[column] = frame[column].astype(float)
            continue
        frame[column] = _integer_column(frame, column, path, likert, lambda v: scale_min <= v <= scale_max)
    frame["repeat"] = _integer_column(
        frame, "repeat", path, "0 (first showing) or a positive integer", lambda v: v >= 0
    )
    for column in RATINGS_OPTIONAL_NUMERIC:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    if "model" in frame.columns:
        frame["model"] = frame["model"].astype("string").fillna("").astype(str).str.strip()

    truth = frame.groupby("case_id")["is_synthetic"].nunique()
    if (truth > 1).any():
        raise InputFileError(
            path, f"case '{truth[truth > 1].index[0]}' is marked both real and synthetic (is_synthetic)"
        )
    duplicated = frame.duplicated(["reader_id", "case_id", "repeat"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise InputFileError(
            path,
            f"reader '{row['reader_id']}' rated case '{row['case_id']}' twice with repeat={row['repeat']} "
            f"(line {_first_bad_line(duplicated)})",
        )
    firsts = frame[frame["repeat"] == 0]
    orphans = frame[frame["repeat"] > 0].merge(firsts[["reader_id", "case_id"]], how="left", indicator=True)
    if (orphans["_merge"] == "left_only").any():
        row = orphans[orphans["_merge"] == "left_only"].iloc[0]
        raise InputFileError(
            path,
            f"reader '{row['reader_id']}' has a repeat of case '{row['case_id']}' but no first showing (repeat=0)",
        )
    return frame.reset_index(drop=True)


def load_per_image(path: str | Path) -> PerImageTable:
    """Read per_image.csv: ``case_id`` plus metric columns.

    Non-numeric columns are ignored (with a note); +-inf becomes NaN (dropped pairwise later).

    Raises:
        InputFileError: missing file, no ``case_id`` column, duplicate case ids, no numeric column.
    """
    path = Path(path)
    frame = _read_csv(path)
    if "case_id" not in frame.columns:
        raise InputFileError(
            path, "missing column(s): case_id (per_image.csv needs case_id plus metric columns)"
        )
    empty = frame["case_id"].isna() | (frame["case_id"].astype(str).str.strip() == "")
    if empty.any():
        raise InputFileError(path, f"column 'case_id' is empty at line {_first_bad_line(empty)}")
    frame["case_id"] = frame["case_id"].astype(str).str.strip()
    duplicated = frame["case_id"].duplicated()
    if duplicated.any():
        raise InputFileError(
            path,
            f"case_id '{frame['case_id'][duplicated].iloc[0]}' appears twice (line {_first_bad_line(duplicated)})",
        )
    notes: list[str] = []
    numeric: dict[str, pd.Series] = {}
    for column in frame.columns:
        if column == "case_id" or column in NAME_COLUMNS:
            continue
        series = frame[column]
        if series.dtype == bool or not pd.api.types.is_numeric_dtype(series):
            converted = pd.to_numeric(series, errors="coerce")
            if (
                series.dtype == bool
                or converted.notna().sum() < series.notna().sum()
                or converted.notna().sum() == 0
            ):
                notes.append(f"per_image column '{column}' is not numeric and was ignored")
                continue
            series = converted
        values = series.astype(float).replace([np.inf, -np.inf], np.nan)
        n_inf = int(np.isinf(series.astype(float)).sum())
        if n_inf:
            notes.append(f"per_image column '{column}': {n_inf} infinite value(s) treated as missing")
        numeric[column] = values
    if not numeric:
        raise InputFileError(path, "has no numeric metric column besides case_id")
    table = pd.DataFrame(numeric)
    table.index = pd.Index(frame["case_id"], name="case_id")
    return PerImageTable(table, notes)


def _metrics_file_in(folder: Path, model: str) -> Path | None:
    for candidate in (folder / model / "metrics.json", folder / f"{model}.json"):
        if candidate.is_file():
            return candidate
    return None


def load_set_metrics(spec: object, models: list[str] | None = None) -> dict[str, MetricsFile]:
    """Set-level metrics per model, read by :func:`medsynth.io.metrics_schema.read_metrics_file`
    (schema 2, or schema 1; direction from the file, settings never read as metrics).

    Args:
        spec: ``{model: path_to_metrics.json}`` or a folder holding ``<model>/metrics.json`` or
            ``<model>.json`` per model (``models`` lists the names to look for; without it every
            such entry in the folder is used).
        models: model names present in the ratings.

    Returns:
        ``{model: MetricsFile}``.

    Raises:
        InputFileError: a file is missing or invalid, or schema-1 and schema-2 files are mixed.
    """
    if spec is None or spec == "" or spec == {}:
        return {}
    if isinstance(spec, Mapping):
        result = {str(name): read_metrics_file(path) for name, path in spec.items()}
        require_one_schema(result)
        return result
    folder = Path(str(spec))
    if not folder.is_dir():
        raise ConfigError(
            "set_metrics", f"'{folder}' is not a folder; pass a folder or {{model: metrics.json, ...}}"
        )
    if models is None:
        models = sorted(
            {p.parent.name for p in folder.glob("*/metrics.json")} | {p.stem for p in folder.glob("*.json")}
        )
    found = {m: _metrics_file_in(folder, m) for m in models}
    result = {m: read_metrics_file(p) for m, p in found.items() if p is not None}
    if not result:
        raise InputFileError(
            folder, f"no <model>/metrics.json or <model>.json for models {', '.join(models) or '(none)'}"
        )
    require_one_schema(result)
    return result
