"""What every study operation shares: the signed-in :class:`ReaderSession`, the errors, and
:class:`StudyStore` (the engine plus the lookups that check who may do what).

The role modules (:mod:`~medsynth.study.signin`, :mod:`~medsynth.study.reading`,
:mod:`~medsynth.study.administration`) build on :class:`StudyStore`; :mod:`~medsynth.study.service`
joins them into the one :class:`~medsynth.study.service.StudyService` the app and the CLI call.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from medsynth.errors import ConfigError, MedsynthError
from medsynth.study.db import get_engine, session_factory
from medsynth.study.models import Assignment, Reader, Study, utcnow


class AuthError(MedsynthError):
    """Unknown, malformed, expired, revoked or deactivated login token (or session)."""


class SignInThrottled(AuthError):
    """Too many failed sign-ins from this address or browser session: wait ``retry_after`` s."""

    def __init__(self, retry_after: float):
        self.retry_after = float(retry_after)
        super().__init__(f"too many failed sign-ins: try again in {int(retry_after + 0.999)} s")


class PermissionDenied(MedsynthError):
    """The signed-in reader may not do this (another reader's data, admin pages, a case ahead)."""


@dataclass(frozen=True)
class ReaderSession:
    """Who is signed in. Handed out by ``StudyService.login`` only."""

    reader_id: int
    study_id: int
    name: str
    role: str


def reader_usable(reader: Reader | None) -> bool:
    """Active, not revoked and not expired."""
    if reader is None or not reader.active or reader.revoked_at is not None:
        return False
    expires = reader.expires_at
    if expires is not None:
        if expires.tzinfo is None:  # SQLite drops the zone; stored values are UTC
            from datetime import UTC

            expires = expires.replace(tzinfo=UTC)
        if expires <= utcnow():
            return False
    return True


class StudyStore:
    """One study database (SQLite file or PostgreSQL URL) and the checks shared by every role."""

    def __init__(self, db: str | Engine):
        self.engine = db if isinstance(db, Engine) else get_engine(db)
        self.factory = session_factory(self.engine)

    def _study_by_name(self, s, name: str) -> Study:
        study = s.scalar(select(Study).where(Study.name == name))
        if study is None:
            names = list(s.scalars(select(Study.name)))
            raise ConfigError(
                "study", f"no study named '{name}' in this database (found: {', '.join(names) or 'none'})"
            )
        return study

    def _reader_by_name(self, s, study_name: str, name: str) -> Reader:
        study = self._study_by_name(s, study_name)
        reader = s.scalar(select(Reader).where(Reader.study_id == study.id, Reader.name == name))
        if reader is None:
            raise ConfigError("name", f"no reader named '{name}' in study '{study.name}'")
        return reader

    def _reader(self, s, rs: ReaderSession, role: str | None = None) -> Reader:
        """The session's reader row, re-read: a revoked, expired or deactivated account stops at once."""
        if not isinstance(rs, ReaderSession):
            raise AuthError("not signed in")
        reader = s.get(Reader, rs.reader_id)
        if not reader_usable(reader) or reader.study_id != rs.study_id:
            raise AuthError("unknown, expired or revoked reader")
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

    @staticmethod
    def _current_position(s, reader_id: int) -> int | None:
        return s.scalar(
            select(func.min(Assignment.position)).where(
                Assignment.reader_id == reader_id, Assignment.completed_at.is_(None)
            )
        )
