"""medsynth reader study: the Streamlit entry point (``medsynth study serve``).

Thin on purpose: every decision (who may see what, validation, storage) is made by
``medsynth.study.service``; this file routes between the sign-in, reader and admin views.
The database URL comes from ``MEDSYNTH_STUDY_DB`` or ``-- --db URL`` after the script name.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

import admin_view  # noqa: E402
import login_view  # noqa: E402
import media_gate  # noqa: E402
import reader_view  # noqa: E402
import style  # noqa: E402

from medsynth.study.service import AuthError, SignInPolicy, StudyService  # noqa: E402

SESSION_KEY = "reader_session"


def database_url() -> str | None:
    args = sys.argv[1:]
    if "--db" in args and args.index("--db") + 1 < len(args):
        return args[args.index("--db") + 1]
    return os.environ.get("MEDSYNTH_STUDY_DB")


@st.cache_resource(show_spinner=False)
def get_service(url: str, sign_in: str | None) -> StudyService:
    """One service per database; ``sign_in`` is the backoff policy JSON from ``study serve``."""
    return StudyService(url, SignInPolicy(**json.loads(sign_in)) if sign_in else None)


def main() -> None:
    st.set_page_config(page_title="medsynth reader study", page_icon="🩻", layout="wide")
    style.apply()
    url = database_url()
    if not url:
        st.error("No study database: start the app with `medsynth study serve db=URL`.")
        return
    service = get_service(url, os.environ.get("MEDSYNTH_STUDY_SIGN_IN"))
    session = st.session_state.get(SESSION_KEY)
    browser_session = login_view.client_keys()[1]
    if session is None:
        if browser_session:
            media_gate.revoke(browser_session)  # signed out: downloads stop answering at once
        login_view.render(service, SESSION_KEY)
        return
    try:
        if session.role == "admin":
            media_access(browser_session)
            admin_view.render(service, session)
        else:
            reader_view.render(service, session)
    except AuthError:
        if browser_session:
            media_gate.revoke(browser_session)
        st.session_state.clear()
        st.error("Your access was revoked or your session expired: please sign in again.")


def media_access(browser_session: str | None) -> None:
    """Let this signed-in admin's browser fetch its downloads (media_gate: a one-time ticket sets
    an HttpOnly cookie); readers never need media."""
    if browser_session and (ticket := media_gate.grant_for(browser_session)):
        st.markdown(f"<img src='{ticket.lstrip('/')}' alt='' width='0' height='0' style='display:none'>",
                    unsafe_allow_html=True)  # fmt: skip


main()
