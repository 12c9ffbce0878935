"""The one object the Streamlit app and the CLI call: :class:`StudyService`.

It joins the role modules, each small enough to read at once; every permission is checked there:

==================================  ================================================================
:mod:`medsynth.study.signin`        accounts and sign-in: add-reader, login with backoff, revoke, rotate
:mod:`medsynth.study.reading`       the reading session: current case, drafts, display volume, submit
:mod:`medsynth.study.viewing`       the browser viewer's payload per showing; the next one warmed
:mod:`medsynth.study.administration` create a study; the admin page's status, progress and controls
:mod:`medsynth.study.export`        ratings.csv for the admin (formula-neutralised)
:mod:`medsynth.study.session`       the signed-in ReaderSession, errors and shared lookups
==================================  ================================================================

Organiser operations (``create_study``, ``add_reader``, ``revoke_reader``, ``rotate_token``) are for
whoever holds the database URL (the CLI). Everything else takes a :class:`ReaderSession` that only
``login`` hands out; the reader row is re-read on every call, so a revoked, expired or deactivated
reader or a changed role takes effect at once.
"""

from __future__ import annotations

from medsynth.study.administration import Administration, case_key
from medsynth.study.export import Export
from medsynth.study.reading import CaseView, Progress, Reading, SubmitResult
from medsynth.study.session import AuthError, PermissionDenied, ReaderSession, SignInThrottled
from medsynth.study.signin import ROLES, SignIn, SignInPolicy
from medsynth.study.viewing import Viewing

__all__ = [
    "ROLES", "AuthError", "CaseView", "PermissionDenied", "Progress", "ReaderSession", "SignInPolicy",
    "SignInThrottled", "StudyService", "SubmitResult", "case_key",
]  # fmt: skip


class StudyService(SignIn, Reading, Viewing, Administration, Export):
    """Study operations on one database (SQLite file or PostgreSQL URL)."""

    def __init__(self, db, sign_in_policy: SignInPolicy | None = None):
        super().__init__(db)
        if sign_in_policy is not None:
            self.sign_in_policy = sign_in_policy
