"""``diffusion=rflow`` (rectified flow) through the same train and sample commands, checkpoints and manifests."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, resume_run, run_train, train_losses  # noqa: E402

from medsynth.cli import main as medsynth_main  # noqa: E402
from medsynth.models.bundle import DiffusionSettings  # noqa: E402
from medsynth.models.checkpoint import load_for_sampling  # noqa: E402
from medsynth.models.noise import NoiseProcess  # noqa: E402

COMMON = [
    *TINY_OVERRIDES,
    "diffusion=rflow",
    "trainer.max_steps=6",
    "trainer.val_every_n_steps=3",
    "callbacks.checkpoint.every_n_steps=2",
    "callbacks.checkpoint.keep_all=true",
]
FAST = ["steps=3", "precision=32", "progress=false", "contact_sheet.num_samples=0"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), n=8)


@pytest.fixture(scope="module")
def run_a(prepared, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rflow_a")
    rc = run_train(
        [f"data.root={prepared}", f"hydra.run.dir={run_dir}", "callbacks.preview.every_n_steps=3", *COMMON]
    )
    assert rc == 0
    return run_dir


def test_rflow_noise_process_is_monai_rflow_scheduler():
    """alpha = 1 - t/T, sigma = t/T; add_noise is MONAI's; the flow target is x0 - noise."""
    settings = DiffusionSettings(
        1000, "linear_beta", 1e-4, 0.02, "flow", process="rflow", time_sampling="logit-normal"
    )
    process = NoiseProcess(settings)
    x0, noise, t = torch.randn(3, 1, 4, 4, 4), torch.randn(3, 1, 4, 4, 4), torch.tensor([0, 500, 999])
    expected = (1 - t / 1000).view(-1, 1, 1, 1, 1) * x0 + (t / 1000).view(-1, 1, 1, 1, 1) * noise
    torch.testing.assert_close(process.add_noise(x0, noise, t), expected.float())
    torch.testing.assert_close(process.target(x0, noise, t), x0 - noise)
    noisy, target = process.add_noise(x0, noise, t)[1:2], process.target(x0, noise, t)[1:2]
    x0_back, eps_back = process.denoised(target, noisy, 0.5, 0.5)
    torch.testing.assert_close(x0_back, x0[1:2])
    torch.testing.assert_close(eps_back, noise[1:2])
    times = process.sample_timesteps(20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert times.dtype == torch.long and 0 <= int(times.min()) and int(times.max()) < 1000
    middle = ((times > 250) & (times < 750)).float().mean()
    assert middle > 0.6  # logit-normal(0, 1) puts ~68% of the times in the middle half (uniform: 50%)


def test_rflow_run_writes_a_checkpoint_that_says_so(run_a):
    bundle = load_for_sampling(run_a / "checkpoints" / "last.ckpt")
    assert bundle.diffusion.process == "rflow" and bundle.diffusion.prediction_type == "flow"
    assert any((run_a / "previews").glob("step_*.png"))
    assert np.isfinite(train_losses(run_a).values).all()


def test_rflow_exact_resume_matches_uninterrupted_run(run_a, prepared, tmp_path):
    resume_run(run_a, prepared, tmp_path / "run_b", COMMON)  # logit-normal times come from the seeded generator


def test_sample_an_rflow_checkpoint_batch_invariant_with_its_manifest(run_a, tmp_path):
    ckpt = run_a / "checkpoints" / "last.ckpt"
    one, three = tmp_path / "one", tmp_path / "three"
    assert medsynth_main(["sample", f"ckpt={ckpt}", "num_samples=3", f"out_dir={one}", "batch_size=1", *FAST]) == 0
    assert medsynth_main(["sample", f"ckpt={ckpt}", "num_samples=3", f"out_dir={three}", "batch_size=3", *FAST]) == 0
    # the draws are per sample; a trained MONAI UNet's float32 convolutions differ by ~1e-6 between batch
    # sizes on the CPU (freshly initialised ones output exactly 0, which hides it), hence a tolerance
    for f in sorted(one.glob("sample_*.nii.gz")):
        a, b = (np.asarray(nib.load(str(p)).dataobj) for p in (f, three / f.name))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    manifest = pd.read_csv(one / "manifest.csv")
    assert set(manifest["sampler"]) == {"dpmpp3m"} and set(manifest["grid"]) == {"uniform"}
    assert set(manifest["steps"]) == {3}


@pytest.mark.parametrize(
    "extra,message",
    [
        (["sampler=ddpm"], "sampler: 'ddpm' samples DDPM-family checkpoints only"),
        (["grid=cosine"], "grid: unknown grid 'cosine'"),
    ],
)
def test_bad_sampler_or_grid_for_rflow_is_one_line(run_a, tmp_path, capsys, extra, message):
    out = tmp_path / "synth"
    ckpt = run_a / "checkpoints" / "last.ckpt"
    assert medsynth_main(["sample", f"ckpt={ckpt}", "num_samples=2", f"out_dir={out}", *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


@pytest.mark.slow
def test_rflow_trains_in_two_processes_and_samples_in_two(tmp_path, run_a):
    root = make_prepared(tmp_path / "prepared", n=8)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "medsynth.cli", "train", *TINY_OVERRIDES, "diffusion=rflow", f"data.root={root}",
           f"hydra.run.dir={run_dir}", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.strategy=ddp", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
           "callbacks.checkpoint.every_n_steps=2", "callbacks.preview.every_n_steps=0", "callbacks.preview.num_samples=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    ckpt = run_a / "checkpoints" / "last.ckpt"
    one, two = tmp_path / "one", tmp_path / "two"
    assert medsynth_main(["sample", f"ckpt={ckpt}", "num_samples=3", f"out_dir={one}", *FAST]) == 0
    assert medsynth_main(["sample", f"ckpt={ckpt}", "num_samples=3", f"out_dir={two}", "devices=2", "accelerator=cpu", *FAST]) == 0
    for f in sorted(one.glob("sample_*.nii.gz")):
        a, b = (np.asarray(nib.load(str(p)).dataobj) for p in (f, two / f.name))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
