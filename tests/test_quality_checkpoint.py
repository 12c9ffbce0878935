"""best_quality.ckpt: scored every N steps during training, kept only when the score improves, kept
across a resume, and what ``medsynth sample ckpt=RUN`` samples (else last.ckpt)."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, run_train  # noqa: E402

from medsynth.cli import main as medsynth_main  # noqa: E402
from medsynth.errors import ConfigError  # noqa: E402
from medsynth.sampling.quality import QualityScore  # noqa: E402
from medsynth.sampling.quality_checkpoint import QualityCheckpoint  # noqa: E402

COMMON = [
    *TINY_OVERRIDES,
    "callbacks.preview.num_samples=0",
    "callbacks.checkpoint.every_n_steps=2",
    "callbacks.checkpoint.keep_all=true",
    "callbacks.quality.every_n_steps=2",
    "callbacks.quality.num_samples=3",
    "callbacks.quality.steps=2",
    "trainer.val_every_n_steps=100",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), n=8)


def _scripted(monkeypatch, scores: list[float]) -> list[int]:
    """Make the real callback see ``scores`` in turn instead of sampling; returns the scored steps."""
    queue, steps = list(scores), []

    def compute(self, pl_module):
        steps.append(int(pl_module.trainer.global_step))
        return queue.pop(0)

    monkeypatch.setattr(QualityCheckpoint, "compute", compute)
    return steps


def _step_of(path: Path) -> int:
    return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])


@pytest.fixture(scope="module")
def scripted_run(prepared, tmp_path_factory):
    """6 steps scored at 2, 4, 6 with frd_d2 (lower is better) = 5, 3, 4: the best is step 4."""
    monkeypatch = pytest.MonkeyPatch()
    steps = _scripted(monkeypatch, [5.0, 3.0, 4.0])
    run_dir = tmp_path_factory.mktemp("scripted")
    try:
        assert run_train([f"data.root={prepared}", f"hydra.run.dir={run_dir}", "trainer.max_steps=6", *COMMON]) == 0
    finally:
        monkeypatch.undo()
    assert steps == [2, 4, 6]
    return run_dir


def test_best_quality_is_written_only_when_the_score_improves(scripted_run):
    best = scripted_run / "checkpoints" / "best_quality.ckpt"
    assert _step_of(best) == 4  # written at 2 (first score) and 4 (better), not at 6 (worse)
    record = torch.load(best, weights_only=True)["quality"]
    assert (record["best"], record["best_step"], record["monitor"]) == (3.0, 4, "quality/frd_d2")
    last = torch.load(scripted_run / "checkpoints" / "last.ckpt", weights_only=True)["quality"]
    assert (last["best"], last["best_step"], last["last"], last["last_step"]) == (3.0, 4, 4.0, 6)
    assert not list((scripted_run / "checkpoints").glob(".tmp-*"))
    logged = pd.read_csv(scripted_run / "csv" / "metrics.csv").dropna(subset=["quality/frd_d2"])
    assert logged.set_index("step")["quality/frd_d2"].to_dict() == {2: 5.0, 4: 3.0, 6: 4.0}


def test_higher_is_better_metric_keeps_the_highest(prepared, tmp_path, monkeypatch):
    _scripted(monkeypatch, [0.2, 0.5, 0.4])
    run = tmp_path / "run"
    args = [f"data.root={prepared}", f"hydra.run.dir={run}", "trainer.max_steps=6"]
    args.append("callbacks.quality.metric=coverage")
    assert run_train([*args, *COMMON]) == 0
    best = run / "checkpoints" / "best_quality.ckpt"
    assert _step_of(best) == 4 and torch.load(best, weights_only=True)["quality"]["best"] == 0.5


def test_resume_keeps_the_best_score(prepared, tmp_path, monkeypatch):
    """4 steps scored 5, 3 (best: step 4), resumed in the same folder to 8 steps scored 3.5, 2.5: only
    step 8 is a new best. A callback that forgot its best on resume would also save step 6."""
    run = tmp_path / "run"
    _scripted(monkeypatch, [5.0, 3.0])
    assert run_train([f"data.root={prepared}", f"hydra.run.dir={run}", "trainer.max_steps=4", *COMMON]) == 0
    assert _step_of(run / "checkpoints" / "best_quality.ckpt") == 4
    steps = _scripted(monkeypatch, [3.5, 2.5])
    saved: list[int] = []
    original = QualityCheckpoint.save
    monkeypatch.setattr(
        QualityCheckpoint, "save", lambda self, trainer, step: saved.append(step) or original(self, trainer, step)
    )
    last = run / "checkpoints" / "last.ckpt"
    args = [f"data.root={prepared}", f"hydra.run.dir={run}", f"ckpt_path={last}", "trainer.max_steps=8", *COMMON]
    assert run_train(args) == 0
    assert steps == [6, 8] and saved == [8]
    assert _step_of(run / "checkpoints" / "best_quality.ckpt") == 8


def test_real_scores_are_logged_deterministic_and_sampled_from_the_run(prepared, tmp_path, capsys):
    run = tmp_path / "run"
    args = [f"data.root={prepared}", f"hydra.run.dir={run}", "trainer.max_steps=2"]
    args.append(f"callbacks.quality.cache_dir={tmp_path}/cache")
    assert run_train([*args, *COMMON]) == 0
    logged = pd.read_csv(run / "csv" / "metrics.csv").dropna(subset=["quality/frd_d2"])
    assert list(logged["step"]) == [2] and np.isfinite(logged["quality/frd_d2"]).all()
    record = torch.load(run / "checkpoints" / "best_quality.ckpt", weights_only=True)["quality"]
    assert record["best"] == pytest.approx(float(logged["quality/frd_d2"].iloc[0]), rel=1e-6)

    # ckpt=RUN samples best_quality.ckpt and says so; the manifest names that file
    capsys.readouterr()
    out = tmp_path / "synthetic"
    fast = ["num_samples=1", "sampler=dpmpp", "steps=2", "precision=32", "progress=false"]
    fast.append("contact_sheet.num_samples=0")
    assert medsynth_main(["sample", f"ckpt={run}", f"out_dir={out}", *fast]) == 0
    said = capsys.readouterr().out.splitlines()[0]
    assert "best_quality.ckpt" in said and "quality/frd_d2 =" in said and "at step 2" in said
    manifest = pd.read_csv(out / "manifest.csv")
    assert Path(manifest["checkpoint"].iloc[0]).name == "best_quality.ckpt"

    # without best_quality.ckpt: last.ckpt, and why
    (run / "checkpoints" / "best_quality.ckpt").unlink()
    assert medsynth_main(["sample", f"ckpt={run}", f"out_dir={tmp_path / 'from_last'}", *fast]) == 0
    said = capsys.readouterr().out.splitlines()[0]
    assert "last.ckpt" in said and "no best_quality.ckpt" in said
    # ckpt=FILE keeps working, silently
    last = run / "checkpoints" / "last.ckpt"
    assert medsynth_main(["sample", f"ckpt={last}", f"out_dir={tmp_path / 'file'}", *fast]) == 0
    assert "run folder" not in capsys.readouterr().out


def test_sample_from_a_folder_without_checkpoints_is_one_line(tmp_path, capsys):
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    assert medsynth_main(["sample", f"ckpt={tmp_path / 'empty'}", f"out_dir={tmp_path / 'out'}"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best_quality.ckpt" in err[0] and "last.ckpt" in err[0]
    assert not (tmp_path / "out").exists()


def test_score_tracks_realism(prepared, tmp_path):
    """Against 4 real phantoms, 4 other real phantoms score far better than smoothed noise, and the
    same volumes always score the same."""
    files = sorted(prepared.glob("*.nii.gz"))
    affine = nib.load(str(files[0])).affine
    scorer = QualityScore(files[:4], affine, cache_dir=tmp_path)
    real = np.stack([np.asarray(nib.load(str(f)).dataobj, dtype=np.float32) for f in files[4:8]])
    rng = np.random.default_rng(0)
    noise = np.clip(real.mean(axis=0) + 0.5 * rng.standard_normal(real.shape), -1, 1).astype(np.float32)
    assert scorer.score(real) < scorer.score(noise) / 3
    assert scorer.score(real) == scorer.score(real)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"metric": "density"}, "callbacks.quality.metric"),
        ({"num_samples": 2}, "callbacks.quality.num_samples"),
        ({"reference": "test"}, "callbacks.quality.reference"),
    ],
)
def test_bad_settings_name_their_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as err:
        QualityCheckpoint(tmp_path, **overrides)
    assert key in str(err.value)


@pytest.mark.slow
def test_two_processes_share_one_score_and_rank_zero_writes(prepared, tmp_path):
    """DDP on 2 CPU processes (gloo): rank 0 samples and scores, every rank takes the same decision
    (a rank that disagreed would hang in save_checkpoint's barrier or fail), one file is written."""
    import os
    import subprocess

    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "medsynth.cli", "train", *COMMON, f"data.root={prepared}", f"hydra.run.dir={run}",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
        "trainer.max_steps=2", f"callbacks.quality.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("quality: step 2 quality/frd_d2") == 1  # rank 0 reports
    record = torch.load(run / "checkpoints" / "best_quality.ckpt", weights_only=True)["quality"]
    assert record["best_step"] == 2 and np.isfinite(record["best"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best_quality.ckpt", "last.ckpt", "step_0000002.ckpt",
    ]  # fmt: skip
