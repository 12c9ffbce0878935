"""Tri-planar viewer: axial, coronal and sagittal side by side, one slice slider per plane,
window presets (auto = MR percentiles, CT presets) and manual width/level. Slices are rendered to
PNG on the server by the service, so the browser never receives the volume or its file."""

from __future__ import annotations

import streamlit as st

from medsynth.study.rendering import PLANES, Window, auto_window, resolve_window
from medsynth.study.service import ReaderSession, StudyService


def window_controls(
    service: StudyService, session: ReaderSession, position: int, render: dict
) -> tuple[str, Window | None]:
    presets = ["auto", *render.get("presets", {}), "manual"]
    default = render.get("default_preset", "auto")
    cols = st.columns([1.4, 1, 1])
    preset = cols[0].selectbox(
        "Window", presets, index=presets.index(default) if default in presets else 0, key="window_preset",
        format_func=lambda p: {"auto": "Auto (MR percentile)", "manual": "Manual W/L"}.get(p, p.replace("_", " ")),
    )  # fmt: skip
    manual = None
    if preset != "manual":
        shown = resolve_window(service.display_volume(session, position), preset, render)
        cols[1].markdown(
            f"<div class='case-sub' style='padding-top:2.1rem'>W {shown.width:.4g} · L {shown.level:.4g}</div>",
            unsafe_allow_html=True,
        )
    if preset == "manual":
        volume = service.display_volume(session, position)
        start = auto_window(volume, render.get("auto_percentiles", (1, 99.5)))
        level = cols[1].number_input(
            "Level", value=round(start.level, 3), key=f"level_{position}", format="%.3f"
        )
        width = cols[2].number_input(
            "Width", value=round(start.width, 3), min_value=1e-3, key=f"width_{position}", format="%.3f"
        )
        manual = Window(level=float(level), width=float(width))
    return preset, manual


def render(service: StudyService, session: ReaderSession, position: int, render: dict) -> None:
    preset, manual = window_controls(service, session, position, render)
    grid = [int(g) for g in render["grid"]]
    sizes = {"sagittal": grid[0], "coronal": grid[1], "axial": grid[2]}
    columns = st.columns(3, gap="small")
    for column, plane in zip(columns, PLANES, strict=True):
        with column:
            st.markdown(f"<div class='plane-label'>{plane}</div>", unsafe_allow_html=True)
            n = sizes[plane]
            key = f"slice_{plane}_{position}"
            index = st.session_state.get(key, n // 2)
            st.image(
                service.render_slice(session, position, plane, index, preset, manual),
                width="stretch",
            )
            st.slider(f"{plane} slice", 0, n - 1, n // 2, key=key, label_visibility="collapsed")
