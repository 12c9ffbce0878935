"""benchmarks/quality.py: its smoke mode end to end (16^3, tiny budgets), and its argument checks.

The smoke run goes through every stage of the full benchmark (brain demo sets split by subject,
CPU-budgeted medsynth and tutorial training, sampling, ``medsynth evaluate`` against the held-out
set and the real-vs-real floor, the few-step samplers, the tables); the figures are not asserted,
only that they exist and are well formed.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import parse_arm, steps_for_budget  # noqa: E402


@pytest.mark.slow
def test_quality_smoke_run_scores_every_arm_against_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "q"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--out", str(out), "--smoke", "--quality-every", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    by_name = {r["name"]: r for r in json.loads((out / "quality.json").read_text())}
    fewstep = ("ms0p5:dpmpp3m-5", "ms0p5:dpmpp-10", "ms0p5:ddim-10-eta1")
    for arm in ("floor", "ms0p5", "ms0p5:best_quality", "tut0p5", *fewstep):
        for metric in ("frd_d2", "precision", "recall", "density", "coverage", "kid"):
            assert f"{metric}[{arm}]" in by_name, f"missing {metric}[{arm}]"
        d2 = by_name[f"frd_d2[{arm}]"]["value"]
        assert d2 is not None and math.isfinite(d2) and d2 >= 0, (arm, d2)
        assert 0.0 <= by_name[f"precision[{arm}]"]["value"] <= 1.0
    # --quality-every 3: the callback scored step 3 and its best_quality.ckpt was sampled and evaluated
    assert by_name["frd_d2[ms0p5:best_quality]"]["detail"]["train_steps"] == 3
    # the few-step samplers ran on what `medsynth sample ckpt=RUN` picks (the best_quality checkpoint here),
    # with the sampler, steps and eta of their row (read back from each sample manifest)
    expected = {"ms0p5:dpmpp3m-5": ("dpmpp3m", "5", 0.0), "ms0p5:dpmpp-10": ("dpmpp", "10", 0.0),
                "ms0p5:ddim-10-eta1": ("ddim", "10", 1.0)}
    for arm, (sampler, steps, eta) in expected.items():
        assert by_name[f"frd_d2[{arm}]"]["detail"]["checkpoint"] == "best_quality.ckpt"
        with open(out / "samples" / arm / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert {(r["sampler"], r["steps"], float(r["eta"])) for r in rows} == {(sampler, steps, eta)}, arm
        assert {Path(r["checkpoint"]).name for r in rows} == {"best_quality.ckpt"}, arm
    # the medsynth run is stopped by its step limit here; its CPU time is recorded against the budget
    train = by_name["train_cpu_s[ms0p5]"]
    assert train["detail"]["budget_cpu_s"] == 60.0 and train["detail"]["steps"] == 3
    assert 0 < train["value"]
    # the subject split: no held-out or floor subject is a training subject
    ids = {name: {p.name for p in (out / "data" / "prepared" / name).glob("*.nii.gz")} for name in ("train", "heldout", "real2")}
    assert not ids["train"] & ids["heldout"] and not ids["train"] & ids["real2"] and not ids["heldout"] & ids["real2"]
    table = (out / "quality.md").read_text()
    assert "| floor |" in table and "| ms0p5 |" in table and "d^2 / floor" in table


def test_parse_arm_splits_overrides_and_names_a_bad_flag() -> None:
    assert parse_arm("lowband:model.wavelet_scaling=lowband,optim.lr=1e-4") == (
        "lowband",
        ["model.wavelet_scaling=lowband", "optim.lr=1e-4"],
    )
    with pytest.raises(SystemExit, match="--arm 'lowband'"):
        parse_arm("lowband")


def test_steps_for_budget_ends_the_schedule_inside_the_budget() -> None:
    steps = steps_for_budget(10.0, per_step=0.27, startup_s=8.0)
    assert 8.0 + steps * 0.27 <= 10.0 * 120
    assert steps > 0.9 * (1200 - 8.0) / 0.27
