"""Streamlit pages through streamlit.testing.v1.AppTest: sign-in, reader view, admin view."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from medsynth.data.phantom import make_phantom
from medsynth.study import db as study_db
from medsynth.study.models import Answer, Reader
from medsynth.study.questions import load_questions
from medsynth.study.service import StudyService

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "reader_study" / "app.py")
RENDER = {
    "grid": [16, 18, 20], "png_size": 64, "default_preset": "auto", "auto_percentiles": [1.0, 99.5],
    "rescale_from_unit": None, "presets": {"ct_brain": {"level": 40, "width": 80}},
}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    rng = np.random.default_rng(3)
    files = []
    for i in range(6):
        vol, affine, _ = make_phantom((16, 16, 16), rng)
        files.append(root / f"case_{i}.nii.gz")
        nib.save(nib.Nifti1Image(vol, affine), str(files[-1]))
    url = f"sqlite:///{root / 'study.db'}"
    service = StudyService(url)
    questions = load_questions(ROOT / "conf/study_questions/default.yaml")
    service.create_study("app-study", files[:3], files[3:], questions, RENDER, repeat_fraction=0.0)
    tokens = {
        name: service.add_reader("app-study", name, role)
        for name, role in [("ann", "reader"), ("bob", "reader"), ("boss", "admin")]
    }
    service.create_study(
        "back-study", files[:3], files[3:], questions, RENDER, repeat_fraction=0.0, allow_back=True
    )
    tokens["cat"] = service.add_reader("back-study", "cat", "reader")
    yield url, tokens, service
    study_db.dispose_engines()


def _app(url, monkeypatch) -> AppTest:
    monkeypatch.setenv("MEDSYNTH_STUDY_DB", url)
    return AppTest.from_file(APP, default_timeout=60).run()


def _sign_in(at: AppTest, token: str) -> AppTest:
    at.text_input(key="token").input(token)
    return at.button[0].click().run()


def _submit(at: AppTest) -> AppTest:
    return next(b for b in at.button if b.label.startswith("Submit")).click().run()


def _click(at: AppTest, label: str) -> AppTest:
    return next(b for b in at.button if b.label == label).click().run()


FIRST = {"called_synthetic": True, "confidence": 4, "realism": 2, "slice_consistency": 3, "anatomy": 5}


def _answer(at: AppTest, position: int, values: dict) -> AppTest:
    for key, value in values.items():
        at.radio(key=f"q_{position}_{key}").set_value(value)
    return _submit(at)


def _viewer_data(at: AppTest) -> dict:
    """The header of the message the viewer component received (reader_study/viewer.py)."""
    from medsynth.study.viewer_payload import parse_message

    found = [e.proto for e in at.get("bidi_component") if e.proto.component_name == "medsynth_viewer"]
    assert len(found) == 1
    return parse_message(found[0].bytes)[0]


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_without_database_the_app_says_how_to_start(monkeypatch):
    monkeypatch.delenv("MEDSYNTH_STUDY_DB", raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "medsynth study serve" in at.error[0].value


def test_bad_token_is_refused(study, monkeypatch):
    url, _, _ = study
    at = _sign_in(_app(url, monkeypatch), "nope.nope")
    assert not at.exception and "Unknown, expired or revoked token" in at.error[0].value
    assert "reader_session" not in at.session_state


def test_reader_view_rates_a_case_and_moves_on(study, monkeypatch):
    url, tokens, service = study
    at = _sign_in(_app(url, monkeypatch), tokens["ann"])
    assert not at.exception
    assert "Case 1 of 6" in _markdown(at)
    viewer = _viewer_data(at)
    assert viewer["shape"] == [16, 18, 20] and viewer["showing"] == 0  # grid (X, Y, Z), sent once
    # nothing that names the source reaches the page
    assert "case_" not in _markdown(at).replace("case k", "")
    # an incomplete form is refused and nothing is stored
    at.radio(key="q_0_called_synthetic").set_value(True)
    at = _submit(at)
    assert at.error and "needs an answer" in at.error[0].value
    for key, value in {
        "called_synthetic": True,
        "confidence": 4,
        "realism": 2,
        "slice_consistency": 3,
        "anatomy": 5,
    }.items():
        at.radio(key=f"q_0_{key}").set_value(value)
    at.text_area(key="q_0_comment").input("edges look smooth")
    at = _submit(at)
    assert not at.exception and "Case 2 of 6" in _markdown(at)
    with study_db.read_session(service.factory) as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 6
    assert _viewer_data(at)["showing"] == 1  # the next case's volume


def test_admin_view_shows_progress_and_export(study, monkeypatch):
    url, tokens, _ = study
    at = _sign_in(_app(url, monkeypatch), tokens["boss"])
    assert not at.exception
    assert "Study · app-study" in _markdown(at)
    labels = {m.label: m.value for m in at.metric}
    assert labels["Cases (real / synthetic)"] == "3 / 3" and labels["Readers"] == "2"
    assert len(at.dataframe) == 1 and list(at.dataframe[0].value.reader) == ["ann", "bob"]
    assert not [e for e in at.get("bidi_component") if e.proto.component_name == "medsynth_viewer"]


def test_reader_never_gets_the_admin_page(study, monkeypatch):
    url, tokens, _ = study
    at = _sign_in(_app(url, monkeypatch), tokens["bob"])
    assert not at.metric and "Study ·" not in _markdown(at) and "Case 1 of 6" in _markdown(at)


def test_no_back_button_unless_the_study_allows_it(study, monkeypatch):
    url, tokens, _ = study
    at = _sign_in(_app(url, monkeypatch), tokens["bob"])
    at = _answer(at, 0, FIRST)
    assert not at.exception and "Case 2 of 6" in _markdown(at)
    labels = [b.label for b in at.button]
    assert "Previous case" not in labels and "Back to current case" not in labels


def test_back_shows_stored_answers_and_resubmitting_edits_them(study, monkeypatch):
    url, tokens, service = study
    at = _sign_in(_app(url, monkeypatch), tokens["cat"])
    assert "Previous case" not in [b.label for b in at.button]  # nothing answered yet
    at = _answer(at, 0, FIRST)
    assert "Case 2 of 6" in _markdown(at)
    at = _click(at, "Previous case")
    assert not at.exception and "Case 1 of 6" in _markdown(at)
    assert {k: at.radio(key=f"qb_0_{k}").value for k in FIRST} == FIRST
    # back to the current case and again to the answered one
    at = _click(at, "Back to current case")
    assert "Case 2 of 6" in _markdown(at) and at.radio(key="q_1_realism").value is None
    at = _click(at, "Previous case")
    at.radio(key="qb_0_realism").set_value(5)
    at = next(b for b in at.button if b.label.startswith("Save changes")).click().run()
    assert not at.exception and "Case 2 of 6" in _markdown(at)  # next after the edit is the current one
    with study_db.read_session(service.factory) as s:
        reader = s.scalar(select(Reader).where(Reader.name == "cat"))
        rows = list(
            s.scalars(select(Answer).where(Answer.reader_id == reader.id, Answer.question == "realism"))
        )
    assert [(r.value, r.edits) for r in rows] == [("5", 1)]
