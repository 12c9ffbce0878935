"""Streamlit's ``/media/...`` files (the admin's ratings.csv download, any st.image) answer only a
browser session that is signed in right now.

Streamlit serves media by URL alone, with no session check, and keeps a file until its session
moves on. Here an ASGI middleware (:class:`MediaGate`, mounted by ``server.py`` through
``st.App``) refuses every media request without a live grant cookie. The app (same process) asks
for a grant when an account is signed in (:func:`grant_for`): the page then loads a one-time
ticket URL that sets the cookie (HttpOnly, SameSite=Strict); signing out, a revoked account or
:data:`GRANT_TTL_S` ends the grant. Why by hand: Streamlit has no authenticated media, and no
library gates it.
"""

from __future__ import annotations

import secrets
import threading
import time
from http.cookies import SimpleCookie

COOKIE = "medsynth_media"
TICKET_ROUTE = "/_medsynth/grant/{ticket}"
GRANT_TTL_S = 12 * 3600.0  # a signed-in page older than this must sign in again for downloads

_lock = threading.Lock()
_grants: dict[str, float] = {}  # cookie value -> issued at (monotonic)
_by_session: dict[str, str] = {}  # Streamlit session id -> cookie value
_tickets: dict[str, str] = {}  # one-time ticket -> cookie value


def grant_for(session_id: str) -> str | None:
    """A fresh one-time ticket URL for ``session_id``'s grant (None when the cookie is set already
    and still valid; the page then needs nothing)."""
    with _lock:
        value = _by_session.get(session_id)
        if value is not None and _valid(value) and value not in _tickets.values():
            return None
        if value is None or not _valid(value):
            value = secrets.token_urlsafe(32)
            _grants[value] = time.monotonic()
            _by_session[session_id] = value
        ticket = secrets.token_urlsafe(24)
        _tickets[ticket] = value
        return TICKET_ROUTE.format(ticket=ticket)


def revoke(session_id: str) -> None:
    """End ``session_id``'s grant (sign-out, revoked account)."""
    with _lock:
        value = _by_session.pop(session_id, None)
        if value is not None:
            _grants.pop(value, None)
            for ticket in [t for t, v in _tickets.items() if v == value]:
                del _tickets[ticket]


def _valid(value: str | None) -> bool:
    issued = _grants.get(value or "")
    return issued is not None and time.monotonic() - issued < GRANT_TTL_S


def _cookie(scope) -> str | None:
    for name, raw in scope.get("headers", []):
        if name == b"cookie":
            jar = SimpleCookie()
            jar.load(raw.decode("latin-1"))
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def _is_media(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return len(parts) >= 2 and parts[-2] == "media"


async def _answer(send, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = b"" if status == 204 else b"sign in first\n"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-store"), *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class MediaGate:
    """ASGI middleware: media only with a live grant cookie; the ticket route sets that cookie."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope.get("path", "")
            prefix, _, ticket = path.rpartition("/")
            if prefix.endswith("/_medsynth/grant"):
                with _lock:
                    value = _tickets.pop(ticket, None)
                if value is None or not _valid(value):
                    await _answer(send, 404)
                    return
                cookie = f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"
                await _answer(send, 204, [(b"set-cookie", cookie.encode("latin-1"))])
                return
            if _is_media(path) and not _valid(_cookie(scope)):
                await _answer(send, 403)
                return
        await self.app(scope, receive, send)
