"""``medsynth analyze``: reader-study statistics vs automatic metrics, and simulated ratings.

medsynth analyze ratings=CSV per_image=CSV [set_metrics=...] out_dir=DIR
medsynth analyze db=URL [study=NAME] per_image=CSV out_dir=DIR
medsynth analyze simulate per_image=CSV real_dir=DIR out=ratings.csv readers=3 skill=0.7 seed=0
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf
from scipy import stats

from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.io import load_per_image, load_ratings, load_set_metrics
from medsynth.analysis.report import render_report
from medsynth.analysis.simulation import RealismModel, simulate_ratings
from medsynth.analysis.summary import AnalysisSettings, analyze
from medsynth.config import compose_stage, format_defaults, require
from medsynth.errors import ConfigError, InputFileError
from medsynth.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text, remove_stale_temporaries

CONFIG = "analyze"

DESCRIPTION = """medsynth analyze: compare blinded expert ratings with automatic realism metrics.

  medsynth analyze ratings=CSV per_image=CSV [set_metrics=...] out_dir=DIR
  medsynth analyze db=URL [study=NAME] per_image=CSV out_dir=DIR
      -> DIR/summary.json (DESIGN.md keys), DIR/report.html (self-contained, figures embedded),
         DIR/case_realism.csv (per-case mean realism), DIR/figures/*.png
      Reader accuracy/sensitivity/specificity (exact binomial test, Clopper-Pearson), ROC AUC with a
      bootstrap CI, Cohen/Fleiss kappa, Krippendorff's alpha, ICC(2,1), intra-reader agreement,
      Mann-Whitney real vs synthetic realism, Spearman/Kendall of each per-image metric vs mean
      realism (bootstrap CIs, Holm p), and, with a `model` column plus
      set_metrics={modelA:a/metrics.json,modelB:b/metrics.json} (or a folder of <model>/metrics.json),
      agreement between the experts' ranking of the models and each set-level metric's ranking.

  medsynth analyze simulate per_image=CSV real_dir=DIR out=ratings.csv readers=3 skill=0.7 seed=0
      -> a ratings.csv from simulated readers with known skill (demos, tests); keys are the
         `simulate:` block below (readers=3 means simulate.readers=3).

Default config (every key is a key=value override):
"""


def main(argv: list[str]) -> int:
    if argv and argv[0] == "simulate":
        rest = argv[1:]
        if any(a in ("-h", "--help") for a in rest):
            print(DESCRIPTION + format_defaults(CONFIG))
            return 0
        return run_simulate(compose_stage(CONFIG, [_simulate_key(o) for o in rest]))
    if any(a in ("-h", "--help", "help") for a in argv):
        print(DESCRIPTION + format_defaults(CONFIG))
        return 0
    return run_analyze(compose_stage(CONFIG, argv))


def _simulate_key(override: str) -> str:
    """``readers=3`` -> ``simulate.readers=3`` (``scale.*`` and ``simulate.*`` pass unchanged)."""
    prefix = ""
    while override[:1] in ("+", "~"):
        prefix, override = prefix + override[0], override[1:]
    if override.startswith(("simulate.", "scale.", "scale=")):
        return prefix + override
    return f"{prefix}simulate.{override}"


def settings_from_config(cfg: DictConfig) -> AnalysisSettings:
    """AnalysisSettings from conf/analyze.yaml (validated)."""
    alpha = float(cfg.alpha)
    if not 0.0 < alpha < 1.0:
        raise ConfigError("alpha", f"must lie in (0, 1), got {alpha}")
    scale_min, scale_max = int(cfg.scale.min), int(cfg.scale.max)
    if scale_min >= scale_max:
        raise ConfigError("scale", f"min must be below max, got {scale_min}..{scale_max}")
    b = cfg.bootstrap
    if str(b.method) not in ("percentile", "basic", "BCa"):
        raise ConfigError("bootstrap.method", f"must be percentile, basic or BCa, got {b.method}")
    if not 0.0 < float(b.confidence_level) < 1.0:
        raise ConfigError("bootstrap.confidence_level", f"must lie in (0, 1), got {b.confidence_level}")
    return AnalysisSettings(
        alpha=alpha,
        scale_min=scale_min,
        scale_max=scale_max,
        min_cases=max(2, int(cfg.min_cases)),
        bootstrap=BootstrapSettings(
            int(b.n_resamples), float(b.confidence_level), str(b.method), int(b.seed)
        ),
    )


def ratings_from_study(db_url: str, study: str | None, out_dir: Path) -> Path:
    """Export the study's ratings (medsynth.study.export) to ``out_dir/ratings.csv``; return it."""
    try:
        from sqlalchemy import select

        from medsynth.study.db import read_session
        from medsynth.study.export import ratings_frame, write_ratings_csv
        from medsynth.study.models import Study
        from medsynth.study.service import StudyService
    except ImportError as err:  # pragma: no cover - the study stage ships with medsynth
        raise ConfigError("db", f"reading a study needs medsynth.study ({err})") from None
    service = StudyService(db_url)
    with read_session(service.factory) as session:
        studies = session.scalars(select(Study)).all()
        names = sorted(s.name for s in studies)
        if study is None:
            if len(studies) != 1:
                raise ConfigError(
                    "study",
                    f"{db_url} holds {len(studies)} studies ({', '.join(names) or 'none'}); pass study=NAME",
                )
            chosen = studies[0]
        else:
            chosen = next((s for s in studies if s.name == study), None)
            if chosen is None:
                raise ConfigError(
                    "study", f"no study named '{study}' in {db_url} (found: {', '.join(names) or 'none'})"
                )
        frame = ratings_frame(session, chosen.id)
    if frame.empty:
        raise ConfigError("db", f"study '{chosen.name}' has no completed ratings yet")
    return write_ratings_csv(frame, out_dir / "ratings.csv")


def run_analyze(cfg: DictConfig) -> int:
    out_dir = Path(str(require(cfg, "out_dir")))
    settings = settings_from_config(cfg)
    if cfg.ratings is None and cfg.db is None:
        raise ConfigError("ratings", "is required (pass ratings=CSV, or db=URL to read a study)")
    if cfg.ratings is not None and cfg.db is not None:
        raise ConfigError("db", "give either ratings=CSV or db=URL, not both")
    per_image = load_per_image(str(cfg.per_image)) if cfg.per_image is not None else None
    spec = cfg.set_metrics
    if isinstance(spec, DictConfig | ListConfig):
        spec = OmegaConf.to_container(spec)
        if isinstance(spec, list):
            raise ConfigError("set_metrics", "expected {model: metrics.json, ...} or a folder, got a list")
    if cfg.db is not None:
        remove_stale_temporaries(out_dir)
        ratings_path = ratings_from_study(str(cfg.db), cfg.get("study"), out_dir)
    else:
        ratings_path = Path(str(cfg.ratings))
    ratings = load_ratings(ratings_path, settings.scale_min, settings.scale_max)
    models = None
    if "model" in ratings.columns:
        models = sorted({m for m in ratings.loc[ratings["is_synthetic"] == 1, "model"] if m})
    set_metrics = load_set_metrics(spec, models)
    result = analyze(
        ratings,
        None if per_image is None else per_image.frame,
        set_metrics,
        settings,
        [] if per_image is None else per_image.notes,
    )
    try:
        page, figures = render_report(
            result,
            (settings.scale_min, settings.scale_max),
            int(cfg.report.dpi),
            int(cfg.report.max_metric_panels),
        )
        text = json.dumps(result.summary, indent=2, allow_nan=False)
    except ValueError as err:  # a NaN escaped into the summary: a bug, but never write invalid JSON
        raise RuntimeError(f"summary.json would not be valid JSON: {err}") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    with atomic_path(out_dir / "case_realism.csv") as tmp:
        result.cases.reset_index().to_csv(tmp, index=False)
    if cfg.report.save_png:
        for name, b64 in figures.items():
            atomic_write_bytes(out_dir / "figures" / f"{name}.png", base64.b64decode(b64))
    atomic_write_text(out_dir / "report.html", page)
    atomic_write_text(out_dir / "summary.json", text + "\n")
    for line in result.summary["plain_language"]:
        print(line)
    for note in result.summary["notes"]:
        print(f"note: {note}")
    print(f"summary: {out_dir / 'summary.json'}\nreport:  {out_dir / 'report.html'}")
    return 0


def _volume_case_ids(folder: str, key: str) -> list[str]:
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(key, f"'{folder}' is not a folder")
    names = sorted(
        p.name for p in path.iterdir() if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith(".")
    )
    if not names:
        raise InputFileError(path, "holds no .nii/.nii.gz volume")
    return [n[: -len(".nii.gz")] if n.endswith(".nii.gz") else n[: -len(".nii")] for n in names]


def simulation_cases(sim: DictConfig) -> pd.DataFrame:
    """Cases for :func:`simulate_ratings`: synthetic ids (+ ``quality``) and real ids."""
    if sim.per_image is None and sim.synthetic_dir is None:
        raise ConfigError("per_image", "is required (pass per_image=CSV, or synthetic_dir=DIR)")
    real_ids = _volume_case_ids(str(require(sim, "real_dir")), "real_dir")
    quality = None
    if sim.per_image is not None:
        table = load_per_image(str(sim.per_image)).frame
        synthetic_ids = list(table.index)
        if sim.quality_metric is not None:
            metric = str(sim.quality_metric)
            if metric not in table.columns:
                raise ConfigError(
                    "quality_metric",
                    f"'{metric}' is not a numeric column of {sim.per_image} ({', '.join(table.columns)})",
                )
            values = table[metric].to_numpy(dtype=float)
            # quality in [0, 1] = the metric's rank among the synthetic cases (missing values -> 0.5)
            ranks = stats.rankdata(values if sim.quality_higher_is_better else -values, nan_policy="omit")
            quality = np.where(
                np.isnan(values), 0.5, (ranks - 1) / max(1, np.count_nonzero(~np.isnan(values)) - 1)
            )
    else:
        if sim.quality_metric is not None:
            raise ConfigError("quality_metric", "needs per_image=CSV")
        synthetic_ids = _volume_case_ids(str(sim.synthetic_dir), "synthetic_dir")
    overlap = sorted(set(real_ids) & set(synthetic_ids))
    if overlap:
        raise ConfigError(
            "real_dir", f"case id '{overlap[0]}' is both real and synthetic; case ids must be unique"
        )
    cases = pd.DataFrame(
        {"case_id": synthetic_ids + real_ids, "is_synthetic": [1] * len(synthetic_ids) + [0] * len(real_ids)}
    )
    cases["quality"] = np.concatenate(
        [quality if quality is not None else np.full(len(synthetic_ids), 0.5), np.full(len(real_ids), np.nan)]
    )
    if sim.model is not None:
        cases["model"] = [str(sim.model)] * len(synthetic_ids) + [""] * len(real_ids)
    return cases


def run_simulate(cfg: DictConfig) -> int:
    sim = cfg.simulate
    out = Path(str(require(sim, "out")))
    cases = simulation_cases(sim)
    skill = OmegaConf.to_container(sim.skill) if isinstance(sim.skill, ListConfig) else float(sim.skill)
    realism = RealismModel(
        **OmegaConf.to_container(sim.realism), scale_min=int(cfg.scale.min), scale_max=int(cfg.scale.max)
    )
    ratings = simulate_ratings(
        cases,
        n_readers=int(sim.readers),
        skill=skill,
        realism_model=realism,
        repeat_fraction=float(sim.repeat_fraction),
        repeat_consistency=float(sim.repeat_consistency),
        seed=int(sim.seed),
    )
    with atomic_path(out) as tmp:
        ratings.to_csv(tmp, index=False)
    n_syn = int(cases["is_synthetic"].sum())
    print(
        f"{len(ratings)} simulated ratings ({int(sim.readers)} readers, skill {skill}, {n_syn} synthetic + "
        f"{len(cases) - n_syn} real cases, seed {int(sim.seed)}) written to {out}"
    )
    return 0
