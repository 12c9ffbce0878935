"""Failures leave nothing: what a failed command created from scratch and must not leave behind.

The dispatcher (:mod:`medsynth.cli`) notes, before a stage runs, whether the SQLite database named
by ``db=`` and the folder named by ``out_dir=`` exist. If the stage then fails:

- a SQLite database file that did not exist before is removed (with its ``-wal``/``-shm``/
  ``-journal`` companions): a failed ``study create`` or a mistyped ``db=`` of ``study export``
  must not leave an empty, migrated database that later looks like a study;
- an ``out_dir`` that did not exist before is removed only if it holds no file (finished outputs,
  e.g. samples written before a later failure, are never deleted).

Anything that existed before the command is never touched.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _value(args: Sequence[str], key: str) -> str | None:
    for arg in reversed(list(args)):
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("+~") == key and value not in ("", "null"):
            return value
    return None


def sqlite_file(db: str) -> Path | None:
    """The database file of a ``db=`` value (a bare path or ``sqlite:///path``), else None."""
    if "://" not in db:
        return Path(db).expanduser()
    if not db.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        database = make_url(db).database
    except ArgumentError:
        return None
    return Path(database).expanduser() if database and database != ":memory:" else None


@dataclass
class Leftovers:
    """Paths a command may create, and whether they existed before it ran."""

    new_database: Path | None = None
    new_out_dir: Path | None = None
    removed: list[Path] = field(default_factory=list)

    @classmethod
    def before(cls, args: Sequence[str]) -> Leftovers:
        """Note the ``db=`` file and ``out_dir=`` folder that do not exist yet."""
        db = _value(args, "db")
        database = sqlite_file(db) if db else None
        out = _value(args, "out_dir")
        out_dir = Path(out).expanduser() if out else None
        return cls(
            new_database=database if database is not None and not database.exists() else None,
            new_out_dir=out_dir if out_dir is not None and not out_dir.exists() else None,
        )

    def remove(self) -> list[Path]:
        """After a failure: remove what the command created (see the module docstring)."""
        if self.new_database is not None and self.new_database.exists():
            engines = sys.modules.get("medsynth.study.db")
            if engines is not None:
                engines.dispose_engines()  # no pooled connection may keep writing to a deleted file
            for path in [self.new_database, *(Path(f"{self.new_database}{s}") for s in SQLITE_COMPANIONS)]:
                if path.is_file():
                    path.unlink()
                    self.removed.append(path)
        folder = self.new_out_dir
        if folder is not None and folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)
            self.removed.append(folder)
        return self.removed
