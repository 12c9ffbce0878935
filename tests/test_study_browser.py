"""The reader study in a real browser: Playwright driving Debian's chromium against `streamlit run`.

A reader signs in, rates 3 cases, reloads, signs in again and resumes at case 4; the admin
exports ratings.csv and gets exactly those 3 rated showings. The viewer itself is tested in
tests/test_study_viewer_browser.py (which also takes the README screenshot).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from medsynth.config import compose_stage
from medsynth.study import db as study_db
from medsynth.study.local_server import LocalStudyServer, chromium_path
from medsynth.study.questions import load_questions
from medsynth.study.service import StudyService
from medsynth.study.testing import free_port
from tests.study_browser import IDLE, sign_in, write_scans

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = chromium_path()
ANSWERS = [  # (question text, option label) per case
    [("Is this scan real or synthetic?", "Synthetic"), ("How confident", "4"), ("How realistic", "2"),
     ("neighbouring slices", "3"), ("anatomy correct", "4")],
    [("Is this scan real or synthetic?", "Real"), ("How confident", "2"), ("How realistic", "5"),
     ("neighbouring slices", "5"), ("anatomy correct", "5")],
    [("Is this scan real or synthetic?", "Synthetic"), ("How confident", "5"), ("How realistic", "1"),
     ("neighbouring slices", "2"), ("anatomy correct", "3")],
]  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("browser")
    files = write_scans(root, 6, (64, 64, 64), seed=7)
    url = f"sqlite:///{root / 'study.db'}"
    cfg = compose_stage(
        "study", [f"db={url}", f"port={free_port()}", "render.grid=[128,128,128]", "render.png_size=384"]
    )
    service = StudyService(url)
    from omegaconf import OmegaConf

    questions = load_questions(ROOT / "conf/study_questions/default.yaml")
    service.create_study(
        "realism-study",
        files[:3],
        files[3:],
        questions,
        OmegaConf.to_container(cfg.render),
        repeat_fraction=0.0,
    )
    tokens = {
        "reader": service.add_reader("realism-study", "ann"),
        "admin": service.add_reader("realism-study", "boss", "admin"),
    }
    with LocalStudyServer(cfg, root) as base:
        yield base, tokens, root
    study_db.dispose_engines()


def _idle(page):
    page.wait_for_selector(IDLE, timeout=30_000)


_sign_in = sign_in


def _wait_text(page, text):
    page.get_by_text(text, exact=False).first.wait_for(timeout=30_000)
    _idle(page)


def _rate(page, answers):
    for question, option in answers:
        group = page.locator("[data-testid='stRadio']").filter(has_text=question)
        group.locator("[data-testid='stRadioOption']").filter(has_text=re.compile(f"^{option}$")).click()
    page.get_by_role("button", name="Submit and next case").click()


def test_reader_rates_reloads_resumes_and_admin_exports(server, browser):
    base, tokens, root = server
    context = browser.new_context(viewport={"width": 1680, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    _sign_in(page, base, tokens["reader"])
    _wait_text(page, "Case 1 of 6")
    page.wait_for_selector(".msv-root[data-ready='true']", timeout=60_000)  # the viewer decoded the case
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stRadio\"]').length === 5")
    html = page.content()
    assert "scan_" not in html and ".nii" not in html  # no file name reaches the browser

    for k, answers in enumerate(ANSWERS, start=1):
        _rate(page, answers)
        _wait_text(page, f"Case {k + 1} of 6")

    page.reload()
    _sign_in(page, base, tokens["reader"])
    _wait_text(page, "Case 4 of 6")
    context.close()

    admin = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True).new_page()
    _sign_in(admin, base, tokens["admin"])
    _wait_text(admin, "Reader progress")
    with admin.expect_download(timeout=30_000) as info:
        admin.get_by_role("button", name="Download ratings.csv").click()
    path = root / "ratings.csv"
    info.value.save_as(path)
    frame = pd.read_csv(path)
    assert len(frame) == 3 and set(frame.reader_id) == {"ann"}
    assert frame.called_synthetic.tolist() == [1, 0, 1]
    assert frame.confidence.tolist() == [4, 2, 5] and frame.realism.tolist() == [2, 5, 1]
    assert frame["repeat"].tolist() == [0, 0, 0] and (frame.seconds > 0).all()
