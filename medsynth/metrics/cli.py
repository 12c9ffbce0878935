"""``medsynth evaluate real_dir=DIR synthetic_dir=DIR out_dir=DIR [train_dir=DIR] [key=value ...]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

DESCRIPTION = """medsynth evaluate: score synthetic volumes against real ones.

usage: medsynth evaluate real_dir=DIR synthetic_dir=DIR out_dir=DIR [train_dir=DIR] [prepare_inputs=true]
                         [key=value ...]

Every set must carry the same preprocessing fingerprint (preprocessing.json from medsynth data prepare
or medsynth sample); otherwise evaluate refuses, naming the set and the field. prepare_inputs=true first
prepares real/train folders of raw scans (no preprocessing.json) with the synthetic set's fingerprint.

Writes out_dir/metrics.json (schema 2: per metric value, better = lower|higher|target, target, ci from a
bootstrap over volumes, floor = the same metric between two halves of the real set; metrics frd (= frd-score's
value, ln d^2), frd_paper (ln d), frd_d2 (d^2), mmd, kid, precision, recall, density, coverage,
ms_ssim_real, ms_ssim_synthetic, fid3d/kid3d with feature_extractor.weights=PATH), out_dir/per_image.csv
(case_id = synthetic file name without extension, then per-image scores; with train_dir the nearest
training file, its similarity and the memorised flag), out_dir/nearest_neighbours.csv,
out_dir/feature_shifts.csv (per radiomics feature: shift of the synthetic mean in real SDs, SD ratio, share
of FRD d^2; the three largest are printed) and out_dir/figures/*.png. Radiomics features are cached by
file content and settings (radiomics.cache_dir).
See docs/evaluation.md for what each metric means.

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
    m = result.metrics["metrics"]
    shown = ("frd", "frd_d2", "kid", "precision", "recall", "coverage")
    summary = ", ".join(f"{k}={_fmt(m[k]['value'])} (real vs real {_fmt(m[k]['floor'])})" for k in shown)
    n = result.metrics["settings"]
    print(f"evaluated {n['n_synthetic']} synthetic vs {n['n_real']} real volumes: {summary}")
    print(f"wrote {', '.join(str(p) for p in result.files)}")
    return 0


def _fmt(value: float | None) -> str:
    return "null" if value is None else f"{value:.4g}"
