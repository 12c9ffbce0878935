"""The in-browser viewer in Debian chromium (Playwright): reading tools, keyboard-only flow, layout.

One Streamlit server per module (a 64^3 study grid from 32^3 phantoms); pixel checks read the
canvases back, so a test fails when nothing is redrawn. The reader view at 1280x720 is saved as
test-artifacts/reader_view.png (docs/img/reader_view.png with MEDSYNTH_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from sqlalchemy import select

from medsynth.config import compose_stage
from medsynth.study import db as study_db
from medsynth.study.demo import make_phantoms
from medsynth.study.local_server import LocalStudyServer, chromium_path
from medsynth.study.models import Answer, Reader
from medsynth.study.questions import load_questions
from medsynth.study.service import StudyService
from medsynth.study.testing import free_port
from medsynth.study.viewer_payload import quantise

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = chromium_path()
IDLE = "[data-test-script-state='notRunning']"
READY = ".msv-root[data-ready='true']"
N_CASES = 4
# pixel statistics of one plane's canvas: a content hash, the mean and the standard deviation of grey
PIXELS = """plane => {
  const c = document.querySelector(`canvas.msv-canvas[data-plane="${plane}"]`);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0, s = 0, s2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) { h = (h * 31 + d[i] + 7 * d[i + 2]) | 0; s += d[i]; s2 += d[i] * d[i]; n++; }
  const mean = s / n;
  return {hash: h, mean, std: Math.sqrt(s2 / n - mean * mean), slice: +c.dataset.slice,
          cross: c.dataset.cross, zoom: +c.dataset.zoom, window: c.dataset.window};
}"""
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("viewer")
    files = make_phantoms(root / "cases", N_CASES, (32, 32, 32), seed=11)
    url = f"sqlite:///{root / 'study.db'}"
    cfg = compose_stage("study", [f"db={url}", f"port={free_port()}", "render.grid=[64,64,64]"])
    service = StudyService(url)
    questions = load_questions(ROOT / "conf/study_questions/default.yaml")
    half = N_CASES // 2
    service.create_study(
        "realism-study", files[:half], files[half:], questions, OmegaConf.to_container(cfg.render),
        repeat_fraction=0.0,
    )  # fmt: skip
    tokens = {name: service.add_reader("realism-study", name) for name in ("ann", "kim")}
    with LocalStudyServer(cfg, root) as base:
        yield base, tokens, service
    study_db.dispose_engines()


def _signed_in_reader(browser, base, token):
    page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    page.goto(base)
    page.wait_for_selector(IDLE, timeout=30_000)
    page.get_by_label("Access token").fill(token)
    page.keyboard.press("Enter")
    page.wait_for_selector(READY, timeout=60_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    page.evaluate(TWO_FRAMES)
    return page


def _pixels(page, plane):
    page.evaluate(TWO_FRAMES)
    return page.evaluate(PIXELS, plane)


def _centre(page, plane, dx=0.0, dy=0.0):
    box = page.locator(f"canvas.msv-canvas[data-plane='{plane}']").bounding_box()
    return box["x"] + box["width"] * (0.5 + dx), box["y"] + box["height"] * (0.5 + dy)


def _contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""

    def luminance(css):
        channels = [int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted([luminance(foreground), luminance(background)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_reading_tools_redraw_the_planes(server, browser):
    base, tokens, _ = server
    page = _signed_in_reader(browser, base, tokens["ann"])
    # orientation labels (radiological convention) and MR presets only (this study has no modality: MR)
    for plane, labels in {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"}.items():
        texts = page.locator(f".msv-pane[data-plane='{plane}'] .msv-orient").all_inner_texts()
        assert "".join(texts) == labels
    presets = page.locator(".msv-button[data-preset]").all_inner_texts()
    assert sorted(presets) == ["Auto", "Full range", "High contrast"]
    # the wheel changes the rendered axial slice
    before = _pixels(page, "axial")
    page.mouse.move(*_centre(page, "axial"))
    for _ in range(4):
        page.mouse.wheel(0, -100)
    after = _pixels(page, "axial")
    assert after["slice"] == before["slice"] + 4 and after["hash"] != before["hash"]
    # a click in the axial plane moves the coronal and sagittal crosshairs (and their slices)
    coronal, sagittal = _pixels(page, "coronal"), _pixels(page, "sagittal")
    page.mouse.click(*_centre(page, "axial", dx=0.18, dy=-0.12))
    coronal2, sagittal2 = _pixels(page, "coronal"), _pixels(page, "sagittal")
    assert coronal2["cross"].split(",")[0] != coronal["cross"].split(",")[0]
    assert sagittal2["cross"].split(",")[0] != sagittal["cross"].split(",")[0]
    assert coronal2["hash"] != coronal["hash"] and sagittal2["hash"] != sagittal["hash"]
    # zoom changes the scale: the head fills more of the canvas (more bright pixels)
    before = _pixels(page, "coronal")
    page.mouse.move(*_centre(page, "coronal"))
    page.keyboard.down("Control")
    page.mouse.wheel(0, -100)
    page.mouse.wheel(0, -100)
    page.keyboard.up("Control")
    after = _pixels(page, "coronal")
    assert after["zoom"] > before["zoom"] * 1.5 and after["mean"] > before["mean"] * 1.2
    # a window drag (to the left: narrower window) raises the contrast of every plane
    before = _pixels(page, "sagittal")
    x, y = _centre(page, "sagittal")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 60, y, steps=6)
    page.mouse.up()
    after = _pixels(page, "sagittal")
    assert after["window"] != before["window"] and after["std"] > before["std"] * 1.1
    assert page.locator(".msv-button[aria-pressed='true'][data-preset]").count() == 0  # custom window
    # reset restores the default view
    page.keyboard.press("x")
    reset = _pixels(page, "coronal")
    assert reset["zoom"] == 1.0 and page.locator(".msv-button[data-preset='auto']").get_attribute(
        "aria-pressed"
    ) == "true"
    # one plane (the active one: the last used, sagittal) fills the viewer and keeps its tools
    width = page.locator("canvas.msv-canvas[data-plane='sagittal']").bounding_box()["width"]
    page.keyboard.press("f")
    page.evaluate(TWO_FRAMES)
    assert page.locator("canvas.msv-canvas[data-plane='axial']").is_hidden()
    assert page.locator("canvas.msv-canvas[data-plane='coronal']").is_hidden()
    assert page.locator("canvas.msv-canvas[data-plane='sagittal']").bounding_box()["width"] > 1.5 * width
    before = _pixels(page, "sagittal")
    page.mouse.move(*_centre(page, "sagittal"))
    page.mouse.wheel(0, 100)
    assert _pixels(page, "sagittal")["slice"] == before["slice"] - 1
    page.keyboard.press("f")
    # nothing that names the source or shows an intensity reaches the page
    html = page.content()
    assert "phantom_" not in html and ".nii" not in html
    page.context.close()


def test_layout_fits_1280x720_with_accessible_contrast(server, browser):
    base, tokens, service = server
    page = _signed_in_reader(browser, base, tokens["kim"])
    # lossless: the stack chromium inflated (DecompressionStream) and decoded is the server's, bit for bit
    shown = page.evaluate("() => Array.from(window.__medsynthViewer.current.vol)")
    expected = quantise(service.display_volume(service.login(tokens["kim"]), 0), 4096)[0]
    assert np.array_equal(np.asarray(shown, dtype=np.uint16).reshape(expected.shape), expected)
    button = page.get_by_role("button", name="Submit and next case")
    box = button.bounding_box()
    assert box["y"] + box["height"] <= 720, "Submit is below the fold at 1280x720"
    colours = button.evaluate("b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
    assert _contrast(*colours) >= 4.5, colours
    for plane in ("axial", "coronal", "sagittal"):
        label = page.locator(f"canvas.msv-canvas[data-plane='{plane}']").get_attribute("aria-label")
        assert label and plane in label  # alt text of each image
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "reader_view.png"))
    if os.environ.get("MEDSYNTH_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(artifacts / "reader_view.png", ROOT / "docs" / "img" / "reader_view.png")
    page.context.close()


def test_keyboard_only_flow(server, browser):
    base, tokens, service = server
    page = _signed_in_reader(browser, base, tokens["ann"])  # the token was typed, Enter signed in
    assert page.get_by_text("Case 1 of 4").count() == 1
    before = _pixels(page, "axial")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert _pixels(page, "axial")["slice"] == before["slice"] + 2
    page.keyboard.press("v")  # coronal becomes the active plane
    coronal = _pixels(page, "coronal")
    page.keyboard.press("ArrowDown")
    assert _pixels(page, "coronal")["slice"] == coronal["slice"] - 1
    for key in ["s", "4", "2", "3", "5"]:
        page.keyboard.press(key)
        page.evaluate(TWO_FRAMES)
    page.keyboard.press("Enter")
    page.get_by_text("Case 2 of 4").first.wait_for(timeout=30_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    assert service.progress(service.login(tokens["ann"])).done == 1
    with study_db.read_session(service.factory) as s:
        reader = s.scalar(select(Reader).where(Reader.name == "ann"))
        stored = {a.question: a.value for a in s.scalars(select(Answer).where(Answer.reader_id == reader.id))}
    assert stored == {"called_synthetic": "true", "confidence": "4", "realism": "2",
                      "slice_consistency": "3", "anatomy": "5"}  # fmt: skip
    page.context.close()


def test_reload_mid_case_restores_the_draft(server, browser):
    base, tokens, service = server
    page = _signed_in_reader(browser, base, tokens["kim"])
    for key in ["r", "3", "4"]:
        page.keyboard.press(key)
        page.evaluate(TWO_FRAMES)
    kim = service.login(tokens["kim"])
    deadline = time.monotonic() + 20
    while service.draft(kim, 0) != {"called_synthetic": False, "confidence": 3, "realism": 4}:
        assert time.monotonic() < deadline, f"draft not saved: {service.draft(kim, 0)}"
        time.sleep(0.2)
    page.reload()  # a lost connection or a reload: the session is gone, the draft is not
    page.wait_for_selector(IDLE, timeout=30_000)
    page.get_by_label("Access token").fill(tokens["kim"])
    page.keyboard.press("Enter")
    page.wait_for_selector(READY, timeout=60_000)
    page.wait_for_selector(IDLE, timeout=30_000)

    def checked(question):
        return page.locator(f".st-key-q_0_{question} label:has(input:checked)").inner_text().strip()

    assert (checked("called_synthetic"), checked("confidence"), checked("realism")) == ("Real", "3", "4")
    assert page.locator(".st-key-q_0_slice_consistency input:checked").count() == 0
    page.context.close()
