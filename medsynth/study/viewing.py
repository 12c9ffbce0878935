"""The viewer's side of the reading session: one payload per showing, and the next one warmed.

:meth:`Viewing.viewer_payload` encodes a reachable showing's display volume for the browser viewer
(:mod:`medsynth.study.viewer_payload`), through the same :meth:`Reading.display_volume` as every other
rendering path, so real and synthetic cases take one path, and pads it to the study's message
length: every showing of a study sends the same number of bytes. The study's coding and length are
fixed at ``study create`` (:func:`~medsynth.study.viewer_payload.viewer_settings`); a study created
before they existed gets them at its first viewer request (:meth:`Viewing.settle_viewer`, stored in
``study.render``). :meth:`Viewing.prefetch_next` builds the payload of the showing after the current
one into the server's cache and returns nothing: no case ahead ever reaches the app or the browser,
but Submit finds the next case ready.
"""

from __future__ import annotations

import functools

from sqlalchemy import select

from medsynth.study.db import read_session, write_session
from medsynth.study.models import Assignment, Case, Study
from medsynth.study.session import ReaderSession, StudyStore
from medsynth.study.viewer_payload import (
    cached_payload,
    display_spacing,
    settled,
    study_modality,
    viewer_settings,
)


@functools.lru_cache(maxsize=64)
def _spacing(source_path: str, grid: tuple[int, ...]) -> tuple[float, float, float]:
    return display_spacing(source_path, grid)


class Viewing(StudyStore):
    """Viewer payloads; mixed into :class:`~medsynth.study.service.StudyService` after ``Reading``."""

    def settle_viewer(self, study_id: int, progress: bool = False) -> dict:
        """The study's render settings with its viewer coding and message length fixed (computed
        over all its cases and stored the first time, for studies created before they existed)."""
        with read_session(self.factory) as s:
            study = s.get(Study, study_id)
            render, modality = dict(study.render), study_modality(study.modality, dict(study.render))
            paths = list(s.scalars(select(Case.source_path).where(Case.study_id == study_id).order_by(Case.id)))
        if settled(render):
            return render
        render["viewer"] = viewer_settings(paths, render, modality, progress)
        with write_session(self.factory) as s:
            s.get(Study, study_id).render = render
        return render

    def viewer_payload(self, rs: ReaderSession, position: int) -> bytes:
        """The viewer's message for a reachable showing (:meth:`ViewerPayload.message`), exactly
        ``render.viewer.message_bytes`` long."""
        volume = self.display_volume(rs, position)  # checks the reader may see this showing
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            study_id = reader.study_id
            modality = s.get(Study, study_id).modality
            source = s.get(Case, self._own_assignment(s, reader.id, position).case_id).source_path
        render = self.settle_viewer(study_id)
        spacing = _spacing(source, tuple(int(g) for g in render["grid"]))
        payload = cached_payload(volume, spacing, render, study_modality(modality, render))
        return payload.message(position, render["viewer"]["message_bytes"])

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
            study_id, modality = reader.study_id, s.get(Study, reader.study_id).modality
            source = s.get(Case, following.case_id).source_path
        render = self.settle_viewer(study_id)
        rescale = render.get("rescale_from_unit")
        grid = tuple(int(g) for g in render["grid"])
        volume = _cached_volume(source, grid, tuple(rescale) if rescale else None)
        cached_payload(volume, _spacing(source, grid), render, study_modality(modality, render))
