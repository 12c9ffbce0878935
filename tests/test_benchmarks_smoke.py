"""A tiny run of benchmarks/run.py (16^3, unet_tiny, 1-2 steps) so the benchmark cannot rot.

Every code path of the full mode except the FRD quality check runs (speedups, GFLOP/s, peak
memory in child processes, ablation, data-wait share on a real VolumeDataModule); the figures
are machine- and load-dependent and are not asserted, only that they exist and are finite.
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
    for name in (
        "train_speedup_16",
        "sample_speedup_16",
        "medsynth_train_step_16",
        "baseline_train_step_16",
        "medsynth_sample_volume_16",
        "baseline_sample_volume_16",
        "medsynth_train_gflops_16",
        "medsynth_train_peak_memory_16",
        "baseline_train_peak_memory_16",
        "data_wait_share_16[cache=memory]",
        "benchmark_wall_time",
    ):
        assert name in by_name, f"missing record {name}"
        value = by_name[name]["value"]
        assert value is not None and math.isfinite(value) and value > 0, (name, value)
    assert 0.0 <= by_name["data_wait_share_16[cache=memory]"]["value"] < 1.0
    assert any(name.startswith("ablation_train_16[") for name in by_name)
    assert by_name["medsynth_train_step_16"]["detail"]["precision"] in ("bf16-mixed", "32-true", "16-mixed")
    table = out.with_suffix(".md").read_text()
    assert table.startswith("| name | value | unit | detail |")
    assert "train_speedup_16" in table and "train_speedup_16" in result.stdout
