"""Sign-in with the token from ``medsynth study add-reader`` (checked by the service).

The service backs off after failed sign-ins per client address and per browser session, so this
page passes both: ``st.context.ip_address`` (None behind some proxies: then the session alone
counts) and the Streamlit session id.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from medsynth.study.service import AuthError, SignInThrottled, StudyService


def client_keys() -> tuple[str | None, str | None]:
    """(client address, browser session id) of this request, for the sign-in backoff."""
    try:
        address = st.context.ip_address
    except Exception:  # not served over HTTP (AppTest): no address
        address = None
    ctx = get_script_run_ctx()
    client = ctx.session_id if ctx is not None else None
    return (address if isinstance(address, str) else None), (client if isinstance(client, str) else None)


def render(service: StudyService, session_key: str) -> None:
    left, middle, right = st.columns([1, 1.2, 1])
    with middle:
        st.markdown("### medsynth reader study")
        st.caption("Blinded realism rating. Sign in with the access token your study organiser gave you.")
        with st.form("login", clear_on_submit=True):
            token = st.text_input("Access token", type="password", key="token")
            submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
        if submitted:
            address, client = client_keys()
            try:
                st.session_state[session_key] = service.login(token, address=address, client=client)
            except SignInThrottled as err:
                st.error(f"Too many failed sign-ins: try again in {int(err.retry_after + 0.999)} s.")
                return
            except AuthError:
                st.error("Unknown, expired or revoked token.")
                return
            st.rerun()
