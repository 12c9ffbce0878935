"""The operations the Streamlit app and the CLI call; every permission is checked here.

Organiser operations (:meth:`StudyService.create_study`, :meth:`StudyService.add_reader`) are for
whoever holds the database URL (the CLI). Everything else takes a :class:`ReaderSession` that only
:meth:`StudyService.login` hands out; the reader row is re-read on every call, so a deactivated
reader or a changed role takes effect at once. A reader reaches only their own assignment (by
position, never by case id) and never a case ahead of the current one; admin operations check
the role server-side.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from medsynth.errors import ConfigError, MedsynthError
from medsynth.study import accounts
from medsynth.study.assignment import reader_seed, reading_order
from medsynth.study.db import get_engine, read_session, session_factory, write_session
from medsynth.study.models import Answer, Assignment, Case, Reader, Study, utcnow
from medsynth.study.questions import AnswerError, validate_answers
from medsynth.study.rendering import Window, load_display_volume, render_png, resolve_window

ROLES = ("reader", "admin")
OPAQUE_ID_BYTES = 6


class AuthError(MedsynthError):
    """Unknown, malformed or deactivated login token."""


class PermissionDenied(MedsynthError):
    """The signed-in reader may not do this (another reader's data, admin pages, a case ahead)."""


@dataclass(frozen=True)
class ReaderSession:
    """Who is signed in. Handed out by :meth:`StudyService.login` only."""

    reader_id: int
    study_id: int
    name: str
    role: str


@dataclass(frozen=True)
class CaseView:
    """What the reader view needs about one showing (never the source, truth or repeat flag)."""

    position: int  # 0-based position in the reader's order
    number: int  # 1-based, "case <number> of <total>"
    total: int
    opaque_id: str
    completed: bool


@dataclass(frozen=True)
class SubmitResult:
    """``stored`` is False when this showing was already answered (double submit, reload)."""

    stored: bool
    next_position: int | None


@dataclass(frozen=True)
class Progress:
    done: int
    total: int

    @property
    def finished(self) -> bool:
        return self.done >= self.total


@functools.lru_cache(maxsize=16)
def _cached_volume(
    source_path: str, grid: tuple[int, ...], rescale: tuple[float, float] | None
) -> np.ndarray:
    volume = load_display_volume(source_path, grid, rescale)
    volume.setflags(write=False)
    return volume


class StudyService:
    """Study operations on one database (SQLite file or PostgreSQL URL)."""

    def __init__(self, db: str | Engine):
        self.engine = db if isinstance(db, Engine) else get_engine(db)
        self.factory = session_factory(self.engine)

    # ----------------------------------------------------------------- organiser (CLI)
    def create_study(
        self,
        name: str,
        real_files: Sequence[str | Path],
        synthetic_files: Sequence[str | Path],
        questions: list[dict],
        render: Mapping[str, Any],
        seed: int = 0,
        repeat_fraction: float = 0.1,
        allow_back: bool = False,
        model: str | None = None,
        checkpoint: str | None = None,
        models: Mapping[str, str] | None = None,
    ) -> int:
        """Create a study with these cases (already sampled); returns its id.

        ``models`` optionally maps a synthetic file path to the name of the model that made it.

        Raises:
            ConfigError: a study with this name exists already.
        """
        with write_session(self.factory) as s:
            if s.scalar(select(Study).where(Study.name == name)) is not None:
                raise ConfigError("study", f"a study named '{name}' exists already in this database")
            study = Study(
                name=name,
                seed=int(seed),
                repeat_fraction=float(repeat_fraction),
                allow_back=bool(allow_back),
                questions=list(questions),
                render=dict(render),
            )
            s.add(study)
            s.flush()
            entries = [(Path(p), False) for p in real_files] + [(Path(p), True) for p in synthetic_files]
            used: set[str] = set()
            for path, synthetic in entries:
                opaque = secrets.token_hex(OPAQUE_ID_BYTES)
                while opaque in used:
                    opaque = secrets.token_hex(OPAQUE_ID_BYTES)
                used.add(opaque)
                case_model = (models or {}).get(str(path), model) if synthetic else None
                s.add(
                    Case(
                        study_id=study.id,
                        opaque_id=opaque,
                        source_path=str(path.resolve()),
                        case_key=case_key(path),
                        is_synthetic=synthetic,
                        model=case_model,
                        checkpoint=checkpoint if synthetic else None,
                    )
                )
            return study.id

    def add_reader(self, study_name: str, name: str, role: str = "reader", min_repeat_gap: int = 3) -> str:
        """Add a reader (with their seeded reading order) or an admin; returns the one-time token.

        Raises:
            ConfigError: unknown study or role, or the name is taken.
        """
        if role not in ROLES:
            raise ConfigError("role", f"must be one of {', '.join(ROLES)}, got '{role}'")
        if not name or not name.strip():
            raise ConfigError("name", "must be a non-empty reader name")
        issued = accounts.issue_token()
        with write_session(self.factory) as s:
            study = self._study_by_name(s, study_name)
            if s.scalar(select(Reader).where(Reader.study_id == study.id, Reader.name == name)) is not None:
                raise ConfigError("name", f"reader '{name}' exists already in study '{study.name}'")
            reader = Reader(
                study_id=study.id,
                name=name,
                role=role,
                key_id=issued.key_id,
                token_salt=issued.salt,
                token_hash=issued.digest,
            )
            s.add(reader)
            s.flush()
            if role == "reader":
                cases = list(s.scalars(select(Case).where(Case.study_id == study.id).order_by(Case.id)))
                order = reading_order(
                    len(cases), study.repeat_fraction, reader_seed(study.seed, name), min_gap=min_repeat_gap
                )
                for showing in order:
                    s.add(
                        Assignment(
                            reader_id=reader.id,
                            case_id=cases[showing.case_index].id,
                            position=showing.position,
                            repeat=showing.repeat,
                        )
                    )
        return issued.token

    def study_names(self) -> list[str]:
        with read_session(self.factory) as s:
            return list(s.scalars(select(Study.name).order_by(Study.id)))

    # ----------------------------------------------------------------- sign-in
    def login(self, token: str) -> ReaderSession:
        """Check a token; returns the session for its reader.

        Raises:
            AuthError: malformed, unknown or deactivated token (one message for all, no oracle).
        """
        parts = accounts.split_token(token)
        if parts is not None:
            key_id, secret = parts
            with read_session(self.factory) as s:
                reader = s.scalar(select(Reader).where(Reader.key_id == key_id))
                if (
                    reader is not None
                    and reader.active
                    and accounts.verify_secret(secret, reader.token_salt, reader.token_hash)
                ):
                    return ReaderSession(reader.id, reader.study_id, reader.name, reader.role)
        else:
            accounts.hash_secret("x", b"0" * accounts.SALT_BYTES)  # same work for a malformed token
        raise AuthError("unknown or inactive login token")

    # ----------------------------------------------------------------- reader operations
    def questions(self, rs: ReaderSession) -> list[dict]:
        with read_session(self.factory) as s:
            reader = self._reader(s, rs)
            return list(s.get(Study, reader.study_id).questions)

    def study_info(self, rs: ReaderSession) -> dict:
        """Name, status and the display settings the viewer needs (no case information)."""
        with read_session(self.factory) as s:
            study = s.get(Study, self._reader(s, rs).study_id)
            return {
                "name": study.name,
                "status": study.status,
                "allow_back": study.allow_back,
                "render": dict(study.render),
            }

    def progress(self, rs: ReaderSession) -> Progress:
        with read_session(self.factory) as s:
            reader = self._reader(s, rs)
            return self._progress(s, reader.id)

    def current_case(self, rs: ReaderSession) -> CaseView | None:
        """The first unanswered showing (None when finished); records when it was first shown."""
        with write_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = s.scalar(
                select(Assignment)
                .where(Assignment.reader_id == reader.id, Assignment.completed_at.is_(None))
                .order_by(Assignment.position)
                .limit(1)
            )
            if assignment is None:
                return None
            if assignment.first_shown_at is None:
                assignment.first_shown_at = utcnow()
            return self._view(s, reader.id, assignment)

    def case_at(self, rs: ReaderSession, position: int) -> CaseView:
        """A showing of the reader's own order: the current one, or an earlier one if allow_back."""
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = self._reachable(s, reader, position)
            return self._view(s, reader.id, assignment)

    def case_answers(self, rs: ReaderSession, position: int) -> dict[str, Any]:
        """The reader's stored answers for one of their showings (for editing when allow_back)."""
        import json

        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = self._reachable(s, reader, position)
            rows = s.scalars(
                select(Answer).where(
                    Answer.reader_id == reader.id,
                    Answer.case_id == assignment.case_id,
                    Answer.repeat == assignment.repeat,
                )
            )
            return {a.question: json.loads(a.value) for a in rows}

    def display_volume(self, rs: ReaderSession, position: int) -> np.ndarray:
        """The preprocessed (X, Y, Z) float32 volume of a reachable showing (read-only array)."""
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = self._reachable(s, reader, position)
            study = s.get(Study, reader.study_id)
            source = s.get(Case, assignment.case_id).source_path
            render = dict(study.render)
        rescale = render.get("rescale_from_unit")
        return _cached_volume(
            source, tuple(int(g) for g in render["grid"]), tuple(rescale) if rescale else None
        )

    def display_spacing(self, rs: ReaderSession, position: int) -> tuple[float, float, float]:
        """Voxel size (mm, RAS X, Y, Z) of the study grid for a reachable showing: the viewer's aspect."""
        from medsynth.study.viewer_payload import display_spacing

        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            source = s.get(Case, self._reachable(s, reader, position).case_id).source_path
            grid = [int(g) for g in s.get(Study, reader.study_id).render["grid"]]
        return display_spacing(source, grid)

    def render_slice(
        self,
        rs: ReaderSession,
        position: int,
        plane: str,
        index: int,
        preset: str,
        manual: Window | None = None,
    ) -> bytes:
        """PNG bytes of one plane of a reachable showing, windowed by ``preset``."""
        volume = self.display_volume(rs, position)
        render = self.study_info(rs)["render"]
        window = resolve_window(volume, preset, render, manual)
        return render_png(volume, plane, index, window, int(render["png_size"]))

    def submit(
        self, rs: ReaderSession, position: int, answers: Mapping[str, Any], seconds: float | None = None
    ) -> SubmitResult:
        """Validate and store every answer of one showing in one transaction.

        A second submit of an answered showing stores nothing (``stored=False``) unless the study
        allows going back, in which case it replaces the values and counts an edit.

        Raises:
            AnswerError: unknown question, missing required answer, value out of range.
            PermissionDenied: not this reader's position, a case ahead of the current one, study closed.
        """
        if seconds is not None and (not np.isfinite(seconds) or seconds < 0):
            raise AnswerError(f"seconds must be a non-negative number, got {seconds!r}")
        try:
            with write_session(self.factory) as s:
                reader = self._reader(s, rs, role="reader")
                study = s.get(Study, reader.study_id)
                if study.status != "open":
                    raise PermissionDenied(f"study '{study.name}' is closed")
                cleaned = validate_answers(study.questions, dict(answers))
                assignment = self._own_assignment(s, reader.id, position)
                current = self._current_position(s, reader.id)
                now = utcnow()
                if assignment.completed_at is not None:
                    if not study.allow_back:
                        return SubmitResult(stored=False, next_position=current)
                    self._edit(s, reader.id, assignment, cleaned, seconds, now)
                    return SubmitResult(stored=True, next_position=current)
                if current is not None and position > current:
                    raise PermissionDenied("answer the current case first")
                for key, text in cleaned.items():
                    s.add(self._answer_row(assignment, reader.id, key, text, seconds, now))
                assignment.completed_at = now
                s.flush()
                following = self._current_position(s, reader.id)
            return SubmitResult(stored=True, next_position=following)
        except IntegrityError:
            # a concurrent submit of the same showing won the race: its answers are the stored ones
            with read_session(self.factory) as s:
                return SubmitResult(stored=False, next_position=self._current_position(s, rs.reader_id))

    # ----------------------------------------------------------------- admin operations
    def reader_progress(self, rs: ReaderSession) -> list[dict]:
        """Per reader: name, role, done, total, last answer time (admin only)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            readers = s.scalars(select(Reader).where(Reader.study_id == admin.study_id).order_by(Reader.id))
            out = []
            for reader in readers:
                p = self._progress(s, reader.id)
                last = s.scalar(select(func.max(Answer.submitted_at)).where(Answer.reader_id == reader.id))
                out.append(
                    {
                        "reader": reader.name,
                        "role": reader.role,
                        "done": p.done,
                        "total": p.total,
                        "last_answer": last,
                    }
                )
            return out

    def study_status(self, rs: ReaderSession) -> dict:
        """Counts of cases (real/synthetic), readers, answered showings and answers (admin only)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            study = s.get(Study, admin.study_id)
            n_syn = s.scalar(
                select(func.count()).where(Case.study_id == study.id, Case.is_synthetic.is_(True))
            )
            n_cases = s.scalar(select(func.count()).where(Case.study_id == study.id))
            reader_ids = select(Reader.id).where(Reader.study_id == study.id, Reader.role == "reader")
            n_readers = s.scalar(select(func.count()).select_from(reader_ids.subquery()))
            total = s.scalar(select(func.count()).where(Assignment.reader_id.in_(reader_ids)))
            done = s.scalar(
                select(func.count()).where(
                    Assignment.reader_id.in_(reader_ids), Assignment.completed_at.is_not(None)
                )
            )
            n_answers = s.scalar(select(func.count()).where(Answer.reader_id.in_(reader_ids)))
            return {
                "study": study.name,
                "status": study.status,
                "cases": n_cases,
                "synthetic_cases": n_syn,
                "real_cases": n_cases - n_syn,
                "readers": n_readers,
                "showings_done": done,
                "showings_total": total,
                "answers": n_answers,
                "repeat_fraction": study.repeat_fraction,
            }

    def set_status(self, rs: ReaderSession, status: str) -> None:
        """Open or close the study for answers (admin only)."""
        if status not in ("open", "closed"):
            raise ConfigError("status", "must be open or closed")
        with write_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            s.get(Study, admin.study_id).status = status

    def assignment_of(self, rs: ReaderSession, reader_name: str) -> list[dict]:
        """A reader's full order with truth (admin only: it reveals ground truth)."""
        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            reader = s.scalar(
                select(Reader).where(Reader.study_id == admin.study_id, Reader.name == reader_name)
            )
            if reader is None:
                raise ConfigError("reader", f"no reader named '{reader_name}'")
            rows = s.execute(
                select(Assignment, Case)
                .join(Case, Case.id == Assignment.case_id)
                .where(Assignment.reader_id == reader.id)
                .order_by(Assignment.position)
            )
            return [
                {
                    "position": a.position,
                    "case_id": c.case_key,
                    "opaque_id": c.opaque_id,
                    "repeat": a.repeat,
                    "is_synthetic": int(c.is_synthetic),
                    "completed": a.completed_at is not None,
                }
                for a, c in rows
            ]

    def export_ratings(self, rs: ReaderSession):
        """ratings.csv as a DataFrame (admin only); see :mod:`medsynth.study.export`."""
        from medsynth.study.export import ratings_frame

        with read_session(self.factory) as s:
            admin = self._reader(s, rs, role="admin")
            return ratings_frame(s, admin.study_id)

    # ----------------------------------------------------------------- internals
    def _study_by_name(self, s, name: str) -> Study:
        study = s.scalar(select(Study).where(Study.name == name))
        if study is None:
            names = list(s.scalars(select(Study.name)))
            raise ConfigError(
                "study", f"no study named '{name}' in this database (found: {', '.join(names) or 'none'})"
            )
        return study

    def _reader(self, s, rs: ReaderSession, role: str | None = None) -> Reader:
        if not isinstance(rs, ReaderSession):
            raise AuthError("not signed in")
        reader = s.get(Reader, rs.reader_id)
        if reader is None or not reader.active or reader.study_id != rs.study_id:
            raise AuthError("unknown or inactive reader")
        if role is not None and reader.role != role:
            raise PermissionDenied(f"this needs the {role} role")
        return reader

    def _own_assignment(self, s, reader_id: int, position: int) -> Assignment:
        assignment = s.scalar(
            select(Assignment).where(Assignment.reader_id == reader_id, Assignment.position == int(position))
        )
        if assignment is None:
            raise PermissionDenied(f"position {position} is not in your reading order")
        return assignment

    def _reachable(self, s, reader: Reader, position: int) -> Assignment:
        assignment = self._own_assignment(s, reader.id, position)
        current = self._current_position(s, reader.id)
        if current is not None and assignment.position > current:
            raise PermissionDenied("cases ahead of the current one are not shown")
        if assignment.position != current and not s.get(Study, reader.study_id).allow_back:
            raise PermissionDenied("this study does not allow going back to answered cases")
        return assignment

    @staticmethod
    def _current_position(s, reader_id: int) -> int | None:
        return s.scalar(
            select(func.min(Assignment.position)).where(
                Assignment.reader_id == reader_id, Assignment.completed_at.is_(None)
            )
        )

    @staticmethod
    def _progress(s, reader_id: int) -> Progress:
        total = s.scalar(select(func.count()).where(Assignment.reader_id == reader_id))
        done = s.scalar(
            select(func.count()).where(
                Assignment.reader_id == reader_id, Assignment.completed_at.is_not(None)
            )
        )
        return Progress(done=int(done), total=int(total))

    def _view(self, s, reader_id: int, assignment: Assignment) -> CaseView:
        total = s.scalar(select(func.count()).where(Assignment.reader_id == reader_id))
        case = s.get(Case, assignment.case_id)
        return CaseView(
            position=assignment.position,
            number=assignment.position + 1,
            total=int(total),
            opaque_id=case.opaque_id,
            completed=assignment.completed_at is not None,
        )

    @staticmethod
    def _answer_row(
        assignment: Assignment, reader_id: int, key: str, text: str, seconds, now: datetime, edits: int = 0
    ) -> Answer:
        """A new answer row for one question of ``assignment``'s showing."""
        return Answer(
            assignment_id=assignment.id,
            reader_id=reader_id,
            case_id=assignment.case_id,
            question=key,
            repeat=assignment.repeat,
            value=text,
            seconds=seconds,
            started_at=assignment.first_shown_at,
            submitted_at=now,
            edits=edits,
        )

    @staticmethod
    def _edit(
        s, reader_id: int, assignment: Assignment, cleaned: dict[str, str], seconds, now: datetime
    ) -> None:
        existing = {
            a.question: a
            for a in s.scalars(
                select(Answer).where(
                    Answer.reader_id == reader_id,
                    Answer.case_id == assignment.case_id,
                    Answer.repeat == assignment.repeat,
                )
            )
        }
        for key, text in cleaned.items():
            row = existing.get(key)
            if row is None:
                s.add(StudyService._answer_row(assignment, reader_id, key, text, seconds, now, edits=1))
            elif row.value != text:
                row.value, row.submitted_at, row.edits = text, now, row.edits + 1


def case_key(path: str | Path) -> str:
    """File name without .nii / .nii.gz (and other volume suffixes): the ratings.csv ``case_id``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
