"""Reading-room look: dark, quiet chrome, black image wells (the theme itself comes from serve).

Sized so that the whole reader view, Submit included, fits a 1280x720 window without scrolling.
Text and controls keep WCAG AA contrast on the dark background (checked in tests/test_study_viewer.py).
"""

import html

import streamlit as st

CSS = """
<style>
#MainMenu, [data-testid="stToolbar"], [data-testid="stDecoration"], footer {visibility: hidden;}
header[data-testid="stHeader"], [data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] {display: none;}
.block-container {padding-top: 0.8rem; padding-bottom: 0.5rem; max-width: 100%;}
[data-testid="stImage"] img {background: #000; border: 1px solid #2a313b; border-radius: 2px;}
.plane-label {font: 600 0.78rem/1.2 ui-monospace, monospace; letter-spacing: .08em; color: #aab6c4;
              text-transform: uppercase; margin-bottom: .2rem;}
.case-header {font: 600 1.25rem/1.3 system-ui, sans-serif; color: #e6edf3; margin: 0;}
.case-sub {color: #aab6c4; font-size: .85rem; font-weight: 400;}
.st-key-answer_form [data-testid="stVerticalBlock"] {gap: 0.3rem;}
.st-key-answer_form {padding: 0.6rem 0.8rem !important;}
.st-key-answer_form [data-testid="stWidgetLabel"] p {font-size: 0.88rem; margin-bottom: 0;}
.st-key-answer_form [data-testid="stCaptionContainer"] {margin-top: -0.45rem; font-size: 0.78rem;}
.st-key-answer_form [data-testid="stRadio"] [role="radiogroup"] {gap: 0 0.2rem; min-height: 0;}
.st-key-answer_form textarea {min-height: 2.6rem;}
.msk-active {outline: 2px solid #7cc0ff; outline-offset: 3px; border-radius: 4px;}
.st-key-form_keys {display: none;}
</style>
"""


def apply() -> None:
    st.markdown(CSS, unsafe_allow_html=True)


_MARKDOWN_SPECIALS = "\\\\`*_[]()!|~<>$:"  # inline Markdown, LaTeX ($) and emoji/icon (:) syntax


def safe_text(value: object) -> str:
    """``value`` as inert text inside ``st.markdown(..., unsafe_allow_html=True)``: HTML-escaped, and
    Markdown syntax characters written as numeric entities (no link, image or formatting)."""
    return "".join(f"&#{ord(c)};" if c in _MARKDOWN_SPECIALS else html.escape(c, quote=True) for c in str(value))


def account_bar(container, name: str, role: str) -> None:
    """Who is signed in, and a sign-out button that forgets the session (answers are already saved)."""
    container.markdown(  # organiser-chosen names are text, never markup
        f"<span class='case-sub'>Signed in as <b>{safe_text(name)}</b> · {safe_text(role)}</span>",
        unsafe_allow_html=True,
    )
    if container.button("Sign out", key="sign_out"):
        st.session_state.clear()
        st.rerun()
