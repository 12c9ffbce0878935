"""``medsynth utility``: run every arm x number of real subjects x seed, then score and compare the arms.

Outputs (each written to a temporary name, then renamed, after every run finished):

- ``utility.json``: ``schema`` 1; ``task``, ``score`` (``dice`` | ``auc``), ``better`` ("higher"),
  ``n_test`` and ``test_subjects``; ``results``: one entry per (arm, n_real) with ``score``,
  ``ci`` [lo, hi] (bootstrap over test subjects, seeds averaged), ``seed_sd``, ``per_seed``,
  ``n_synthetic`` (and ``hd95`` in mm for segmentation); ``gains``: per n_real, ``real+synthetic``
  and ``synthetic`` minus ``real`` with a paired bootstrap ``ci`` and ``p_gain_positive``;
  ``settings``.
- ``per_subject.csv``: arm, n_real, n_synthetic, seed, subject_id, score (+ per-class Dice, HD95).
- ``figures/learning_curve.png``: score against real subjects per arm, with intervals.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from medsynth.config import require
from medsynth.data.progress import progress_bar
from medsynth.errors import ConfigError
from medsynth.io.atomic import atomic_path, atomic_write_text
from medsynth.io.fingerprint import require_same_fingerprint
from medsynth.utility.downstream import RunScores, set_cpu_threads, train_and_score
from medsynth.utility.labelled_sets import TASKS, LabelledSet, check_same_grid, read_labelled_set
from medsynth.utility.splits import RunPlan, held_out_split, plan_runs
from medsynth.utility.statistics import bootstrap_interval, paired_gain, per_seed_scores, set_score

SCHEMA = 1
COMPARISONS = (("real+synthetic", "real"), ("synthetic", "real"))


def load_sets(cfg) -> tuple[LabelledSet, LabelledSet, LabelledSet | None]:
    """(training pool of real subjects, held-out real test set, synthetic set or None), all checked."""
    task = str(cfg.task.name)
    if task not in TASKS:
        raise ConfigError("task", f"unknown task '{task}' (choose from {', '.join(TASKS)})")
    folders = {"real_dir": str(require(cfg, "real_dir"))}
    if cfg.test_dir is not None:
        folders["test_dir"] = str(cfg.test_dir)
    if cfg.synthetic_dir is not None:
        folders["synthetic_dir"] = str(cfg.synthetic_dir)
    if len(folders) > 1:
        require_same_fingerprint(folders)
    real = read_labelled_set(folders["real_dir"], "real_dir", "real", cfg.task)
    if cfg.test_dir is not None:
        test = read_labelled_set(folders["test_dir"], "test_dir", "test", cfg.task)
        shared = sorted(set(test.subject_ids) & set(real.subject_ids))
        if shared:
            raise ConfigError("test_dir", f"subjects {shared[:3]} are also in real_dir: held-out subjects must be new")
        pool = real
    else:
        pool_ids, test_ids = held_out_split(real.subject_ids, float(cfg.test_fraction), int(cfg.split_seed))
        pool, test = real.subset(pool_ids), real.subset(test_ids)
        test.name = "test"
    synthetic = None
    if cfg.synthetic_dir is not None:
        synthetic = read_labelled_set(folders["synthetic_dir"], "synthetic_dir", "synthetic", cfg.task)
    check_same_grid([s for s in (pool, test, synthetic) if s is not None])
    if task == "classification" and len(np.unique(test.targets)) < 2:
        raise ConfigError("test_dir" if cfg.test_dir is not None else "test_fraction", "the held-out subjects hold one class only (AUC undefined)")
    return pool, test, synthetic


def run_all(cfg, pool: LabelledSet, test: LabelledSet, synthetic: LabelledSet | None, runs: list[RunPlan]) -> dict:
    """Train and score every run; returns {(arm, n_real, seed): RunScores}."""
    results: dict[tuple[str, int, int], RunScores] = {}
    set_cpu_threads(cfg)
    with progress_bar(bool(cfg.progress)) as bar:
        job = bar.add_task("utility runs", total=len(runs))
        for run in runs:
            train = []
            if run.real_ids:
                train.append(pool.subset(list(run.real_ids)))
            if run.synthetic_ids:
                train.append(synthetic.subset(list(run.synthetic_ids)))
            results[(run.arm, run.n_real, run.seed)] = train_and_score(cfg, train, test, run.seed)
            bar.advance(job)
    return results


def summarise(cfg, runs: list[RunPlan], scores: dict, test: LabelledSet) -> dict:
    """utility.json content from the per-run scores."""
    task = str(cfg.task.name)
    truth = test.targets if task == "classification" else None
    seeds = [int(s) for s in cfg.seeds]
    groups: dict[tuple[str, int], np.ndarray] = {}
    n_syn: dict[tuple[str, int], int] = {}
    for run in runs:
        n_syn.setdefault((run.arm, run.n_real), run.n_synthetic)
    for arm, n_real in n_syn:
        groups[(arm, n_real)] = np.stack([scores[(arm, n_real, s)].score for s in seeds])

    results = []
    for (arm, n_real), matrix in groups.items():
        entry = {
            "arm": arm,
            "n_real": n_real,
            "n_synthetic": n_syn[(arm, n_real)],
            "score": set_score(matrix, truth, task),
            "ci": bootstrap_interval(lambda idx, m=matrix: set_score(m, truth, task, idx), matrix.shape[1], cfg.bootstrap),
            "per_seed": per_seed_scores(matrix, truth, task),
        }
        entry["seed_sd"] = float(np.std(entry["per_seed"], ddof=1)) if len(seeds) > 1 else None
        if task == "segmentation":
            hd = np.stack([scores[(arm, n_real, s)].extra["hd95"] for s in seeds])
            with np.errstate(all="ignore"):
                entry["hd95"] = float(np.nanmean(hd)) if np.isfinite(hd).any() else None
        results.append(entry)

    gains = []
    sizes = sorted({n for arm, n in groups if arm == "real"})
    for other, baseline in COMPARISONS:
        for n_real in sizes:
            key = (other, n_real if other != "synthetic" else 0)
            if key not in groups or (baseline, n_real) not in groups:
                continue
            gain = paired_gain(groups[(baseline, n_real)], groups[key], truth, task, cfg.bootstrap)
            gains.append({"comparison": f"{other} - {baseline}", "n_real": n_real, **gain})
    return {
        "schema": SCHEMA,
        "task": task,
        "score": str(cfg.task.score),
        "better": "higher",
        "n_test": len(test),
        "test_subjects": list(test.subject_ids),
        "seeds": seeds,
        "results": results,
        "gains": gains,
        "settings": OmegaConf.to_container(cfg, resolve=True),
    }


def per_subject_frame(runs: list[RunPlan], scores: dict, test: LabelledSet) -> pd.DataFrame:
    """One row per (run, test subject)."""
    rows = []
    for run in runs:
        result = scores[(run.arm, run.n_real, run.seed)]
        for i, sid in enumerate(test.subject_ids):
            row = {
                "arm": run.arm,
                "n_real": run.n_real,
                "n_synthetic": run.n_synthetic,
                "seed": run.seed,
                "subject_id": sid,
                "score": float(result.score[i]),
            }
            for name, values in result.extra.items():
                if values.ndim == 1:
                    row[name] = float(values[i])
            rows.append(row)
    return pd.DataFrame(rows)


def format_table(summary: dict) -> str:
    """The printed table: score with its interval per arm and number of real subjects, then the gains."""
    score = summary["score"]
    level = int(round(100 * float(summary["settings"]["bootstrap"]["confidence_level"])))

    def interval(ci) -> str:
        return "[   n/a,    n/a]" if ci[0] is None else f"[{ci[0]:6.3f}, {ci[1]:6.3f}]"

    lines = [
        f"{summary['task']} on {summary['n_test']} held-out real subjects, {len(summary['seeds'])} seed(s); "
        f"{score} with {level}% bootstrap CI over test subjects",
        f"{'arm':<16}{'n_real':>7}{'n_synth':>8}  {score:>7}  {level}% CI{'':<10}{'seed sd':>8}",
    ]
    for r in summary["results"]:
        sd = "" if r["seed_sd"] is None else f"{r['seed_sd']:8.3f}"
        lines.append(f"{r['arm']:<16}{r['n_real']:>7}{r['n_synthetic']:>8}  {r['score']:7.3f}  {interval(r['ci'])}{sd}")
    if summary["gains"]:
        lines.append(f"gain (paired bootstrap over test subjects, {level}% CI):")
        for g in summary["gains"]:
            share = "" if g["p_gain_positive"] is None else f"  P(gain>0)={g['p_gain_positive']:.2f}"
            lines.append(f"  {g['comparison']:<24} n_real={g['n_real']:<4} {g['gain']:+.3f}  {interval(g['ci'])}{share}")
    return "\n".join(lines)


def run_utility(cfg) -> tuple[dict, list[Path]]:
    """The whole stage; returns (utility.json content, written files)."""
    out_dir = Path(str(require(cfg, "out_dir")))
    pool, test, synthetic = load_sets(cfg)
    runs = plan_runs(cfg, list(pool.subject_ids), list(test.subject_ids), [] if synthetic is None else list(synthetic.subject_ids))
    start = time.perf_counter()
    scores = run_all(cfg, pool, test, synthetic, runs)
    summary = summarise(cfg, runs, scores, test)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "utility.json", out_dir / "per_subject.csv"]
    atomic_write_text(files[1], per_subject_frame(runs, scores, test).to_csv(index=False))
    if bool(cfg.figures):
        from medsynth.utility.figure import learning_curve

        figure = out_dir / "figures" / "learning_curve.png"
        with atomic_path(figure) as tmp:
            learning_curve(summary, tmp)
        files.append(figure)
    atomic_write_text(files[0], json.dumps(summary, indent=2, default=float) + "\n")
    return summary, files


def main_body(cfg) -> int:
    """CLI body: run, print the table and the written files."""
    summary, files = run_utility(cfg)
    print(format_table(summary))
    print(f"wrote {', '.join(str(f) for f in files)} ({summary['seconds']} s)", file=sys.stdout)
    return 0
