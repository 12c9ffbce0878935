"""The reader's viewer: axial, coronal and sagittal planes of one case, sliced in the browser.

The server sends the case once (``medsynth.study.viewer_payload``: the study's display volume,
lossless and deflated, the same number of bytes for every case of a study, windows in stack units,
no header fields) to a canvas component
(``viewer_component/viewer.js``, Streamlit components v2, no iframe) that does the rest: linked
crosshair, wheel/arrow-key slicing, zoom, pan, drag windowing, presets fitting the study's
modality, orientation labels, physical aspect and one plane full size. Nothing is fetched at run
time: the JS and CSS ship inside the package.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import streamlit as st

from medsynth.study.service import ReaderSession, StudyService

ASSETS = Path(__file__).resolve().parent / "viewer_component"
COMPONENT = st.components.v2.component(
    "medsynth_viewer",
    js=(ASSETS / "viewer.js").read_text(encoding="utf-8"),
    css=(ASSETS / "viewer.css").read_text(encoding="utf-8"),
    isolate_styles=False,
)


def render(service: StudyService, session: ReaderSession, position: int) -> None:
    """Mount the viewer on a reachable showing, then make sure the next showing's coded stream is
    stored on the server (in the background: only a study made before streams existed lacks it)."""
    COMPONENT(key=f"viewer_{position}", data=service.viewer_payload(session, position))
    started = f"prefetched_{position}"
    if not st.session_state.get(started):
        st.session_state[started] = True
        threading.Thread(target=_prefetch, args=(service, session), daemon=True).start()


def _prefetch(service: StudyService, session: ReaderSession) -> None:
    try:
        service.prefetch_next(session)
    except Exception:  # best effort: the next case loads (and reports errors) when it is shown
        logging.getLogger(__name__).debug("prefetch failed", exc_info=True)
