"""metrics.json, the contract between ``medsynth evaluate`` (writer) and ``medsynth analyze`` (reader).

Schema 2 (DESIGN.md)::

    {"schema": 2,
     "metrics": {name: {"value": float | null, "better": "lower" | "higher" | "target",
                        "target": float | null, "ci": [lo, hi] | null, "floor": float | null}},
     "settings": {...}}

Readers take the direction from ``better`` (and ``target``), never from a metric's name, and never
treat ``settings`` as metrics. Schema 1 (a flat object of numbers written before schema 2) is still
read: its metrics are medsynth's own, whose directions are listed in :data:`SCHEMA1_DIRECTIONS`;
every other number in it (settings, counts) is ignored. Schema-1 ``frd`` was ln(1 + d^2), so a
schema-1 file cannot be ranked against a schema-2 file (see :func:`require_one_schema`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medsynth.errors import InputFileError

SCHEMA = 2
BETTER = ("lower", "higher", "target")
ENTRY_KEYS = ("value", "better", "target", "ci", "floor")

#: schema-1 metric -> (better, target); target "ms_ssim_real" = that metric's value in the same file
SCHEMA1_DIRECTIONS: dict[str, tuple[str, float | str | None]] = {
    "frd": ("lower", None),
    "mmd": ("lower", None),
    "kid": ("lower", None),
    "fid3d": ("lower", None),
    "kid3d": ("lower", None),
    "precision": ("higher", None),
    "recall": ("higher", None),
    "coverage": ("higher", None),
    "density": ("target", 1.0),
    "ms_ssim_synthetic": ("target", "ms_ssim_real"),
}


@dataclass(frozen=True)
class MetricEntry:
    """One set-level metric: ``value`` (None = undefined), direction ``better`` and ``target``
    (for ``better == "target"``: best at this value), bootstrap ``ci`` and real-vs-real ``floor``."""

    value: float | None
    better: str
    target: float | None = None
    ci: tuple[float, float] | None = None
    floor: float | None = None

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "better": self.better,
            "target": self.target,
            "ci": None if self.ci is None else [float(self.ci[0]), float(self.ci[1])],
            "floor": self.floor,
        }

    def goodness(self) -> float | None:
        """The value oriented so that higher = better: -value (lower), value (higher),
        -|value - target| (target). None when the value (or the target) is undefined."""
        if self.value is None:
            return None
        if self.better == "lower":
            return -self.value
        if self.better == "higher":
            return self.value
        return None if self.target is None else -abs(self.value - self.target)


@dataclass(frozen=True)
class MetricsFile:
    """A read metrics.json: ``schema`` (1 or 2), ``metrics`` {name: MetricEntry}, ``path``."""

    path: Path
    schema: int
    metrics: dict[str, MetricEntry]


def read_metrics_file(path: str | Path) -> MetricsFile:
    """Read and check one metrics.json (schema 2, or schema 1 without a ``schema`` key).

    Raises:
        InputFileError: one line naming the file and the reason (missing, not JSON, unknown schema,
            an entry without a valid ``better``, a non-numeric value).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not valid JSON ({getattr(err, 'msg', err)})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "must hold a JSON object (a metrics.json from medsynth evaluate)")
    schema = data.get("schema", 1)
    if schema == 1 and "metrics" not in data:
        return MetricsFile(path, 1, _schema1_entries(data, path))
    if schema != SCHEMA or not isinstance(data.get("metrics"), Mapping):
        raise InputFileError(
            path, f"unknown metrics.json schema {schema!r} (this medsynth reads schema 1 and {SCHEMA})"
        )
    entries = {str(name): _entry(name, raw, path) for name, raw in data["metrics"].items()}
    if not entries:
        raise InputFileError(path, "holds no metric")
    return MetricsFile(path, SCHEMA, entries)


def require_one_schema(files: Mapping[str, MetricsFile]) -> None:
    """Refuse to compare schema-1 and schema-2 files (FRD changed definition between them)."""
    schemas = {name: f.schema for name, f in files.items()}
    if len(set(schemas.values())) > 1:
        old = next(f for f in files.values() if f.schema == 1)
        new = next(f for f in files.values() if f.schema == SCHEMA)
        raise InputFileError(
            old.path,
            f"schema-1 metrics.json (frd = ln(1 + d^2)) cannot be ranked against schema-2 {new.path} "
            f"(frd = ln(d^2)); re-run medsynth evaluate for this model",
        )


def _number(value: object, path: Path, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputFileError(path, f"{where} must be a finite number or null, got {value!r}")
    return float(value)


def _entry(name: object, raw: object, path: Path) -> MetricEntry:
    where = f"metrics.{name}"
    if not isinstance(raw, Mapping):
        raise InputFileError(path, f"{where} must be an object with {', '.join(ENTRY_KEYS)}")
    better = raw.get("better")
    if better not in BETTER:
        raise InputFileError(path, f"{where}.better must be one of {', '.join(BETTER)}, got {better!r}")
    target = _number(raw.get("target"), path, f"{where}.target")
    if better == "target" and target is None:
        raise InputFileError(path, f"{where}: better is 'target' but target is null")
    ci = raw.get("ci")
    if ci is not None:
        if not isinstance(ci, list | tuple) or len(ci) != 2:
            raise InputFileError(path, f"{where}.ci must be [lo, hi] or null")
        ci = (_number(ci[0], path, f"{where}.ci"), _number(ci[1], path, f"{where}.ci"))
        ci = None if None in ci else ci
    return MetricEntry(
        value=_number(raw.get("value"), path, f"{where}.value"),
        better=str(better),
        target=target,
        ci=ci,
        floor=_number(raw.get("floor"), path, f"{where}.floor"),
    )


def _schema1_entries(data: Mapping, path: Path) -> dict[str, MetricEntry]:
    entries = {}
    for name, (better, target) in SCHEMA1_DIRECTIONS.items():
        value = data.get(name)
        if value is None:
            continue
        value = _number(value, path, name)
        if isinstance(target, str):
            target = _number(data.get(target), path, target)
            if target is None:
                continue
        entries[name] = MetricEntry(value=value, better=better, target=target)
    if not entries:
        raise InputFileError(path, "holds no medsynth metric (schema 1: frd, kid, precision, ...; or schema 2)")
    return entries
