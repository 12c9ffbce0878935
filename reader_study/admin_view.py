"""The admin's page: study status, per-reader progress, ratings.csv export, open/close.

Every call goes through the service, which refuses it unless the signed-in account is an admin.
"""

from __future__ import annotations

import importlib.util

import pandas as pd
import streamlit as st
import style

from medsynth.study.service import ReaderSession, StudyService


def render(service: StudyService, session: ReaderSession) -> None:
    status = service.study_status(session)
    head, who = st.columns([3, 1], vertical_alignment="center")
    head.markdown(f"<p class='case-header'>Study · {status['study']}</p>", unsafe_allow_html=True)
    style.account_bar(who, session.name, session.role)
    cols = st.columns(5)
    cols[0].metric("Status", status["status"])
    cols[1].metric("Cases (real / synthetic)", f"{status['real_cases']} / {status['synthetic_cases']}")
    cols[2].metric("Readers", status["readers"])
    cols[3].metric("Showings answered", f"{status['showings_done']} / {status['showings_total']}")
    cols[4].metric("Answers stored", status["answers"])

    st.subheader("Reader progress")
    progress = pd.DataFrame(service.reader_progress(session))
    readers = progress[progress.role == "reader"] if not progress.empty else progress
    if readers.empty:
        st.info("No readers yet: add some with `medsynth study add-reader`.")
    else:
        readers = readers.assign(progress=readers.done / readers.total.clip(lower=1))
        st.dataframe(
            readers[["reader", "done", "total", "progress", "last_answer"]],
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)
            },
            hide_index=True,
            width="stretch",
        )

    st.subheader("Export")
    ratings = service.export_ratings(session)
    st.caption(f"ratings.csv: {len(ratings)} rated showings (one row per reader and showing).")
    st.download_button(
        "Download ratings.csv", ratings.to_csv(index=False).encode("utf-8"), file_name="ratings.csv",
        mime="text/csv", key="export", type="primary",
    )  # fmt: skip
    st.subheader("Analysis")
    if importlib.util.find_spec("medsynth.analysis.cli") is not None:
        st.code(
            "medsynth analyze ratings=ratings.csv per_image=evaluate_out/per_image.csv out_dir=analysis",
            language="bash",
        )
    else:
        st.caption("The analysis stage is not installed in this version.")

    st.subheader("Study")
    target = "closed" if status["status"] == "open" else "open"
    if st.button(f"{'Close' if target == 'closed' else 'Reopen'} the study", key="toggle_status"):
        service.set_status(session, target)
        st.rerun()
