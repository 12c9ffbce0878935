"""A few-step conditional training run: outputs, logged metrics, load_for_sampling, exact resume."""

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, resume_run, run_train, train_losses  # noqa: E402

from medsynth.errors import InputFileError  # noqa: E402
from medsynth.models.checkpoint import load_for_sampling  # noqa: E402

COMMON = [
    *TINY_OVERRIDES,
    "data.label_key=group",
    "data.covariate_keys=[age]",
    "trainer.max_steps=6",
    "trainer.val_every_n_steps=3",
    "callbacks.checkpoint.every_n_steps=2",
    "callbacks.checkpoint.keep_all=true",
    "+callbacks.throughput.window_size=2",  # ThroughputMonitor's rates need a full window (default 100 steps)
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), n=8)


@pytest.fixture(scope="module")
def run_a(prepared, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run_a")
    rc = run_train(
        [f"data.root={prepared}", f"hydra.run.dir={run_dir}", "callbacks.preview.every_n_steps=3", *COMMON]
    )
    assert rc == 0
    return run_dir


def test_few_step_run_writes_checkpoints_previews_config_and_metrics(run_a):
    assert (run_a / "checkpoints" / "last.ckpt").is_file()
    assert (run_a / "checkpoints" / "step_0000002.ckpt").is_file()
    assert sorted(p.name for p in (run_a / "previews").glob("*.png")) == [
        "step_0000003.png",
        "step_0000006.png",
    ]
    resolved = (run_a / "config_resolved.yaml").read_text()
    assert "label_key: group" in resolved and str(run_a) not in ("",)
    metrics = pd.read_csv(run_a / "csv" / "metrics.csv")
    for column in ("train/loss", "val/loss", "train/grad_norm", "lr-AdamW", "train/device/flops_per_sec"):
        assert column in metrics.columns, column
        assert metrics[column].notna().any()
    best = list((run_a / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1
    losses = train_losses(run_a)
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert re.search(r"CPU threads: \d+ \(trainer\.num_threads=", (run_a / "train.log").read_text())


def test_load_for_sampling_round_trip(run_a, prepared):
    import nibabel as nib

    path = run_a / "checkpoints" / "last.ckpt"
    bundle = load_for_sampling(path)
    checkpoint = torch.load(path, weights_only=True)
    ema = {
        k[len("ema.module.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("ema.module.")
    }
    for key, value in bundle.network.state_dict().items():
        assert torch.equal(value, ema[key]), key
    assert bundle.used_ema and not bundle.network.training
    assert bundle.representation.name == "pixel"
    assert bundle.conditioning.num_classes == 2 and bundle.conditioning.class_names == ["control", "patient"]
    assert bundle.conditioning.covariate_keys == ["age"] and bundle.conditioning.guidance_trained
    assert bundle.geometry.shape == (16, 16, 16)
    from medsynth.io.fingerprint import read_fingerprint

    assert bundle.geometry.fingerprint == read_fingerprint(prepared, "data.root")  # checkpoints carry it
    np.testing.assert_allclose(bundle.geometry.affine, nib.load(str(prepared / "phantom_0000.nii.gz")).affine)
    assert bundle.intensity.mode == "mr" and bundle.intensity.high > bundle.intensity.low
    assert len(bundle.checkpoint_sha256) == 64 and bundle.config_hash
    assert bundle.network.covariate_mean.item() == pytest.approx(
        np.mean([40 + 3 * i for i in range(8) if True]), abs=15
    )
    live = load_for_sampling(path, use_ema=False)
    assert not live.used_ema
    assert any(
        not torch.equal(a, b)
        for a, b in zip(live.network.state_dict().values(), bundle.network.state_dict().values(), strict=True)
    )

    from medsynth.sampling.generate import generate_volumes

    volumes = generate_volumes(
        bundle, seeds=[0], steps=2, class_labels=[1], covariates=np.array([[50.0]], np.float32)
    )
    assert volumes.shape == (1, 1, 16, 16, 16) and torch.isfinite(volumes).all()


def test_load_for_sampling_rejects_missing_corrupt_and_foreign(tmp_path, run_a):
    with pytest.raises(InputFileError, match="no such checkpoint"):
        load_for_sampling(tmp_path / "nope.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes((run_a / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    with pytest.raises(InputFileError, match="corrupt"):
        load_for_sampling(corrupt)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(InputFileError, match="not a medsynth training checkpoint"):
        load_for_sampling(foreign)


def test_exact_resume_matches_uninterrupted_run(run_a, prepared, tmp_path):
    resume_run(run_a, prepared, tmp_path / "run_b", COMMON)  # 3 batches per epoch: step 2 is mid-epoch


def test_multirun_sweep_runs_each_job(prepared, tmp_path):
    sweep_dir = tmp_path / "sweep"
    rc = run_train(
        [
            "-m",
            f"data.root={prepared}",
            f"hydra.sweep.dir={sweep_dir}",
            *TINY_OVERRIDES,
            "trainer.max_steps=1",
            "callbacks.preview.num_samples=0",
            "optim.lr=1e-4,1e-3",
        ]
    )
    assert rc == 0
    for job in ("0", "1"):
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
    assert "lr: 0.001" in (sweep_dir / "1" / "config_resolved.yaml").read_text()


def test_last_checkpoint_is_the_final_step_when_max_steps_is_not_a_multiple(prepared, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        o for o in COMMON if not o.startswith(("trainer.max_steps", "callbacks.checkpoint.keep_all"))
    ]
    rc = run_train([f"data.root={prepared}", f"hydra.run.dir={run_dir}", *overrides, "trainer.max_steps=5"])
    assert rc == 0
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 5
    assert not list((run_dir / "checkpoints").glob("last-v*.ckpt"))


def test_overflowing_gradients_skip_the_update_instead_of_poisoning_the_weights(tmp_path):
    """At 16^3 the wavelet demo UNet's 2^3 bottom overflows in bf16 autocast on CPUs that run bf16
    (this one does): the update must be skipped and every weight stay finite."""
    prepared = make_prepared(tmp_path / "prepared", n=6)
    run_dir = tmp_path / "run"
    rc = run_train(
        [
            "experiment=demo",
            f"data.root={prepared}",
            f"hydra.run.dir={run_dir}",
            "trainer.max_steps=6",
            "callbacks.preview.every_n_steps=0",
            "callbacks.progress=none",
        ]
    )
    assert rc == 0
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
