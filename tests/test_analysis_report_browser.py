"""report.html opens in headless Chromium and every embedded figure decodes (naturalWidth > 0)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from medsynth import cli
from medsynth.study.simulate import reader_models, simulate_ratings

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium (.ci/run installs it)")
def test_report_opens_and_figures_render(tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    latent = rng.normal(size=16)
    table = pd.DataFrame(
        {
            "case_id": [f"sample_{i:05d}" for i in range(16)] + [f"phantom_{i:04d}" for i in range(16)],
            "is_synthetic": [1] * 16 + [0] * 16,
        }
    )
    ratings = simulate_ratings(table, reader_models(0.7, 3), 0.1, 0, dict(zip(table.case_id[:16], latent, strict=True)))
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    per_image = pd.DataFrame({"case_id": table.case_id[:16], "frd_local": -latent, "noise": rng.normal(size=16)})
    per_image.to_csv(tmp_path / "per_image.csv", index=False)
    out = tmp_path / "out"
    args = [
        f"ratings={tmp_path / 'ratings.csv'}",
        f"per_image={tmp_path / 'per_image.csv'}",
        f"out_dir={out}",
    ]
    assert cli.main(["analyze", *args, "bootstrap.n_resamples=100"]) == 0, capsys.readouterr().err

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            summary_text = page.inner_text("ul.summary")
            banner = page.inner_text("#simulated-banner")
        finally:
            browser.close()
    assert len(widths) == 3 and all(w > 0 for w in widths), widths
    assert "Agreement between readers" in headings and "Automatic metrics vs expert realism" in headings
    assert "accuracy" in summary_text and not errors
    assert "Readers and cases as random samples (MRMC)" in headings
    assert "Simulated readers: reader_01, reader_02, reader_03" in banner and "SIMULATED READERS" in summary_text
