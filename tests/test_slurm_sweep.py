"""Hydra sweeps on a real SLURM cluster (tests/slurm_cluster.py): submitit launcher, Optuna, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared  # noqa: E402

pytestmark = pytest.mark.slow

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='needs pip install "medsynth[slurm]"')

# tiny jobs: 1 CPU and 1 GB each, so two fit side by side on the test node's 4 CPUs
SLURM = [
    "hydra/launcher=slurm",
    "trainer.accelerator=cpu",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
STEPS = ["trainer.max_steps=3", "trainer.val_every_n_steps=3", "callbacks.checkpoint.every_n_steps=3"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), n=6)


def _train(cluster, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medsynth.cli", "train", "-m", *SLURM, *TINY_OVERRIDES, *args]
    env = {**cluster.env, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_sweep_runs_two_slurm_jobs_with_run_dirs_and_checkpoints(slurm_cluster, prepared, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _train(
        slurm_cluster, f"data.root={prepared}", f"hydra.sweep.dir={sweep}", *STEPS,
        "callbacks.preview.every_n_steps=0", "optim.lr=1e-3,2e-3", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + slurm_cluster.log_tail()
    for job, lr in (("0", 0.001), ("1", 0.002)):
        checkpoint = torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["global_step"] == 3
        assert list((sweep / job / "checkpoints").glob("best-*.ckpt"))
        assert yaml.safe_load((sweep / job / "config_resolved.yaml").read_text())["optim"]["lr"] == lr
    # both ran as tasks of one SLURM job array, started by srun, under Lightning's SLURM environment
    logs = sorted((sweep / ".submitit").glob("*_*/*_0_log.err"))
    assert len(logs) == 2, logs
    array_ids = {log.parent.name.split("_")[0] for log in logs}
    assert len(array_ids) == 1
    for log in logs:
        assert "SLURM auto-requeueing enabled" in log.read_text()
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in script and "srun" in script and "--gpus" not in script


def test_optuna_search_on_slurm_minimises_the_named_metric(slurm_cluster, prepared, tmp_path):
    sweep = tmp_path / "optuna"
    proc = _train(
        slurm_cluster, "hparams_search=optuna", f"data.root={prepared}", f"hydra.sweep.dir={sweep}",
        *STEPS, "callbacks.preview.num_samples=0", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + slurm_cluster.log_tail()
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    scores = [_best_val_loss(sweep / job) for job in ("0", "1")]
    assert result["best_value"] == pytest.approx(min(scores), rel=1e-6)
    assert len(list((sweep / ".submitit").glob("*_*/*_0_log.err"))) == 2


def test_unknown_partition_is_one_line(slurm_cluster, prepared, tmp_path):
    proc = _train(
        slurm_cluster, f"data.root={prepared}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *STEPS,
        "hydra.launcher.partition=nope", "optim.lr=1e-3,2e-3", cwd=tmp_path,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith("medsynth train: error: hydra.launcher: ")
    assert "invalid partition" in lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert not slurm_cluster.queue()


def test_sweep_over_a_missing_key_is_one_line_and_submits_nothing(slurm_cluster, prepared, tmp_path):
    proc = _train(
        slurm_cluster, f"data.root={prepared}", f"hydra.sweep.dir={tmp_path / 'sweep'}", "optim.lrr=1e-3,2e-3",
        cwd=tmp_path,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("medsynth train: error: optim.lrr: "), lines
    assert not (tmp_path / "sweep").exists()


def _best_val_loss(run_dir: Path) -> float:
    """The best val/loss a run's ModelCheckpoint recorded (saved in last.ckpt)."""
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    return next(float(v["best_model_score"]) for k, v in state.items() if "'monitor': 'val/loss'" in k)


def test_cluster_fixture_runs_plain_sbatch(slurm_cluster, tmp_path):
    out = tmp_path / "hello.txt"
    proc = slurm_cluster.run(["sbatch", "--parsable", "-o", str(out), "--wrap", "echo $SLURM_JOB_ID on $(hostname)"])
    assert proc.returncode == 0, proc.stderr
    slurm_cluster.wait_idle(60)
    assert out.read_text().split()[0] == proc.stdout.strip()
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)
