"""One subject, one entry: find the same scan reached twice before it becomes two "subjects".

Two entries are the same scan when their canonical paths are equal (symlinks resolved, ``..``
removed), when their files have the same content (BLAKE2b of the bytes), or when two DICOM series
hold the same SOPInstanceUIDs (a copied series folder). Left alone, such a pair leaks across any
train/held-out split. ``on_duplicate`` (conf/data_prepare.yaml) says what happens to the later
entry of a pair:

- ``error`` (default): it becomes a bad input, one line naming both paths;
- ``skip``: it is dropped; the kept entry's manifest row lists it in ``duplicate_sources``;
- ``keep``: both are prepared; the later one's manifest row names the first in ``duplicate_of``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

ON_DUPLICATE = ("error", "skip", "keep")
#: manifest columns written for duplicates
DUPLICATE_OF = "duplicate_of"
DUPLICATE_SOURCES = "duplicate_sources"


def file_digest(path: Path) -> str:
    """BLAKE2b hex digest of a file's bytes (streamed)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "blake2b").hexdigest()


def identity_keys(item) -> list[tuple[str, str]]:
    """What identifies ``item``'s scan: ``[(kind, key), ...]`` with kind ``path`` or ``content``."""
    source = Path(item.source)
    keys = [("path", f"{source.resolve()}#{item.series_uid or ''}")]
    if item.content_id:
        keys.append(("content", item.content_id))
    elif source.is_file():
        try:
            keys.append(("content", file_digest(source)))
        except OSError:
            pass  # unreadable: reported by the checks that follow
    return keys


def resolve_duplicates(items: Sequence, on_duplicate: str) -> list:
    """Apply the ``on_duplicate`` policy to :class:`~medsynth.data.discovery.SourceItem` s (in order).

    Entries that already have a problem are not compared.

    Raises:
        ConfigError: an unknown policy.
    """
    from medsynth.errors import ConfigError

    if on_duplicate not in ON_DUPLICATE:
        raise ConfigError("on_duplicate", f"expected one of {', '.join(ON_DUPLICATE)}, got '{on_duplicate}'")
    first: dict[tuple[str, str], object] = {}
    kept = []
    for item in items:
        if item.problem:
            kept.append(item)
            continue
        keys = identity_keys(item)
        match = next(((kind, first[(kind, key)]) for kind, key in keys if (kind, key) in first), None)
        if match is None:
            for key in keys:
                first[key] = item
            kept.append(item)
            continue
        kind, original = match
        how = "the same file" if kind == "path" else "the same content"
        if on_duplicate == "error":
            item.problem = (
                f"same scan as {original.source} ({how}, subject {original.subject_id}); "
                "one subject must be one entry (on_duplicate=skip|keep to allow)"
            )
            kept.append(item)
        elif on_duplicate == "skip":
            previous = original.columns.get(DUPLICATE_SOURCES)
            original.columns[DUPLICATE_SOURCES] = f"{previous};{item.source}" if previous else str(item.source)
        else:
            item.columns[DUPLICATE_OF] = original.subject_id
            kept.append(item)
    return kept
