"""The viewer's side of the reading session: every case coded once, one message length per study.

A study's viewer coding and message length are fixed over all its cases
(:func:`~medsynth.study.viewer_payload.viewer_settings`, stored in ``study.render.viewer``) and each
case is coded once, through the same display preprocessing as every other rendering path (so real
and synthetic cases take one path), into a stored :class:`~medsynth.study.models.ViewerStream`
(:meth:`Viewing.settle_viewer`: at ``study create``, or at the first viewer request of a study made
before streams existed). :meth:`Viewing.viewer_payload` then reads a reachable showing's stream and
pads it to the study's length: every showing of a study sends the same number of bytes, and serving
one does no image work, so neither its size nor its time depends on how well the case compresses.
:meth:`Viewing.prefetch_next` makes sure the next showing's stream exists and returns nothing: no case
ahead ever reaches the app or the browser.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from medsynth.study.db import read_session, write_session
from medsynth.study.models import Assignment, Case, Study, ViewerStream
from medsynth.study.session import ReaderSession, StudyStore
from medsynth.study.viewer_payload import (
    ViewerPayload,
    build_payload,
    display_spacing,
    settled,
    study_modality,
    viewer_settings,
)


class Viewing(StudyStore):
    """Viewer payloads; mixed into :class:`~medsynth.study.service.StudyService` after ``Reading``."""

    def settle_viewer(self, study_id: int, progress: bool = False) -> dict:
        """Fix the study's viewer coding and message length (once, stored in ``study.render``) and
        code every case that has no stored stream yet; returns the study's render settings.

        Raises:
            ConfigError: a case does not fit ``render.viewer.message_bytes``.
            InputFileError: a case no longer loads.
        """
        from rich.progress import track

        from medsynth.study.rendering import load_display_volume

        with read_session(self.factory) as s:
            study = s.get(Study, study_id)
            render, modality = dict(study.render), study_modality(study.modality, dict(study.render))
            cases = s.execute(
                select(Case.id, Case.source_path).where(Case.study_id == study_id).order_by(Case.id)
            ).all()
            stored = set(s.scalars(select(ViewerStream.case_id).join(Case).where(Case.study_id == study_id)))
        if not settled(render):
            render["viewer"] = viewer_settings([p for _, p in cases], render, modality, progress)
            with write_session(self.factory) as s:
                s.get(Study, study_id).render = render
        grid = [int(g) for g in render["grid"]]
        missing = [(i, p) for i, p in cases if i not in stored]
        for case_id, path in track(missing, description="coding cases for the viewer", disable=not progress,
                                   transient=True):  # fmt: skip
            volume = load_display_volume(path, grid, render.get("rescale_from_unit"))
            payload = build_payload(volume, display_spacing(path, grid), render, modality)
            payload.message(0, render["viewer"]["message_bytes"])  # raises PayloadTooLarge if it does not fit
            header, deflated, adler = payload.record()
            try:
                with write_session(self.factory) as s:
                    s.add(ViewerStream(case_id=case_id, header=header, deflated=deflated, adler=adler))
            except IntegrityError:  # another server stored the same case meanwhile
                pass
        return render

    def viewer_payload(self, rs: ReaderSession, position: int) -> bytes:
        """The viewer's message for a reachable showing (:meth:`ViewerPayload.message`), exactly
        ``render.viewer.message_bytes`` long."""
        with read_session(self.factory) as s:
            reader = self._reader(s, rs, role="reader")
            case_id = self._reachable(s, reader, position).case_id  # the reader may see this showing
            study_id = reader.study_id
            row = s.get(ViewerStream, case_id)
            record = (row.header, row.deflated, row.adler) if row is not None else None
            render = dict(s.get(Study, study_id).render)
        if record is None or not settled(render):
            render = self.settle_viewer(study_id)
            with read_session(self.factory) as s:
                row = s.get(ViewerStream, case_id)
                record = (row.header, row.deflated, row.adler)
        return ViewerPayload.from_record(*record).message(position, render["viewer"]["message_bytes"])

    def prefetch_next(self, rs: ReaderSession) -> None:
        """Make sure the showing after the current one has its stored stream (returns nothing)."""
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
            if following is None or s.get(ViewerStream, following.case_id) is not None:
                return
            study_id = reader.study_id
        self.settle_viewer(study_id)
