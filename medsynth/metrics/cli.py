"""``medsynth evaluate real_dir=DIR synthetic_dir=DIR out_dir=DIR [train_dir=DIR] [key=value ...]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

DESCRIPTION = """medsynth evaluate: score synthetic volumes against real ones.

usage: medsynth evaluate real_dir=DIR synthetic_dir=DIR out_dir=DIR [train_dir=DIR] [key=value ...]

Writes out_dir/metrics.json (set level: frd, mmd, ms_ssim_real, ms_ssim_synthetic, precision, recall,
density, coverage, kid, fid3d/kid3d with feature_extractor.weights=PATH, n_real, n_synthetic, settings),
out_dir/per_image.csv (case_id = synthetic file name without extension, then numeric columns),
out_dir/nearest_neighbours.csv and out_dir/figures/*.png. Radiomics features are cached by file
content and settings (radiomics.cache_dir), so a real set is featurised once.
See docs/evaluation.md for what each metric means and which direction is better.

defaults (conf/evaluate.yaml; override any key as key=value):
"""


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if any(a in ("-h", "--help", "help") for a in args):
        from medsynth.config import format_defaults

        print(DESCRIPTION + format_defaults("evaluate"))
        return 0
    from medsynth.config import compose_stage
    from medsynth.io.slurm_array import array_role
    from medsynth.metrics.evaluation import evaluate

    cfg = compose_stage("evaluate", args)
    role = array_role(cfg)  # a SLURM array task, its finishing step, or None
    if role is not None and not role.finishing:
        from medsynth.metrics.array import run_task

        done = run_task(cfg, role)
        print(f"medsynth evaluate: array task {role.task} of {role.tasks}: radiomics of {done['files']} "
              f"file(s) cached; record {done['record']} (array.finish=true computes the metrics)")
        return 0
    if role is not None:
        from medsynth.metrics.array import finishing_config

        cfg = finishing_config(cfg, role)
    result = evaluate(cfg)
    for note in result.notes:
        print(f"medsynth evaluate: {note}", file=sys.stderr)
    m = result.metrics
    summary = ", ".join(f"{k}={m[k]:.4g}" for k in ("frd", "mmd", "kid", "precision", "recall", "coverage"))
    print(f"evaluated {m['n_synthetic']} synthetic vs {m['n_real']} real volumes: {summary}")
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0
