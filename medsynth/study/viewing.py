"""The viewer's side of the reading session: one payload per showing, and the next one warmed.

:meth:`Viewing.viewer_payload` encodes a reachable showing's display volume for the browser viewer
(:mod:`medsynth.study.viewer_payload`), through the same :meth:`Reading.display_volume` as every other
rendering path, so real and synthetic cases take one path. :meth:`Viewing.prefetch_next` builds the
payload of the showing after the current one into the server's cache and returns nothing: no case
ahead ever reaches the app or the browser, but Submit finds the next case ready.
"""

from __future__ import annotations

import functools

from sqlalchemy import select

from medsynth.study.db import read_session
from medsynth.study.models import Assignment, Case, Study
from medsynth.study.session import ReaderSession, StudyStore
from medsynth.study.viewer_payload import cached_payload, display_spacing, study_modality


@functools.lru_cache(maxsize=64)
def _spacing(source_path: str, grid: tuple[int, ...]) -> tuple[float, float, float]:
    return display_spacing(source_path, grid)


class Viewing(StudyStore):
    """Viewer payloads; mixed into :class:`~medsynth.study.service.StudyService` after ``Reading``."""

    def viewer_payload(self, rs: ReaderSession, position: int) -> bytes:
        """The viewer's message for a reachable showing (:meth:`ViewerPayload.message`)."""
        volume = self.display_volume(rs, position)  # checks the reader may see this showing
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            study = s.get(Study, reader.study_id)
            render, modality = dict(study.render), study.modality
            source = s.get(Case, self._own_assignment(s, reader.id, position).case_id).source_path
        spacing = _spacing(source, tuple(int(g) for g in render["grid"]))
        return cached_payload(volume, spacing, render, study_modality(modality, render)).message(position)

    def prefetch_next(self, rs: ReaderSession) -> None:
        """Build the payload of the showing after the current one into the cache (returns nothing)."""
        from medsynth.study.reading import _cached_volume

        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            current = self._current_position(s, reader.id)
            if current is None:
                return
            following = s.scalar(
                select(Assignment)
                .where(
                    Assignment.reader_id == reader.id, Assignment.completed_at.is_(None),
                    Assignment.position > current,
                )
                .order_by(Assignment.position)
                .limit(1)
            )  # fmt: skip
            if following is None:
                return
            study = s.get(Study, reader.study_id)
            render, modality = dict(study.render), study.modality
            source = s.get(Case, following.case_id).source_path
        rescale = render.get("rescale_from_unit")
        grid = tuple(int(g) for g in render["grid"])
        volume = _cached_volume(source, grid, tuple(rescale) if rescale else None)
        cached_payload(volume, _spacing(source, grid), render, study_modality(modality, render))
