"""Hardening in a real browser (Playwright + Debian chromium against `streamlit run`): organiser-
and reader-provided strings carrying script payloads render as inert text, and the sign-in page
backs off after failures."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

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
STUDY = '<iframe srcdoc="<script>parent.__pwned=1</script>">'
READER = '<img src=x onerror="window.__pwned=1">'
ADMIN = "<script>window.__pwned=1</script>[x](javascript:window.__pwned=1)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("hardening")
    files = write_scans(root, 4, (16, 16, 16), seed=9)
    url = f"sqlite:///{root / 'study.db'}"
    cfg = compose_stage(
        "study", [f"db={url}", f"port={free_port()}", "render.grid=[16,16,16]", "sign_in.free_failures=2",
                  "sign_in.base_delay_s=60"],
    )  # fmt: skip
    cfg.study = STUDY  # not expressible as a command-line override
    service = StudyService(url)
    questions = load_questions(ROOT / "conf/study_questions/default.yaml")
    service.create_study(STUDY, files[:2], files[2:], questions, OmegaConf.to_container(cfg.render))
    tokens = {"reader": service.add_reader(STUDY, READER), "admin": service.add_reader(STUDY, ADMIN, "admin")}
    with LocalStudyServer(cfg, root) as base:
        yield base, tokens, service
    study_db.dispose_engines()


_sign_in = sign_in


def _assert_inert(page):
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("iframe[srcdoc]").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0


def test_script_payloads_in_names_render_as_text(server, browser):
    base, tokens, _ = server
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    _sign_in(page, base, tokens["reader"])
    page.get_by_text("Case 1 of", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    _assert_inert(page)
    header = page.locator(".case-sub").first.inner_text() + page.locator(".case-sub").nth(1).inner_text()
    assert STUDY in header or READER in header  # shown literally
    page.context.close()

    admin = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    _sign_in(admin, base, tokens["admin"])
    admin.get_by_text("Reader progress").first.wait_for(timeout=60_000)
    admin.wait_for_selector(IDLE, timeout=30_000)
    _assert_inert(admin)
    assert STUDY in admin.locator(".case-header").first.inner_text()
    assert "<script>" in admin.locator(".case-sub").first.inner_text()
    admin.context.close()


def _try(page, token):
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_backs_off_after_failures(server, browser):
    """Per browser session (Streamlit reports no address for localhost clients)."""
    base, tokens, service = server
    page = browser.new_context().new_page()
    page.goto(base)
    page.wait_for_selector(IDLE, timeout=30_000)
    before = service.sign_in_failures()
    for k in range(1, 3):
        _try(page, "wrong.token")
        deadline = time.monotonic() + 30
        while service.sign_in_failures() < before + k and time.monotonic() < deadline:
            time.sleep(0.2)  # the server stored this failure (the message may be the previous one)
        page.get_by_text("Unknown, expired or revoked token").wait_for(timeout=30_000)
        page.wait_for_selector(IDLE, timeout=30_000)
    _try(page, tokens["reader"])  # the right token, but this session must wait now
    page.get_by_text("Too many failed sign-ins").wait_for(timeout=30_000)
    assert service.sign_in_failures() >= 2
    page.context.close()


def test_downloads_answer_only_the_signed_in_admin(server, browser):
    import urllib.error
    import urllib.request

    base, tokens, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    admin = context.new_page()
    _sign_in(admin, base, tokens["admin"])
    admin.get_by_text("Reader progress").first.wait_for(timeout=60_000)
    admin.wait_for_selector(IDLE, timeout=30_000)
    with admin.expect_download(timeout=30_000) as info:
        admin.get_by_role("button", name="Download ratings.csv").click()
    url = info.value.url
    assert "/media/" in url and info.value.failure() is None
    assert context.request.get(url).status == 200  # the signed-in admin's browser
    with pytest.raises(urllib.error.HTTPError) as refused:  # no cookie: refused
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403
    admin.get_by_role("button", name="Sign out").click()
    admin.get_by_label("Access token").wait_for(timeout=30_000)
    admin.wait_for_selector(IDLE, timeout=30_000)
    assert context.request.get(url).status == 403  # nothing stays reachable after sign-out
    context.close()
