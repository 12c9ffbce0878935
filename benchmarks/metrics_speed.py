"""Time ``medsynth evaluate`` on N real vs N synthetic phantoms (default 100 vs 100 at 64^3).

    .venv/bin/python benchmarks/metrics_speed.py [--n 100] [--size 64] [--workers 2] [--frd-version v1]

Reports: radiomics extraction per set with an empty cache, then a full ``evaluate`` with both sets
cached (all the other metrics, figures and I/O). From these: a first run costs all three; a new
synthetic set against an already featurised real set costs the synthetic extraction + the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from medsynth.config import compose_stage
from medsynth.data.phantom import make_phantom
from medsynth.metrics.evaluation import evaluate, radiomics_settings
from medsynth.metrics.radiomics_features import extract_features


def write_set(folder: Path, prefix: str, n: int, size: int, seed: int) -> list[Path]:
    """Phantoms mapped to the model space [-1, 1], with a preprocessing fingerprint (as prepare writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        volume, affine, _ = make_phantom((size,) * 3, rng)
        files.append(folder / f"{prefix}_{i:05d}.nii.gz")
        if not files[-1].exists():  # a kept --workdir is reused as is
            nib.save(nib.Nifti1Image(volume * 2.0 - 1.0, affine), files[-1])
    spacing = [float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))]
    fingerprint = {
        "shape": [size] * 3,
        "spacing": spacing,
        "orientation": "RAS",
        "intensity": {"mode": "none", "unit": "a.u.", "low": 0.0, "high": 1.0, "clip": True},
        "crop_foreground": {"enabled": False, "threshold": 0.1, "margin_mm": 0.0},
    }
    (folder / "preprocessing.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100, help="volumes per set")
    parser.add_argument("--size", type=int, default=64, help="cube side in voxels")
    parser.add_argument("--workers", type=int, default=2, help="radiomics worker processes")
    parser.add_argument("--frd-version", default="v1", choices=["v0", "v1"])
    parser.add_argument("--workdir", default=None, help="keep data and cache here (default: a temp dir)")
    args = parser.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="medsynth-metrics-bench-"))
    real = write_set(root / "real", "real", args.n, args.size, 1)
    synthetic = write_set(root / "synthetic", "sample", args.n, args.size, 2)
    cache = root / "cache"
    overrides = [
        f"real_dir={root / 'real'}",
        f"synthetic_dir={root / 'synthetic'}",
        f"out_dir={root / 'out'}",
        f"radiomics.cache_dir={cache}",
        f"radiomics.frd_version={args.frd_version}",
        f"num_workers={args.workers}",
    ]
    cfg = compose_stage("evaluate", overrides)
    settings = radiomics_settings(cfg)
    print(f"{args.n} vs {args.n} volumes at {args.size}^3, frd {args.frd_version}, {args.workers} workers, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    rows = {}
    for name, files in (("real", real), ("synthetic", synthetic)):
        start = time.perf_counter()
        extract_features(files, settings, cache_dir=cache, num_workers=args.workers, progress=True)
        rows[name] = time.perf_counter() - start
        print(f"radiomics, empty cache ({name}, {len(files)} volumes): {rows[name]:.1f} s "
              f"({rows[name] / len(files):.2f} s/volume wall)", flush=True)  # fmt: skip
    start = time.perf_counter()
    result = evaluate(cfg)
    rows["rest"] = time.perf_counter() - start
    print(f"evaluate with both sets cached (everything but radiomics): {rows['rest']:.1f} s", flush=True)
    print(f"first run (nothing cached): {rows['real'] + rows['synthetic'] + rows['rest']:.1f} s")
    print(f"new synthetic set vs cached real set: {rows['synthetic'] + rows['rest']:.1f} s")
    print(f"load average at the end {os.getloadavg()[0]:.1f}; metrics: "
          + ", ".join(f"{k}={result.metrics['metrics'][k]['value']:.4g}" for k in ("frd_d2", "mmd", "kid")))  # fmt: skip


if __name__ == "__main__":
    main()
