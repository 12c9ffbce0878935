"""The reading session: what a signed-in reader may see and store.

A reader reaches only their own order, by position, never a case ahead of the current one (nor an
answered one unless the study allows going back). They see a random opaque id per showing, never
the case's source, truth or repeat flag. Drafts keep unsubmitted answers on the server; a submit
stores every answer of one showing in one transaction and deletes the draft.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from medsynth.study.db import read_session, write_session
from medsynth.study.models import Answer, AnswerDraft, Assignment, Case, Reader, Study, utcnow
from medsynth.study.questions import AnswerError, validate_answers
from medsynth.study.rendering import Window, load_display_volume, render_png, resolve_window
from medsynth.study.session import PermissionDenied, ReaderSession, StudyStore

#: largest draft accepted (characters of its JSON): drafts are answers, not storage
MAX_DRAFT_CHARS = 20_000


@dataclass(frozen=True)
class CaseView:
    """What the reader view needs about one showing (never the source, truth or repeat flag)."""

    position: int  # 0-based position in the reader's order
    number: int  # 1-based, "case <number> of <total>"
    total: int
    opaque_id: str  # random, one per showing
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


class Reading(StudyStore):
    """Reader operations; each takes the :class:`ReaderSession` from sign-in."""

    def questions(self, rs: ReaderSession) -> list[dict]:
        with read_session(self.factory) as s:
            reader = self._reader(s, rs)
            return list(s.get(Study, reader.study_id).questions)

    def study_info(self, rs: ReaderSession) -> dict:
        """Name, status, modality and the display settings the viewer needs (no case information)."""
        with read_session(self.factory) as s:
            study = s.get(Study, self._reader(s, rs).study_id)
            return {
                "name": study.name,
                "status": study.status,
                "allow_back": study.allow_back,
                "modality": study.modality,
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
            return self._view(s, reader.id, self._reachable(s, reader, position))

    def case_answers(self, rs: ReaderSession, position: int) -> dict[str, Any]:
        """The reader's stored answers for one of their showings (for editing when allow_back)."""
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = self._reachable(s, reader, position)
            return {a.question: json.loads(a.value) for a in self._answers_of(s, reader.id, assignment)}

    def save_draft(self, rs: ReaderSession, position: int, answers: Mapping[str, Any]) -> None:
        """Keep the reader's unsubmitted answers for a reachable, unanswered showing (replaces any draft).

        Only keys of the study's questions with JSON scalar values are kept; nothing is validated
        further until submit.

        Raises:
            AnswerError: not a mapping of question keys to scalars, or too large.
            PermissionDenied: not reachable, already answered, or the study is closed.
        """
        with write_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            study = s.get(Study, reader.study_id)
            if study.status != "open":
                raise PermissionDenied(f"study '{study.name}' is closed")
            assignment = self._reachable(s, reader, position)
            if assignment.completed_at is not None:
                raise PermissionDenied("this case is answered already")
            keys = {q["key"] for q in study.questions}
            cleaned = {}
            for key, value in dict(answers).items():
                if key not in keys:
                    raise AnswerError(f"unknown question '{key}'")
                if value is not None and not isinstance(value, (bool, int, float, str)):
                    raise AnswerError(f"draft answer to '{key}' must be a bool, number or text")
                cleaned[key] = value
            if len(json.dumps(cleaned)) > MAX_DRAFT_CHARS:
                raise AnswerError(f"draft is larger than {MAX_DRAFT_CHARS} characters")
            draft = s.scalar(select(AnswerDraft).where(AnswerDraft.assignment_id == assignment.id))
            if draft is None:
                s.add(AnswerDraft(assignment_id=assignment.id, answers=cleaned, saved_at=utcnow()))
            else:
                draft.answers, draft.saved_at = cleaned, utcnow()

    def draft(self, rs: ReaderSession, position: int) -> dict[str, Any]:
        """The saved draft of a reachable showing ({} when none)."""
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = self._reachable(s, reader, position)
            draft = s.scalar(select(AnswerDraft).where(AnswerDraft.assignment_id == assignment.id))
            return dict(draft.answers) if draft is not None else {}

    def display_volume(self, rs: ReaderSession, position: int) -> np.ndarray:
        """The preprocessed (X, Y, Z) float32 volume of a reachable showing (read-only array)."""
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            assignment = self._reachable(s, reader, position)
            render = dict(s.get(Study, reader.study_id).render)
            source = s.get(Case, assignment.case_id).source_path
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
        self, rs: ReaderSession, position: int, plane: str, index: int, preset: str,
        manual: Window | None = None,
    ) -> bytes:  # fmt: skip
        """PNG bytes of one plane of a reachable showing, windowed by ``preset``."""
        volume = self.display_volume(rs, position)
        render = self.study_info(rs)["render"]
        window = resolve_window(volume, preset, render, manual)
        return render_png(volume, plane, index, window, int(render["png_size"]))

    def submit(
        self, rs: ReaderSession, position: int, answers: Mapping[str, Any], seconds: float | None = None
    ) -> SubmitResult:
        """Validate and store every answer of one showing in one transaction (and drop its draft).

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
                s.query(AnswerDraft).filter(AnswerDraft.assignment_id == assignment.id).delete()
                s.flush()
                following = self._current_position(s, reader.id)
            return SubmitResult(stored=True, next_position=following)
        except IntegrityError:
            # a concurrent submit of the same showing won the race: its answers are the stored ones
            with read_session(self.factory) as s:
                return SubmitResult(stored=False, next_position=self._current_position(s, rs.reader_id))

    # ----------------------------------------------------------------- internals
    def _reachable(self, s, reader: Reader, position: int) -> Assignment:
        assignment = self._own_assignment(s, reader.id, position)
        current = self._current_position(s, reader.id)
        if current is not None and assignment.position > current:
            raise PermissionDenied("cases ahead of the current one are not shown")
        if assignment.position != current and not s.get(Study, reader.study_id).allow_back:
            raise PermissionDenied("this study does not allow going back to answered cases")
        return assignment

    @staticmethod
    def _progress(s, reader_id: int) -> Progress:
        total = s.scalar(select(func.count()).where(Assignment.reader_id == reader_id))
        done = s.scalar(
            select(func.count()).where(Assignment.reader_id == reader_id, Assignment.completed_at.is_not(None))
        )
        return Progress(done=int(done), total=int(total))

    @staticmethod
    def _view(s, reader_id: int, assignment: Assignment) -> CaseView:
        total = s.scalar(select(func.count()).where(Assignment.reader_id == reader_id))
        return CaseView(
            position=assignment.position,
            number=assignment.position + 1,
            total=int(total),
            opaque_id=assignment.showing_id,
            completed=assignment.completed_at is not None,
        )

    @staticmethod
    def _answers_of(s, reader_id: int, assignment: Assignment):
        return s.scalars(
            select(Answer).where(
                Answer.reader_id == reader_id,
                Answer.case_id == assignment.case_id,
                Answer.repeat == assignment.repeat,
            )
        )

    @staticmethod
    def _answer_row(
        assignment: Assignment, reader_id: int, key: str, text: str, seconds, now: datetime, edits: int = 0
    ) -> Answer:
        """A new answer row for one question of ``assignment``'s showing."""
        return Answer(
            assignment_id=assignment.id, reader_id=reader_id, case_id=assignment.case_id, question=key,
            repeat=assignment.repeat, value=text, seconds=seconds, started_at=assignment.first_shown_at,
            submitted_at=now, edits=edits,
        )  # fmt: skip

    @classmethod
    def _edit(
        cls, s, reader_id: int, assignment: Assignment, cleaned: dict[str, str], seconds, now: datetime
    ) -> None:
        existing = {a.question: a for a in cls._answers_of(s, reader_id, assignment)}
        for key, text in cleaned.items():
            row = existing.get(key)
            if row is None:
                s.add(cls._answer_row(assignment, reader_id, key, text, seconds, now, edits=1))
            elif row.value != text:
                row.value, row.submitted_at, row.edits = text, now, row.edits + 1
