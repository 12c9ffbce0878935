"""Reading-room look: dark, quiet chrome, black image wells (the theme itself comes from serve)."""

import streamlit as st

CSS = """
<style>
#MainMenu, [data-testid="stToolbar"], [data-testid="stDecoration"], footer {visibility: hidden;}
header[data-testid="stHeader"], [data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] {display: none;}
.block-container {padding-top: 1.4rem; padding-bottom: 1rem; max-width: 100%;}
[data-testid="stImage"] img {background: #000; border: 1px solid #2a313b; border-radius: 2px;}
.plane-label {font: 600 0.78rem/1.2 ui-monospace, monospace; letter-spacing: .08em; color: #8b98a8;
              text-transform: uppercase; margin-bottom: .2rem;}
.case-header {font: 600 1.35rem/1.3 system-ui, sans-serif; color: #e6edf3; margin: 0;}
.case-sub {color: #8b98a8; font-size: .85rem;}
</style>
"""


def apply() -> None:
    st.markdown(CSS, unsafe_allow_html=True)


def account_bar(container, name: str, role: str) -> None:
    """Who is signed in, and a sign-out button that forgets the session (answers are already saved)."""
    container.markdown(
        f"<span class='case-sub'>Signed in as <b>{name}</b> · {role}</span>", unsafe_allow_html=True
    )
    if container.button("Sign out", key="sign_out"):
        st.session_state.clear()
        st.rerun()
