"""The reader's page: "case k of n", the tri-planar viewer and the question form.

Every answer is kept as a server-side draft as soon as it is given; submitting stores the answers
(one transaction) and moves on; a reload or a new sign-in resumes at the first unanswered case with
its draft filled in. The ground truth is never fetched here. When the study allows
going back (``allow_back``), "Previous case" shows an answered case with the stored answers filled in;
re-submitting edits them through ``StudyService.submit`` (which counts the edit).
"""

from __future__ import annotations

import time

import form_keys
import streamlit as st
import style
import viewer

from medsynth.study.questions import AnswerError
from medsynth.study.service import PermissionDenied, ReaderSession, StudyService

BACK_KEY = "back_position"  # session-state key: the answered position being revisited, if any
SHORTCUTS = (
    "Form keys: **R** real · **S** synthetic · **1–5** rate the highlighted question · **[ ]** move the "
    "highlight · **N** comment · **Enter** submit (**Ctrl+Enter** from the comment)"
)


def _index(options: list, stored):
    """Index of the stored answer among the options (None when unanswered), for pre-filling."""
    return options.index(stored) if stored is not None and stored in options else None


def question_widget(q: dict, key: str, stored=None, on_change=None):
    """One input per question type, pre-filled with ``stored``; returns the value (None when unanswered)."""
    label = q["text"]
    if q["type"] == "bool":
        options = [False, True]
        labels = q["labels"]
        return st.radio(label, options, index=_index(options, stored), horizontal=True, key=key,
                        format_func=lambda v: labels["true" if v else "false"], on_change=on_change)  # fmt: skip
    if q["type"] == "likert":
        anchors = q.get("anchors", {})
        options = list(range(q["min"], q["max"] + 1))
        value = st.radio(label, options, index=_index(options, stored), horizontal=True, key=key,
                         on_change=on_change)  # fmt: skip
        if anchors:
            st.caption(" · ".join(f"{k} {v}" for k, v in sorted(anchors.items(), key=lambda kv: int(kv[0]))))
        return value
    if q["type"] == "choice":
        return st.radio(label, q["options"], index=_index(q["options"], stored), key=key, on_change=on_change)
    text = stored if isinstance(stored, str) else ""
    return (
        st.text_area(label, value=text, max_chars=q["max_length"], key=key, height=68, on_change=on_change)
        or None
    )


def _go_to(position: int | None) -> None:
    """Revisit an answered ``position`` (None: back to the current case) on the next run."""
    if position is None:
        st.session_state.pop(BACK_KEY, None)
    else:
        st.session_state[BACK_KEY] = position


def back_controls(container, viewed: int, current: int | None, total: int) -> None:
    """'Previous case' (from the first answered one on) and, while revisiting, 'Back to current case'."""
    left, right = container.columns(2)
    if viewed > 0:
        left.button("Previous case", key=f"prev_{viewed}", on_click=_go_to, args=(viewed - 1,))
    if viewed != (total if current is None else current):
        label = "Back to current case" if current is not None else "Back to the end"
        right.button(label, key=f"current_{viewed}", on_click=_go_to, args=(None,))


def submit_label(revisit: bool) -> str:
    return "Save changes and next case" if revisit else "Submit and next case"


def _widget_keys(position: int, questions: list[dict], revisit: bool) -> dict[str, str]:
    prefix = "qb" if revisit else "q"  # fresh widgets for a revisit, so stored values show
    return {q["key"]: f"{prefix}_{position}_{q['key']}" for q in questions}


def _given(keys: dict[str, str]) -> dict:
    """The answers given so far (session state of the question widgets), unanswered ones left out."""
    values = {k: st.session_state.get(widget) for k, widget in keys.items()}
    return {k: v for k, v in values.items() if v is not None and v != ""}


def answer_form(
    service: StudyService, session: ReaderSession, position: int, questions: list[dict], stored: dict,
    revisit: bool,
) -> None:
    """The questions of one showing. Each change is kept as a server-side draft (a reload or a lost
    connection loses nothing). Run as a fragment: answering reruns only the form, never the viewer."""
    keys = _widget_keys(position, questions, revisit)

    def keep_draft() -> None:
        try:
            service.save_draft(session, position, _given(keys))
        except (AnswerError, PermissionDenied) as err:
            st.session_state[f"draft_error_{position}"] = str(err)

    for q in questions:
        question_widget(q, keys[q["key"]], stored.get(q["key"]), on_change=None if revisit else keep_draft)
    if error := st.session_state.pop(f"draft_error_{position}", None):
        st.caption(f"Draft not saved: {error}")


def submit_answers(
    service: StudyService, session: ReaderSession, position: int, questions: list[dict], revisit: bool,
    current_position: int,
) -> None:
    """Submit's callback: store every answer of the showing in one transaction. It runs before the
    page's next script run, so that one run already shows the next case."""
    seconds = time.monotonic() - st.session_state.get(f"t0_{position}", time.monotonic())
    try:
        service.submit(session, position, _given(_widget_keys(position, questions, revisit)), seconds)
    except (AnswerError, PermissionDenied) as err:
        st.session_state[f"submit_error_{position}"] = str(err)
        return
    if revisit:
        following = position + 1
        _go_to(following if following < current_position else None)


def render(service: StudyService, session: ReaderSession) -> None:
    info = service.study_info(session)
    current = service.current_case(session)
    progress = service.progress(session)
    allow_back = bool(info["allow_back"])
    back = st.session_state.get(BACK_KEY) if allow_back else None
    current_position = progress.total if current is None else current.position
    if back is not None and not 0 <= back < current_position:
        back = None  # stale (e.g. progress changed elsewhere): show the current case
        _go_to(None)
    case = current if back is None else service.case_at(session, back)
    if case is None:
        style.account_bar(st, session.name, session.role)
        st.markdown(f"<p class='case-header'>All {progress.total} cases done</p>", unsafe_allow_html=True)
        st.success("Thank you: every answer is saved. You can close this tab.")
        if allow_back and progress.total:
            back_controls(st, progress.total, None, progress.total)
        return
    st.session_state.setdefault(f"t0_{case.position}", time.monotonic())
    head, bar, who = st.columns([1.3, 2, 0.9], vertical_alignment="center")
    head.markdown(
        f"<p class='case-header'>Case {case.number} of {case.total}"
        f" <span class='case-sub'>· {style.safe_text(info['name'])} · case {style.safe_text(case.opaque_id)}</span></p>",
        unsafe_allow_html=True,
    )
    bar.progress(progress.done / max(progress.total, 1), text=f"{progress.done} of {progress.total} answered")
    style.account_bar(who, session.name, session.role)
    if info["status"] != "open":
        st.warning("The study is closed: answers are not accepted.")
    if allow_back:
        back_controls(head, case.position, None if current is None else current.position, case.total)
    questions = service.questions(session)
    revisit = back is not None
    stored = service.case_answers(session, case.position) if revisit else service.draft(session, case.position)
    images, form_column = st.columns([3.1, 1.4], gap="medium")
    with images:
        viewer.render(service, session, case.position)
        st.caption(SHORTCUTS)
    with form_column, st.container(key="answer_form", border=True):
        st.fragment(answer_form)(service, session, case.position, questions, stored, revisit)
        st.button(
            submit_label(revisit), type="primary", width="stretch", key=f"submit_{case.position}",
            on_click=submit_answers, args=(service, session, case.position, questions, revisit, current_position),
        )  # fmt: skip
        if error := st.session_state.pop(f"submit_error_{case.position}", None):
            st.error(error)
    form_keys.render(case.position, questions, "qb" if revisit else "q", submit_label(revisit))
