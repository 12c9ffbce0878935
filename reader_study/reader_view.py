"""The reader's page: "case k of n", the tri-planar viewer and the question form.

Submitting stores the answers at once (one transaction) and moves on; a reload or a new sign-in
resumes at the first unanswered case. The ground truth is never fetched here.
"""

from __future__ import annotations

import time

import streamlit as st
import style
import viewer

from medsynth.study.questions import AnswerError
from medsynth.study.service import PermissionDenied, ReaderSession, StudyService


def question_widget(q: dict, key: str):
    """One input per question type; returns the Python value (None when unanswered)."""
    label = q["text"]
    if q["type"] == "bool":
        options = [False, True]
        labels = q["labels"]
        return st.radio(label, options, index=None, horizontal=True, key=key,
                        format_func=lambda v: labels["true" if v else "false"])  # fmt: skip
    if q["type"] == "likert":
        anchors = q.get("anchors", {})
        value = st.radio(label, list(range(q["min"], q["max"] + 1)), index=None, horizontal=True, key=key)
        if anchors:
            st.caption(
                " · ".join(f"{k} = {v}" for k, v in sorted(anchors.items(), key=lambda kv: int(kv[0])))
            )
        return value
    if q["type"] == "choice":
        return st.radio(label, q["options"], index=None, key=key)
    return st.text_area(label, max_chars=q["max_length"], key=key, height=68) or None


def render(service: StudyService, session: ReaderSession) -> None:
    info = service.study_info(session)
    case = service.current_case(session)
    progress = service.progress(session)
    if case is None:
        style.account_bar(st, session.name, session.role)
        st.markdown(f"<p class='case-header'>All {progress.total} cases done</p>", unsafe_allow_html=True)
        st.success("Thank you: every answer is saved. You can close this tab.")
        return
    started = st.session_state.setdefault(f"t0_{case.position}", time.monotonic())
    head, bar, who = st.columns([1.3, 2, 0.9], vertical_alignment="center")
    head.markdown(f"<p class='case-header'>Case {case.number} of {case.total}</p>", unsafe_allow_html=True)
    head.markdown(
        f"<span class='case-sub'>{info['name']} · case {case.opaque_id}</span>", unsafe_allow_html=True
    )
    bar.progress(progress.done / max(progress.total, 1), text=f"{progress.done} of {progress.total} answered")
    style.account_bar(who, session.name, session.role)
    if info["status"] != "open":
        st.warning("The study is closed: answers are not accepted.")
    images, form_column = st.columns([3.3, 1.2], gap="medium")
    with images:
        viewer.render(service, session, case.position, info["render"])
    with form_column, st.form(f"questions_{case.position}"):
        answers = {}
        for q in service.questions(session):
            answers[q["key"]] = question_widget(q, f"q_{case.position}_{q['key']}")
        submitted = st.form_submit_button("Submit and next case", type="primary", width="stretch")
    if submitted:
        seconds = time.monotonic() - started
        try:
            service.submit(
                session, case.position, {k: v for k, v in answers.items() if v is not None}, seconds
            )
        except (AnswerError, PermissionDenied) as err:
            form_column.error(str(err))
            return
        st.rerun()
