"""Sign-in with the token from ``medsynth study add-reader`` (checked by the service)."""

from __future__ import annotations

import streamlit as st

from medsynth.study.service import AuthError, StudyService


def render(service: StudyService, session_key: str) -> None:
    left, middle, right = st.columns([1, 1.2, 1])
    with middle:
        st.markdown("### medsynth reader study")
        st.caption("Blinded realism rating. Sign in with the access token your study organiser gave you.")
        with st.form("login", clear_on_submit=True):
            token = st.text_input("Access token", type="password", key="token")
            submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
        if submitted:
            try:
                st.session_state[session_key] = service.login(token)
            except AuthError:
                st.error("Unknown or inactive token.")
                return
            st.rerun()
