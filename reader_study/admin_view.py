"""The admin's page: study status, the blinding audit, per-reader progress, ratings.csv export,
open/close.

Every call goes through the service, which refuses it unless the signed-in account is an admin.
Organiser- and reader-provided strings reach the page as text only (``style.safe_text``, or table
cells, which Streamlit never renders as HTML). The ratings.csv is built only when the admin clicks
Download (a deferred download: the service re-checks the role then), never kept in the page.
"""

from __future__ import annotations

import importlib.util

import pandas as pd
import streamlit as st
import style

from medsynth.study.service import ReaderSession, StudyService


def audit_section(service: StudyService, session: ReaderSession) -> None:
    """The study's last blinding audit (``medsynth study audit``): AUC per group and channel."""
    st.subheader("Blinding audit")
    result = service.study_audit(session)
    if not result:
        st.info("No audit stored yet: run `medsynth study audit db=...`.")
        return
    groups = result["groups"]
    cols = st.columns(len(groups) + 1)
    for column, (group, values) in zip(cols, groups.items(), strict=False):
        column.metric(f"{group} AUC", f"{values['auc']:.2f}", help=f"95% CI {values['ci'][0]:.2f}-{values['ci'][1]:.2f}")
    cols[-1].metric("Verdict", result["verdict"])
    if result["leaks"]:
        st.error("Format/metadata channels tell real from synthetic: " + ", ".join(result["leaks"]))
    if result.get("hint"):
        st.warning(result["hint"])
    table = pd.DataFrame(
        [
            {"channel": name, "group": r["group"], "auc": r["auc"], "ci_low": r["ci"][0], "ci_high": r["ci"][1],
             "p": r.get("p"), "effect_sd": r.get("effect"), "leak": name in result["leaks"]}
            for name, r in result["channels"].items()
        ]
    )  # fmt: skip
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(f"{result['n_cases']} cases, {result['n_showings']} showings; AUC 0.5 = chance.")


def render(service: StudyService, session: ReaderSession) -> None:
    status = service.study_status(session)
    head, who = st.columns([3, 1], vertical_alignment="center")
    head.markdown(f"<p class='case-header'>Study · {style.safe_text(status['study'])}</p>", unsafe_allow_html=True)
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
            readers[["reader", "done", "total", "progress", "last_answer", "simulated", "can_sign_in"]],
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0)
            },
            hide_index=True,
            width="stretch",
        )

    audit_section(service, session)

    st.subheader("Export")
    st.caption(f"ratings.csv: {status['showings_done']} rated showings (one row per reader and showing).")
    st.download_button(
        "Download ratings.csv", data=lambda: service.export_ratings_csv(session), file_name="ratings.csv",
        mime="text/csv", key="export", type="primary", on_click="ignore",
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
