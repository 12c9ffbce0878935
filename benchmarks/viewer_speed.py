"""Reader-study viewer speed in headless Chromium (by hand; not part of the test run).

For each study grid (default 64^3, 128^3, 256^3: phantoms prepared at that grid, so no resampling
at display time) a study is created, the app is served locally and one reader works through the
cases with Playwright + Debian chromium at 1280x720:

- ``wheel_ms`` / ``key_ms``: mouse-wheel events over the axial plane and arrow-key presses, sent at
  ``--rate`` per second; latency = the event's timestamp to the start of the frame after the one
  that drew the new slice (the new slice is on screen), from the viewer's own performance log
  (``window.medsynthViewerStats.shown``); median and p95 over every event of every case;
- ``submit_to_next_ms``: Enter (submit) to the next case interactive (its volume decoded and drawn,
  the Streamlit script idle), wall clock in the test driver; median over cases;
- ``bytes_per_case``: WebSocket bytes the browser received from the submit of the previous case
  (or sign-in) until the case is interactive; median, min and max over cases (every case, the first
  included): the viewer message is the same length for every case of a study (``message_bytes``,
  fixed with the study's ``coding`` by ``viewer_payload.viewer_settings``), the rest is Streamlit's.

    .venv/bin/python benchmarks/viewer_speed.py --out viewer.json            # 64, 128, 256, 11 cases each
    .venv/bin/python benchmarks/viewer_speed.py --grids 128 --cases 6 --events 60

Figures depend on the machine and its load: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IDLE = "[data-test-script-state='notRunning']"


def _percentiles(values) -> dict:
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"median": None, "p95": None, "n": 0}
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "n": int(values.size)}


def make_study(workdir: Path, grid: int, cases: int, port: int):
    """Phantoms at ``grid``^3 (half real, half 'synthetic'), a study on them, one reader."""
    from omegaconf import OmegaConf

    from medsynth.config import compose_stage
    from medsynth.study.demo import make_phantoms
    from medsynth.study.questions import load_questions
    from medsynth.study.service import StudyService

    files = make_phantoms(workdir / "cases", cases, (grid, grid, grid), seed=0)
    url = f"sqlite:///{workdir / 'study.db'}"
    cfg = compose_stage("study", [f"db={url}", f"port={port}", f"render.grid=[{grid},{grid},{grid}]"])
    service = StudyService(url)
    questions = load_questions(ROOT / "conf/study_questions/default.yaml")
    half = cases // 2
    study_id = service.create_study(
        "speed", files[:half], files[half:], questions, OmegaConf.to_container(cfg.render), repeat_fraction=0.0
    )
    viewer = service.settle_viewer(study_id)["viewer"]  # as `study create` does: coding and message length
    return cfg, service.add_reader("speed", "reader"), viewer


def _events(page, send, n: int, rate: float) -> list[float]:
    page.evaluate("() => { window.medsynthViewerStats.shown.length = 0; }")
    for i in range(n):
        send(i)
        time.sleep(1.0 / rate)
    page.evaluate("() => new Promise(r => setTimeout(r, 300))")
    return page.evaluate("() => window.medsynthViewerStats.shown.slice()")


def run_grid(browser, grid: int, cases: int, events: int, rate: float) -> dict:
    from medsynth.study.local_server import LocalStudyServer
    from medsynth.study.testing import free_port

    with tempfile.TemporaryDirectory(prefix=f"viewer{grid}-") as tmp:
        workdir = Path(tmp)
        cfg, token, viewer = make_study(workdir, grid, cases, free_port())
        with LocalStudyServer(cfg, workdir) as base:
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            received = [0]
            page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.__setitem__(
                0, received[0] + len(f if isinstance(f, bytes) else f.encode()))))  # fmt: skip
            page.goto(base)
            page.wait_for_selector(IDLE, timeout=60_000)
            page.get_by_label("Access token").fill(token)
            received[0] = 0
            page.keyboard.press("Enter")
            wheel, key, submit, sizes, decode = [], [], [], [], []
            for k in range(cases):
                page.wait_for_selector(f".msv-root[data-showing='{k}'][data-ready='true']", timeout=120_000)
                page.wait_for_selector(IDLE, timeout=60_000)
                sizes.append(received[0])
                box = page.locator("canvas.msv-canvas[data-plane='axial']").bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                wheel += _events(page, lambda i: page.mouse.wheel(0, -100 if i < events // 2 else 100), events, rate)
                key += _events(
                    page, lambda i: page.keyboard.press("ArrowUp" if i < events // 2 else "ArrowDown"), events, rate
                )
                for answer in ["s", "3", "3", "3", "3"]:
                    page.keyboard.press(answer)
                    page.evaluate("() => new Promise(r => requestAnimationFrame(r))")
                page.wait_for_selector(IDLE, timeout=60_000)
                received[0] = 0
                start = time.time() * 1000
                page.keyboard.press("Enter")
                if k + 1 < cases:
                    page.wait_for_selector(
                        f".msv-root[data-showing='{k + 1}'][data-ready='true']", timeout=120_000
                    )
                    ready = page.evaluate("() => window.medsynthViewerStats.readyAt.at(-1)")
                    submit.append(ready - start)  # both wall clock (ms) on this machine
            decode = page.evaluate("() => window.medsynthViewerStats.decodeMs.slice()")
            page.context.close()
    return {
        "grid": grid,
        "wheel_ms": _percentiles(wheel),
        "key_ms": _percentiles(key),
        "submit_to_next_ms": _percentiles(submit),
        "bytes_per_case": {"median": float(np.median(sizes)), "min": int(min(sizes)), "max": int(max(sizes)),
                           "n": len(sizes)},  # fmt: skip
        "message_bytes": int(viewer["message_bytes"]),
        "coding": viewer["coding"],
        "decode_ms": _percentiles(decode),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--cases", type=int, default=11, help="showings per grid (half real, half synthetic; "
                        "every one but the last is submitted and timed)")
    parser.add_argument("--events", type=int, default=40, help="wheel events and key presses per case")
    parser.add_argument("--rate", type=float, default=30.0, help="events per second")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from medsynth.study.local_server import CHROMIUM_ARGS, chromium_path

    if chromium_path() is None:
        print("viewer_speed: Debian chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        for grid in args.grids:
            load = os.getloadavg()
            result = run_grid(browser, grid, args.cases, args.events, args.rate)
            result["loadavg_before"] = [round(x, 2) for x in load]
            result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            results.append(result)
            print(json.dumps(result), flush=True)
        browser.close()
    print("\n| grid | wheel median / p95 (ms) | key median / p95 (ms) | submit->next median (ms, n) | "
          "bytes per case (median, min..max) | coding | load (1 min) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['grid']}^3 | {r['wheel_ms']['median']:.1f} / {r['wheel_ms']['p95']:.1f} | "
            f"{r['key_ms']['median']:.1f} / {r['key_ms']['p95']:.1f} | "
            f"{r['submit_to_next_ms']['median']:.0f} ({r['submit_to_next_ms']['n']}) | "
            f"{r['bytes_per_case']['median'] / 1e6:.3f} MB ({r['bytes_per_case']['min'] / 1e6:.3f}.."
            f"{r['bytes_per_case']['max'] / 1e6:.3f}) | {r['coding']} | {r['loadavg_before'][0]} |"
        )
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
