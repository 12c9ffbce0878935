"""The preprocessing fingerprint: which space a folder of volumes lives in.

A fingerprint is the part of ``preprocessing.json`` that decides what a voxel value and a voxel
position mean: grid ``shape`` (X, Y, Z voxels), ``spacing`` (mm), ``orientation`` (axis codes),
``intensity`` (mode and its window or percentiles, clip) and the ``crop_foreground`` policy.
``medsynth data prepare`` writes it, checkpoints carry it, ``medsynth sample`` writes it beside
its volumes, and ``evaluate`` / ``study create`` refuse sets whose fingerprints differ: metrics
and readers would otherwise compare units and grids, not realism.

Written here (no library describes a preprocessing space); shared by every stage, imports nothing
from them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from medsynth.errors import MedsynthError

PREPROCESSING_FILE = "preprocessing.json"
#: the preprocessing.json keys that make up a fingerprint (in this order)
FINGERPRINT_FIELDS = ("shape", "spacing", "orientation", "intensity", "crop_foreground")
#: relative tolerance for floating-point fields (spacing in mm, percentiles, windows)
RELATIVE_TOLERANCE = 1e-6


class FingerprintError(MedsynthError):
    """A set has no fingerprint, or one that differs from the reference set's (one line)."""


def fingerprint_of(record: Mapping) -> dict:
    """The fingerprint inside a preprocessing record: its ``fingerprint`` block when present, else
    the :data:`FINGERPRINT_FIELDS` of the record itself (records written before the block existed).

    Raises:
        KeyError: a fingerprint field is missing.
    """
    if isinstance(record.get("fingerprint"), Mapping):
        record = record["fingerprint"]
    return {key: _plain(record[key]) for key in FINGERPRINT_FIELDS}


def read_fingerprint(folder: str | Path, key: str) -> dict | None:
    """The fingerprint of ``folder/preprocessing.json``, or None when the folder has none.

    Args:
        folder: a set's folder.
        key: the config key that named it (for the error line).

    Raises:
        FingerprintError: the file exists but is not a valid preprocessing record.
    """
    path = Path(str(folder)).expanduser() / PREPROCESSING_FILE
    if not path.is_file():
        return None
    try:
        return fingerprint_of(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise FingerprintError(f"{key}: {path} is not a valid preprocessing record ({err!r})") from None


def differing_field(reference: Mapping, other: Mapping, prefix: str = "") -> tuple[str, object, object] | None:
    """First field (dotted path) where two fingerprints differ, with both values; None if they agree.

    Numbers compare with a relative tolerance of :data:`RELATIVE_TOLERANCE` (spacing read back
    from float32 NIfTI headers); everything else exactly.
    """
    for name in sorted(set(reference) | set(other)):
        path = f"{prefix}{name}"
        a, b = reference.get(name), other.get(name)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found = differing_field(a, b, f"{path}.")
            if found:
                return found
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
            if len(a) != len(b) or any(not _same(x, y) for x, y in zip(a, b, strict=False)):
                return path, a, b
        elif not _same(a, b):
            return path, a, b
    return None


def require_same_fingerprint(sets: Mapping[str, str | Path], hint: str = "") -> dict:
    """Check that every set's folder carries one and the same fingerprint; return it.

    Args:
        sets: ``{config key: folder}``; the first entry is the reference.
        hint: appended to the error line (e.g. how to prepare the inputs).

    Raises:
        FingerprintError: one line naming the set and the reason (no preprocessing.json, or the
            first differing field with both values).
    """
    reference_key, reference = None, None
    for key, folder in sets.items():
        found = read_fingerprint(folder, key)
        if found is None:
            raise FingerprintError(
                f"{key}: {folder} has no {PREPROCESSING_FILE} (no preprocessing fingerprint: prepare it "
                f"with medsynth data prepare, or sample it with medsynth sample){hint}"
            )
        if reference is None:
            reference_key, reference = key, found
            continue
        diff = differing_field(reference, found)
        if diff:
            name, want, got = diff
            raise FingerprintError(
                f"{key}: preprocessing fingerprint differs from {reference_key}'s in {name} "
                f"({_show(got)} vs {_show(want)}){hint}"
            )
    return dict(reference or {})


def _same(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)
    return a == b


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _show(value: object) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
