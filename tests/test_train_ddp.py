"""Multi-process training on CPU (DDP, gloo) and SIGTERM checkpointing, through the real CLI."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared  # noqa: E402

pytestmark = pytest.mark.slow


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsynth.cli", "train", *TINY_OVERRIDES, *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_ddp_two_cpu_processes(tmp_path):
    root = make_prepared(tmp_path / "prepared", n=8)
    run_dir = tmp_path / "run"
    cmd = _cli(
        f"data.root={root}",
        f"hydra.run.dir={run_dir}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=3",
        "trainer.val_every_n_steps=3",
        "callbacks.checkpoint.every_n_steps=3",
        "callbacks.preview.every_n_steps=0",
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world_size: 2" in proc.stdout + proc.stderr or "MEMBER: 2/2" in proc.stdout + proc.stderr
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert (run_dir / "previews" / "step_0000003.png").is_file()  # the end-of-training preview, rank 0 only
    assert len(list((run_dir / "previews").glob("*.png"))) == 1
    # the children re-ran the same command without writing their own run folders
    assert not (tmp_path / "runs").exists()


def test_sigterm_saves_last_checkpoint(tmp_path):
    root = make_prepared(tmp_path / "prepared", n=8)
    run_dir = tmp_path / "run"
    cmd = _cli(
        f"data.root={root}",
        f"hydra.run.dir={run_dir}",
        "trainer.max_steps=100000",
        "callbacks.checkpoint.every_n_steps=100000",
        "callbacks.checkpoint.keep_all=true",
        "callbacks.preview.every_n_steps=2",
        "callbacks.preview.num_samples=1",
        "callbacks.preview.steps=1",
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=tmp_path
    )
    try:
        deadline = time.time() + 240
        while not (run_dir / "previews" / "step_0000002.png").exists():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() < deadline, "training did not reach step 2"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, output[-3000:]
    assert "SIGTERMException was raised" in output  # Lightning's ModelCheckpoint(save_on_exception=True)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] >= 2
    assert "medsynth" in checkpoint and any(k.startswith("ema.module.") for k in checkpoint["state_dict"])
