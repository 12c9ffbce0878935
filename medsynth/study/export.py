"""ratings.csv (DESIGN.md): one row per reader and showing, read by ``medsynth analyze``.

Columns: reader_id, case_id, is_synthetic, called_synthetic, confidence, realism, repeat, then the
optional slice_consistency, anatomy, seconds, model, simulated, opaque_id and one column per
further question (e.g. comment). ``case_id`` is the source file name without .nii/.nii.gz so it
joins per_image.csv; ``reader_id`` is the reader's name; bool answers are written as 0/1;
``simulated`` is 1 for readers added by ``study simulate``; ``opaque_id`` is the random id of the
showing the reader saw. Only completed showings are exported (a showing's answers are stored in
one transaction). Text cells that a spreadsheet would run as a formula are neutralised
(:func:`medsynth.io.ratings_schema.neutralise_text_cell`; ``analyze`` undoes it exactly).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from medsynth.io.atomic import atomic_path
from medsynth.io.ratings_schema import (
    RATINGS_OPTIONAL_NUMERIC_COLUMNS,
    RATINGS_REQUIRED_COLUMNS,
    neutralise_text_cell,
)
from medsynth.study.db import read_session
from medsynth.study.models import Answer, Assignment, Case, Reader, Study
from medsynth.study.session import ReaderSession, StudyStore

REQUIRED_COLUMNS = list(RATINGS_REQUIRED_COLUMNS)
OPTIONAL_COLUMNS = [*RATINGS_OPTIONAL_NUMERIC_COLUMNS, "model", "simulated", "opaque_id"]


class Export(StudyStore):
    """The admin's ratings export (the CLI's ``study export`` reads the database directly)."""

    def export_ratings(self, rs: ReaderSession) -> pd.DataFrame:
        """ratings.csv as a DataFrame (admin only)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            return ratings_frame(s, admin.study_id)

    def export_ratings_csv(self, rs: ReaderSession) -> bytes:
        """ratings.csv bytes, formula-neutralised, for the admin page's download (admin only)."""
        return ratings_csv_text(self.export_ratings(rs)).encode("utf-8")


def ratings_frame(session: Session, study_id: int) -> pd.DataFrame:
    """The study's ratings as a DataFrame with the ratings.csv columns (ordered by reader, position)."""
    study = session.get(Study, study_id)
    question_keys = [q["key"] for q in study.questions]
    rows = session.execute(
        select(Reader, Assignment, Case)
        .join(Assignment, Assignment.reader_id == Reader.id)
        .join(Case, Case.id == Assignment.case_id)
        .where(Reader.study_id == study_id, Assignment.completed_at.is_not(None))
        .order_by(Reader.name, Assignment.position)
    ).all()
    answers: dict[tuple[int, int, int], dict[str, object]] = {}
    seconds: dict[tuple[int, int, int], float | None] = {}
    reader_ids = list({r.id for r, _, _ in rows})
    if reader_ids:
        for a in session.scalars(select(Answer).where(Answer.reader_id.in_(reader_ids))):
            key = (a.reader_id, a.case_id, a.repeat)
            value = json.loads(a.value)
            answers.setdefault(key, {})[a.question] = int(value) if isinstance(value, bool) else value
            seconds[key] = a.seconds
    records = []
    for reader, assignment, case in rows:
        key = (reader.id, case.id, assignment.repeat)
        record = {
            "reader_id": reader.name,
            "case_id": case.case_key,
            "is_synthetic": int(case.is_synthetic),
            "repeat": int(assignment.repeat),
            "seconds": None if seconds.get(key) is None else round(float(seconds[key]), 3),
            "model": case.model if case.is_synthetic else None,
            "simulated": int(bool(reader.simulated)),
            "opaque_id": assignment.showing_id,
        }
        record.update(answers.get(key, {}))
        records.append(record)
    extra = [k for k in question_keys if k not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    columns = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + extra
    frame = pd.DataFrame.from_records(records, columns=columns)
    for column in ("called_synthetic", "confidence", "realism", "slice_consistency", "anatomy"):
        try:
            frame[column] = frame[column].astype("Int64")
        except (TypeError, ValueError):  # a custom questions file made this a non-numeric answer
            pass
    return frame


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot run as spreadsheet formulas."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise_text_cell)
    return out


def ratings_csv_text(frame: pd.DataFrame) -> str:
    """ratings.csv text of ``frame`` (formula-neutralised; RFC 4180 CRLF rows, so a CR inside a
    comment is quoted and reads back as part of the cell)."""
    return neutralised(frame).to_csv(index=False, lineterminator="\r\n")


def write_ratings_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (formula-neutralised) to ``path`` atomically (temp name, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(ratings_csv_text(frame).encode("utf-8"))
    return Path(path)
