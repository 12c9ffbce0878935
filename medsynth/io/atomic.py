"""Atomic file writes: write to a temporary name in the target folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves only a hidden
``.tmp-*`` file that the next run removes (see :func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffixes (``.nii.gz`` stays ``.nii.gz``) so writers that
    infer the format from the name work unchanged. On error the temporary file is removed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete ``.tmp-*`` leftovers of interrupted writes in ``folder``; return how many."""
    count = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for leftover in folder.glob(f"{TEMP_PREFIX}*"):
        if leftover.is_file():
            leftover.unlink()
            count += 1
    return count
