"""Test fixtures for training: a small prepared dataset in the contract's layout (phantoms in [-1, 1])."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from medsynth.data.phantom import make_phantom

TINY_OVERRIDES = [
    "model=unet_tiny",
    "trainer.precision=32-true",
    "trainer.log_every_n_steps=1",
    "callbacks.progress=none",
    "logger=csv",
    "data.batch_size=2",
    "data.val_fraction=0.25",
    "callbacks.preview.num_samples=1",
    "callbacks.preview.steps=3",
]


def run_train(args: list[str]) -> int:
    """Run ``medsynth train`` in this process through the CLI dispatcher (one-line errors, exit codes)."""
    from medsynth.cli import main

    return main(["train", *args])


def make_prepared(
    folder: Path, n: int = 8, shape: tuple[int, int, int] = (16, 16, 16), seed: int = 0
) -> Path:
    """Write ``n`` phantom volumes normalised to [-1, 1] + manifest.csv + preprocessing.json into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        vol, affine, params = make_phantom(shape, rng)
        low, high = float(np.percentile(vol, 0.5)), float(np.percentile(vol, 99.5))
        norm = np.clip((vol - low) / (high - low) * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)
        name = f"phantom_{i:04d}.nii.gz"
        nib.save(nib.Nifti1Image(norm, affine), str(folder / name))
        rows.append(
            {
                "file": name,
                "subject_id": f"phantom_{i:04d}",
                "source": f"raw/{name}",
                "intensity_low": low,
                "intensity_high": high,
                "lesion": int(params.has_lesion),
                "group": "patient" if i % 2 else "control",
                "age": float(40 + 3 * i),
            }
        )
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).tolist()
    info = {
        "version": 1,
        "shape": list(shape),
        "spacing": spacing,
        "orientation": "RAS",
        "intensity": {"mode": "mr", "percentiles": [0.5, 99.5], "unit": "a.u."},
        "crop_foreground": {"enabled": False, "threshold": 0.1, "margin_mm": 0.0},
        "medsynth_version": "test",
    }
    (folder / "preprocessing.json").write_text(json.dumps(info))
    return folder


def train_losses(run_dir: Path) -> pd.Series:
    """train/loss by step from a run's CSV log (``logger=csv``)."""
    metrics = pd.read_csv(run_dir / "csv" / "metrics.csv")
    return metrics.dropna(subset=["train/loss"]).set_index("step")["train/loss"]


def resume_run(run_a: Path, prepared: Path, run_b: Path, common: list[str], step: int = 2) -> None:
    """Resume ``run_a``'s ``step_<step>.ckpt`` into ``run_b``: the losses and final weights must match run_a's."""
    mid_epoch = run_a / "checkpoints" / f"step_{step:07d}.ckpt"
    args = [f"data.root={prepared}", f"hydra.run.dir={run_b}", f"ckpt_path={mid_epoch}", "callbacks.preview.num_samples=0"]
    assert run_train([*args, *common]) == 0
    uninterrupted, resumed = train_losses(run_a), train_losses(run_b)
    assert list(resumed.index) == list(range(step, int(uninterrupted.index.max()) + 1))  # CSV step: before the update
    np.testing.assert_allclose(resumed.values, uninterrupted.loc[resumed.index].values, rtol=1e-4, atol=1e-6)
    a = torch.load(run_a / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(run_b / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
