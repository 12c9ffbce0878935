"""A tiny run of benchmarks/run.py (16^3, unet_tiny, 1-2 steps) so the benchmark cannot rot.

Every code path of the full mode except the FRD quality check runs (interleaved rounds at 1 and 2
threads, speedups vs DDPM-1000 and DDIM-250 at each thread count and of the bests, GFLOP/s against
the bf16 peak, the step profile, peak memory in child processes, ablation, data-wait share on a
real VolumeDataModule); the figures are machine- and load-dependent and are not asserted, only
that they exist, are finite and are consistent with the raw timings they come from.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_smoke_run_writes_records_and_table(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--thread-counts",
            "1",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = json.loads(out.read_text())
    assert isinstance(records, list) and records
    for record in records:
        assert set(record) == {"name", "value", "unit", "detail"}
    by_name = {r["name"]: r for r in records}
    names = [
        f"{kind}_16{tag}"
        for tag in ("", "[threads=1]", "[threads=2]")
        for kind in (
            "train_speedup",
            "sample_speedup",
            "sample_speedup_ddim250",
            "medsynth_train_step",
            "baseline_train_step",
            "medsynth_sample_volume",
            "medsynth_sample_volume_fewstep",
            "sample_speedup_fewstep",
            "sample_speedup_ddim250_fewstep",
            "medsynth_train_gflops",
        )
    ]
    names += [
        "baseline_sample_volume_16",
        "baseline_ddim250_volume_16",
        "baseline_ddpm_step_16[threads=1]",
        "baseline_ddim_step_16[threads=2]",
        "peak_gflops_bf16[threads=1]",
        "profile_train_step_16",
        "medsynth_train_peak_memory_16",
        "baseline_train_peak_memory_16",
        "data_wait_share_16[cache=memory]",
        "benchmark_wall_time",
    ]
    for name in names:
        assert name in by_name, f"missing record {name}"
        value = by_name[name]["value"]
        assert value is not None and math.isfinite(value) and value > 0, (name, value)
    assert 0.0 <= by_name["data_wait_share_16[cache=memory]"]["value"] < 1.0
    assert any(name.startswith("ablation_train_16[") for name in by_name)
    assert by_name["medsynth_train_step_16"]["detail"]["precision"] in ("bf16-mixed", "32-true", "16-mixed")

    # each figure is the median of its raw timings (2 rounds x steps per round), with min and max
    ddpm = by_name["baseline_ddpm_step_16[threads=1]"]["detail"]
    raw = [s for block in ddpm["seconds_by_round"] for s in block]
    assert len(raw) == ddpm["runs"] == 4 and len(ddpm["load_by_round"]) == 2
    assert ddpm["min"] <= by_name["baseline_ddpm_step_16[threads=1]"]["value"] <= ddpm["max"]
    # the best of each side is its fastest thread count; the headline speedup is the ratio of the bests
    ms_best = by_name["medsynth_train_step_16"]
    assert ms_best["value"] == min(by_name[f"medsynth_train_step_16[threads={n}]"]["value"] for n in (1, 2))
    base_best = by_name["baseline_train_step_16"]
    headline = by_name["train_speedup_16"]
    assert headline["detail"]["medsynth_threads"] == ms_best["detail"]["threads"]
    assert math.isclose(headline["value"], base_best["value"] / ms_best["value"], rel_tol=1e-9)
    assert headline["detail"]["round_min"] <= headline["detail"]["round_max"]
    # DDPM-1000 and DDIM-250 are the step medians x 1000 and x 250
    ddpm_threads = by_name["baseline_sample_volume_16"]["detail"]["threads"]
    step = by_name[f"baseline_ddpm_step_16[threads={ddpm_threads}]"]["value"]
    assert math.isclose(by_name["baseline_sample_volume_16"]["value"], 1000 * step, rel_tol=1e-9)
    ddim_threads = by_name["baseline_ddim250_volume_16"]["detail"]["threads"]
    step = by_name[f"baseline_ddim_step_16[threads={ddim_threads}]"]["value"]
    assert math.isclose(by_name["baseline_ddim250_volume_16"]["value"], 250 * step, rel_tol=1e-9)
    # the few-step sampler (dpmpp, 7 steps, eta 1) is timed beside the default and compared the same way
    few = by_name["medsynth_sample_volume_fewstep_16"]
    assert few["detail"]["sampler"] == "dpmpp-7-eta1"
    assert by_name["medsynth_sample_volume_16"]["detail"]["sampler"] != few["detail"]["sampler"]
    few_speedup = by_name["sample_speedup_fewstep_16"]
    assert few_speedup["detail"]["medsynth_threads"] == few["detail"]["threads"]
    assert math.isclose(few_speedup["value"], by_name["baseline_sample_volume_16"]["value"] / few["value"], rel_tol=1e-9)
    # the efficiency figure uses the peak measured at the same thread count
    gflops = by_name["medsynth_train_gflops_16[threads=1]"]
    peak = by_name["peak_gflops_bf16[threads=1]"]["value"]
    assert math.isclose(gflops["detail"]["share_of_bf16_peak"], gflops["value"] / peak, rel_tol=1e-9)
    # the progress record written after every round holds the raw timings of the complete rounds
    progress = by_name["rounds_done_16"]
    assert progress["value"] == 2
    assert progress["detail"]["series"]["baseline_ddpm_step[threads=1]"]["seconds_by_round"] == ddpm["seconds_by_round"]
    profile = by_name["profile_train_step_16"]["detail"]
    assert profile["top"] and math.isclose(sum(profile["by_kind"].values()), 1.0, abs_tol=0.01)
    assert {"conv3d", "optimizer / EMA / grad norm"} <= set(profile["by_kind"])

    table = out.with_suffix(".md").read_text()
    assert table.startswith("| name | value | unit | detail |")
    assert "train_speedup_16" in table and "train_speedup_16" in result.stdout
    assert "| kind of work | share of self CPU time |" in table


def test_fair_interleave_order_and_speedup_spread() -> None:
    """The round-robin order is A1 B1 A2 B2 per round, and the speedup's spread comes from paired rounds."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fair import Task, interleave, speedup

    calls: list[tuple[str, int]] = []
    seconds = {"A": iter([1.0, 2.0, 3.0, 4.0]), "B": iter([10.0, 10.0, 30.0, 40.0])}

    def runner(name: str):
        def run(threads: int) -> list[float]:
            calls.append((name, threads))
            return [next(seconds[name])]

        return run

    series = interleave(
        [Task("A", runner("A")), Task("B", runner("B"))], thread_counts=[1, 2], rounds=2, log=lambda _: None
    )
    assert calls == [("A", 1), ("B", 1), ("A", 2), ("B", 2)] * 2
    assert series[("A", 1)].values == [1.0, 3.0] and series[("B", 2)].values == [10.0, 40.0]
    ratio = speedup(series[("B", 1)], series[("A", 1)])  # B at 1 thread: 10, 30; A: 1, 3
    assert ratio["value"] == 20.0 / 2.0 and ratio["per_round"] == [10.0, 10.0]


def test_precision_margin_agrees_with_prdc_precision() -> None:
    """Share of synthetic points with ball ratio < 1 is prdc's precision (random data, 3 sets)."""
    import numpy as np
    from prdc import compute_prdc

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from precision_margin import ball_ratios

    rng = np.random.default_rng(0)
    real = rng.normal(size=(16, 30))
    for shift in (0.0, 0.5, 3.0):
        synthetic = rng.normal(size=(16, 30)) + shift
        expected = compute_prdc(real_features=real, fake_features=synthetic, nearest_k=5)["precision"]
        assert np.mean(ball_ratios(real, synthetic, 5) < 1) == expected


def test_denoiser_error_heldout_gap(tmp_path: Path) -> None:
    """--heldout scores another prepared folder with the same noise: its own training volumes give a gap of 0."""
    from train_helpers import TINY_OVERRIDES, make_prepared, run_train

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from denoiser_error import denoiser_error, main

    train = make_prepared(tmp_path / "train", n=4)
    other = make_prepared(tmp_path / "other", n=4, seed=1)
    run = tmp_path / "run"
    overrides = [*TINY_OVERRIDES, "data.val_fraction=0", "callbacks.quality=null", "callbacks.preview=null"]
    assert run_train([*overrides, f"data.root={train}", "trainer.max_steps=2", f"hydra.run.dir={run}"]) == 0
    same = denoiser_error(run, "last.ckpt", [10, 500], max_batches=2, heldout=train)
    differ = denoiser_error(run, "last.ckpt", [10, 500], max_batches=2, heldout=other)
    for row in same["rows"]:
        assert row["mse_heldout"] == row["mse_train"] > 0
    assert all(row["mse_heldout"] != row["mse_train"] for row in differ["rows"])
    assert [r["mse_train"] for r in same["rows"]] == [r["mse_train"] for r in differ["rows"]]
    assert main([str(run), "--heldout", str(tmp_path / "missing")]) == 2
