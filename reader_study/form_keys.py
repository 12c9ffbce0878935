"""Keyboard shortcuts for the reader's form (R/S call, 1-5 ratings, Enter submit), listed on the page.

A script-only Streamlit component (``viewer_component/form_keys.js``): it clicks the same widgets a
mouse would, so the server validates and stores exactly what a click sends.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ASSETS = Path(__file__).resolve().parent / "viewer_component"
COMPONENT = st.components.v2.component(
    "medsynth_form_keys", js=(ASSETS / "form_keys.js").read_text(encoding="utf-8")
)


def render(position: int, questions: list[dict], prefix: str, submit_label: str) -> None:
    """Shortcuts for the widgets ``{prefix}_{position}_{question key}`` of one showing."""
    call = next((q for q in questions if q["type"] == "bool"), None)
    spec = {
        "showing": int(position),
        "call": None
        if call is None
        else {
            "key": f"{prefix}_{position}_{call['key']}",
            "real": str(call["labels"]["false"]),
            "synthetic": str(call["labels"]["true"]),
        },
        "ratings": [
            {"key": f"{prefix}_{position}_{q['key']}"}
            for q in questions
            if q["type"] == "likert" and q["max"] - q["min"] < 10
        ],
        "comment": next((f"{prefix}_{position}_{q['key']}" for q in questions if q["type"] == "text"), None),
        "submit": submit_label,
    }
    COMPONENT(key="form_keys", data=spec, height=0)
