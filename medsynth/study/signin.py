"""Accounts and sign-in: add a reader, sign in with a token (with backoff), revoke, rotate.

Sign-in does the same work for every token (a scrypt hash, with a dummy salt when the key id is
unknown or the token malformed), so timing tells nothing about which key ids exist. Every failure
is stored (:class:`~medsynth.study.models.SignInFailure`: time, address, browser session, key id)
and logged; after ``free_failures`` failures within ``window_s`` from one address or one browser
session, each further try must wait ``base_delay_s * 2**(n - free_failures)`` seconds (at most
``max_delay_s``) after the last failure, whatever the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select

from medsynth.errors import ConfigError
from medsynth.study import accounts
from medsynth.study.assignment import order_seed, reading_order
from medsynth.study.db import read_session, write_session
from medsynth.study.models import Assignment, Case, Reader, SignInFailure, Study, utcnow
from medsynth.study.session import AuthError, ReaderSession, SignInThrottled, StudyStore, reader_usable

ROLES = ("reader", "admin")
SHOWING_ID_BYTES = 8
_LOG = logging.getLogger("medsynth.study.signin")
_DUMMY_SALT = b"\0" * accounts.SALT_BYTES


@dataclass(frozen=True)
class SignInPolicy:
    """Backoff after failed sign-ins (numbers from conf/study.yaml ``sign_in``)."""

    free_failures: int = 3
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0
    window_s: float = 900.0

    def wait(self, failures: int) -> float:
        """Seconds a client with ``failures`` recent failures waits after its last one."""
        if failures < self.free_failures:
            return 0.0
        return min(self.base_delay_s * 2.0 ** (failures - self.free_failures), self.max_delay_s)


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def new_showing_id() -> str:
    """A random opaque id for one showing (all a reader learns about the case on screen)."""
    import secrets

    return secrets.token_hex(SHOWING_ID_BYTES)


class SignIn(StudyStore):
    """Organiser account commands (CLI) and the token sign-in (app)."""

    sign_in_policy: SignInPolicy = SignInPolicy()

    def add_reader(
        self,
        study_name: str,
        name: str,
        role: str = "reader",
        min_repeat_gap: int = 3,
        expires_days: float | None = None,
        simulated: bool = False,
    ) -> str:
        """Add a reader (with their secret-seeded reading order) or an admin; returns the one-time token.

        Raises:
            ConfigError: unknown study or role, the name is taken, or a non-positive expiry.
        """
        if role not in ROLES:
            raise ConfigError("role", f"must be one of {', '.join(ROLES)}, got '{role}'")
        if not name or not name.strip():
            raise ConfigError("name", "must be a non-empty reader name")
        expires_at = _expiry(expires_days)
        issued = accounts.issue_token()
        with write_session(self.factory) as s:
            study = self._study_by_name(s, study_name)
            if s.scalar(select(Reader).where(Reader.study_id == study.id, Reader.name == name)) is not None:
                raise ConfigError("name", f"reader '{name}' exists already in study '{study.name}'")
            reader = Reader(
                study_id=study.id, name=name, role=role, key_id=issued.key_id, token_salt=issued.salt,
                token_hash=issued.digest, expires_at=expires_at, simulated=bool(simulated),
            )  # fmt: skip
            s.add(reader)
            s.flush()
            if role == "reader":
                self._assign(s, study, reader, min_repeat_gap)
        return issued.token

    @staticmethod
    def _assign(s, study: Study, reader: Reader, min_repeat_gap: int) -> None:
        """Store the reader's order: seeded by the study secret and their name; one random id per showing."""
        cases = list(s.scalars(select(Case).where(Case.study_id == study.id).order_by(Case.id)))
        order = reading_order(
            len(cases), study.repeat_fraction, order_seed(study.secret, reader.name), min_gap=min_repeat_gap
        )
        for showing in order:
            s.add(
                Assignment(
                    reader_id=reader.id, case_id=cases[showing.case_index].id, position=showing.position,
                    repeat=showing.repeat, showing_id=new_showing_id(),
                )
            )  # fmt: skip

    def revoke_reader(self, study_name: str, name: str) -> None:
        """Revoke a reader's token at once (their answers stay; open sessions stop on the next call).

        Raises:
            ConfigError: unknown study or reader.
        """
        with write_session(self.factory) as s:
            reader = self._reader_by_name(s, study_name, name)
            reader.revoked_at = reader.revoked_at or utcnow()
        _LOG.warning("reader '%s' of study '%s' revoked", name, study_name)

    def rotate_token(self, study_name: str, name: str, expires_days: float | None = None) -> str:
        """Issue a new token (the old one stops working; a revoked reader is reinstated).

        Raises:
            ConfigError: unknown study or reader, or a non-positive expiry.
        """
        expires_at = _expiry(expires_days)
        issued = accounts.issue_token()
        with write_session(self.factory) as s:
            reader = self._reader_by_name(s, study_name, name)
            reader.key_id, reader.token_salt, reader.token_hash = issued.key_id, issued.salt, issued.digest
            reader.revoked_at, reader.expires_at = None, expires_at
        return issued.token

    def login(self, token: str, address: str | None = None, client: str | None = None) -> ReaderSession:
        """Check a token; returns the session for its reader.

        ``address`` (the client's IP) and ``client`` (the browser session) key the backoff.

        Raises:
            SignInThrottled: too many recent failures from this address or session (token not checked).
            AuthError: malformed, unknown, expired, revoked or deactivated token (one message for all).
        """
        address = (address or "")[:100] or None
        client = (client or "")[:100] or None
        self._check_backoff(address, client)
        parts = accounts.split_token(token)
        key_id, secret = parts if parts is not None else (None, "x")
        with read_session(self.factory) as s:
            reader = s.scalar(select(Reader).where(Reader.key_id == key_id)) if key_id else None
            salt, digest = (reader.token_salt, reader.token_hash) if reader is not None else (_DUMMY_SALT, b"")
            matches = accounts.verify_secret(secret, salt, digest)  # same scrypt work in every case
            if reader is not None and matches and reader_usable(reader):
                return ReaderSession(reader.id, reader.study_id, reader.name, reader.role)
        self._record_failure(address, client, key_id)
        raise AuthError("unknown, expired or revoked login token")

    def _check_backoff(self, address: str | None, client: str | None) -> None:
        policy = self.sign_in_policy
        keys = [c for c in (SignInFailure.address == address if address else None,
                            SignInFailure.client == client if client else None) if c is not None]  # fmt: skip
        if not keys:
            return
        since = utcnow() - timedelta(seconds=policy.window_s)
        with read_session(self.factory) as s:
            worst = 0.0
            for key in keys:
                n, last = s.execute(
                    select(func.count(), func.max(SignInFailure.at)).where(key, SignInFailure.at >= since)
                ).one()
                if n and last is not None:
                    left = policy.wait(int(n)) - (utcnow() - _aware(last)).total_seconds()
                    worst = max(worst, left)
        if worst > 0:
            raise SignInThrottled(worst)

    def _record_failure(self, address: str | None, client: str | None, key_id: str | None) -> None:
        with write_session(self.factory) as s:
            s.add(SignInFailure(address=address, client=client, key_id=(key_id or "")[:32] or None))
        _LOG.warning("failed sign-in from address=%s session=%s key_id=%s", address, client, key_id)

    def sign_in_failures(self, since: datetime | None = None) -> int:
        """Number of failed sign-ins stored (since ``since``): the failure log's size."""
        with read_session(self.factory) as s:
            query = select(func.count()).select_from(SignInFailure)
            if since is not None:
                query = query.where(or_(SignInFailure.at >= since))
            return int(s.scalar(query))


def _expiry(expires_days: float | None) -> datetime | None:
    if expires_days is None:
        return None
    if not float(expires_days) > 0:
        raise ConfigError("expires_days", f"must be a positive number of days, got {expires_days}")
    return utcnow() + timedelta(days=float(expires_days))
