"""The reader's viewer: axial, coronal and sagittal planes of one case, sliced in the browser.

The server sends the case once (``medsynth.study.viewer_payload``: the study's display volume,
lossless, windows in stack units, no header fields) to a canvas component
(``viewer_component/viewer.js``, Streamlit components v2, no iframe) that does the rest: linked
crosshair, wheel/arrow-key slicing, zoom, pan, drag windowing, presets fitting the study's
modality, orientation labels, physical aspect and one plane full size. Nothing is fetched at run
time: the JS and CSS ship inside the package.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from medsynth.study.service import ReaderSession, StudyService
from medsynth.study.viewer_payload import MODALITIES, payload_data

ASSETS = Path(__file__).resolve().parent / "viewer_component"
COMPONENT = st.components.v2.component(
    "medsynth_viewer",
    js=(ASSETS / "viewer.js").read_text(encoding="utf-8"),
    css=(ASSETS / "viewer.css").read_text(encoding="utf-8"),
    isolate_styles=False,
)


def study_modality(info: dict) -> str:
    """The study's modality setting; studies created before it existed: CT when intensities are
    mapped back to physical units (``render.rescale_from_unit``), else MR."""
    modality = info.get("modality")
    if modality in MODALITIES:
        return modality
    return "ct" if info["render"].get("rescale_from_unit") else "mr"


def render(service: StudyService, session: ReaderSession, position: int, info: dict) -> None:
    volume = service.display_volume(session, position)
    spacing = service.display_spacing(session, position)
    data = payload_data(volume, spacing, info["render"], study_modality(info))
    data["showing"] = int(position)
    COMPONENT(key=f"viewer_{position}", data=data)
