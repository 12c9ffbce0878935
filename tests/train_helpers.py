"""Test fixtures for training: a small prepared dataset in the contract's layout (phantoms in [-1, 1])."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

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
