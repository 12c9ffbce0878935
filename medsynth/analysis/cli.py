"""``medsynth analyze``: reader-study statistics vs automatic metrics, and simulated ratings.

medsynth analyze ratings=CSV per_image=CSV [set_metrics=...] out_dir=DIR
medsynth analyze db=URL [study=NAME] per_image=CSV out_dir=DIR
medsynth analyze simulate per_image=CSV real_dir=DIR out=ratings.csv readers=3 skill=0.7 seed=0
medsynth analyze plan readers=[4,8] cases=[60,100] auc=0.65 structure=HL
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.io import load_per_image, load_ratings, load_set_metrics
from medsynth.analysis.report import render_report
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
      MRMC (readers and cases random): OR-H for the reader-averaged AUC and accuracy, DBM beside it,
      models compared, TOST equivalence within +- mrmc.equivalence_margin; reader
      accuracy/sensitivity/specificity (exact binomial test, Clopper-Pearson; pooled intervals that
      also resample readers and cases), ROC AUC with a bootstrap CI, Cohen/Fleiss kappa,
      Krippendorff's alpha, ICC(2,1), intra-reader agreement, Mann-Whitney real vs synthetic realism, Spearman/Kendall of each per-image metric vs mean
      realism (bootstrap CIs, Holm p), and, with a `model` column plus
      set_metrics={modelA:a/metrics.json,modelB:b/metrics.json} (or a folder of <model>/metrics.json),
      agreement between the experts' ranking of the models and each set-level metric's ranking.

  medsynth analyze plan [readers=[3,5,8,12]] [cases=[50,100,200,400]] [auc=0.65] [structure=HL | pilot=CSV]
      -> prints readers x cases -> power tables: OR-H power to show readers tell synthetic from real at
         the expected AUC, and power to show equivalence within +- mrmc.equivalence_margin; keys are the
         `plan:` block below (readers=[4,8] means plan.readers=[4,8]).

  medsynth analyze simulate per_image=CSV real_dir=DIR out=ratings.csv readers=3 skill=0.7 seed=0
      -> a ratings.csv from simulated readers with known skill (demos, tests), every row marked
         simulated=1; the same reader model as `medsynth study simulate` (reader.* keys); keys are the
         `simulate:` block below (readers=3 means simulate.readers=3).

Default config (every key is a key=value override):
"""


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("simulate", "plan"):
        command, rest = argv[0], argv[1:]
        if any(a in ("-h", "--help") for a in rest):
            print(DESCRIPTION + format_defaults(CONFIG))
            return 0
        cfg = compose_stage(CONFIG, [_block_key(command, o) for o in rest])
        return run_simulate(cfg) if command == "simulate" else run_plan(cfg)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(DESCRIPTION + format_defaults(CONFIG))
        return 0
    return run_analyze(compose_stage(CONFIG, argv))


def _block_key(block: str, override: str) -> str:
    """``readers=3`` -> ``<block>.readers=3`` (keys of other blocks, ``scale.*`` and ``mrmc.*`` pass unchanged)."""
    prefix = ""
    while override[:1] in ("+", "~"):
        prefix, override = prefix + override[0], override[1:]
    if override.startswith((f"{block}.", "scale.", "scale=", "mrmc.", "alpha=")):
        return prefix + override
    return f"{prefix}{block}.{override}"


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
    covariance = str(cfg.mrmc.covariance)
    if covariance not in ("DeLong", "jackknife"):
        raise ConfigError("mrmc.covariance", f"must be DeLong or jackknife, got {covariance}")
    margin = float(cfg.mrmc.equivalence_margin)
    if not 0.0 < margin < 0.5:
        raise ConfigError("mrmc.equivalence_margin", f"must lie in (0, 0.5) (AUC units), got {margin}")
    return AnalysisSettings(
        alpha=alpha,
        scale_min=scale_min,
        scale_max=scale_max,
        min_cases=max(2, int(cfg.min_cases)),
        bootstrap=BootstrapSettings(
            int(b.n_resamples), float(b.confidence_level), str(b.method), int(b.seed)
        ),
        mrmc_covariance=covariance,
        equivalence_margin=margin,
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
    sections: tuple[str, ...] = ()
    if cfg.get("utility") is not None:  # medsynth utility's result beside experts and metrics
        from medsynth.analysis.utility_section import load_utility, utility_section

        utility = load_utility(str(cfg.utility))
        result.summary["utility"] = utility
        sections = (utility_section(utility, int(cfg.report.dpi)),)
    try:
        page, figures = render_report(
            result,
            (settings.scale_min, settings.scale_max),
            int(cfg.report.dpi),
            int(cfg.report.max_metric_panels),
            sections,
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
    from medsynth.data.label_maps import paired_label_files

    labels = paired_label_files(path)  # a paired sample's label maps are not cases
    names = sorted(
        p.name
        for p in path.iterdir()
        if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith(".") and p.name not in labels
    )
    if not names:
        raise InputFileError(path, "holds no .nii/.nii.gz volume")
    return [n[: -len(".nii.gz")] if n.endswith(".nii.gz") else n[: -len(".nii")] for n in names]


def simulation_cases(sim: DictConfig) -> pd.DataFrame:
    """Cases for :func:`medsynth.study.simulate.simulate_ratings`: synthetic ids then real ids."""
    if sim.per_image is None and sim.synthetic_dir is None:
        raise ConfigError("per_image", "is required (pass per_image=CSV, or synthetic_dir=DIR)")
    real_ids = _volume_case_ids(str(require(sim, "real_dir")), "real_dir")
    if sim.per_image is not None:
        synthetic_ids = list(load_per_image(str(sim.per_image)).frame.index)
    else:
        synthetic_ids = _volume_case_ids(str(sim.synthetic_dir), "synthetic_dir")
    overlap = sorted(set(real_ids) & set(synthetic_ids))
    if overlap:
        raise ConfigError(
            "real_dir", f"case id '{overlap[0]}' is both real and synthetic; case ids must be unique"
        )
    cases = pd.DataFrame(
        {"case_id": synthetic_ids + real_ids, "is_synthetic": [1] * len(synthetic_ids) + [0] * len(real_ids)}
    )
    if sim.model is not None:
        cases["model"] = [str(sim.model)] * len(synthetic_ids) + [""] * len(real_ids)
    return cases


def run_simulate(cfg: DictConfig) -> int:
    """``medsynth analyze simulate``: the study's reader simulator, written straight to a ratings.csv."""
    from medsynth.study.simulate import generator_values, latent_realism, reader_models, simulate_ratings

    sim = cfg.simulate
    out = Path(str(require(sim, "out")))
    cases = simulation_cases(sim)
    skill = OmegaConf.to_container(sim.skill) if isinstance(sim.skill, ListConfig) else float(sim.skill)
    models = reader_models(skill, int(sim.readers), OmegaConf.to_container(sim.reader))
    synthetic = cases.loc[cases["is_synthetic"] == 1, "case_id"].tolist()
    values = None
    if sim.latent_column is not None:
        if sim.manifest is None:
            raise ConfigError("manifest", "is required with latent_column (the synthetic set's manifest.csv)")
        values = generator_values(str(sim.manifest), str(sim.latent_column))
    latent = latent_realism(synthetic, int(sim.seed), values, float(sim.latent_weight))
    ratings = simulate_ratings(cases, models, float(sim.repeat_fraction), int(sim.seed), latent)
    with atomic_path(out) as tmp:
        ratings.to_csv(tmp, index=False)
    n_syn = len(synthetic)
    print(
        f"{len(ratings)} simulated ratings (column simulated=1; {int(sim.readers)} readers, skill {skill}, "
        f"{n_syn} synthetic + {len(cases) - n_syn} real cases, seed {int(sim.seed)}) written to {out}"
    )
    return 0


def _int_list(value: object, key: str, minimum: int) -> list[int]:
    items = OmegaConf.to_container(value) if isinstance(value, ListConfig) else [value]
    try:
        numbers = [int(v) for v in items]
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a list of integers, got {items}") from None
    if not numbers or min(numbers) < minimum:
        raise ConfigError(key, f"every value must be at least {minimum}, got {numbers}")
    return numbers


def run_plan(cfg: DictConfig) -> int:
    """``medsynth analyze plan``: print readers x cases -> power tables (and write them as CSV)."""
    from medsynth.analysis.plan import (
        analytic_power,
        format_table,
        pilot_components,
        power_table,
        simulated_power,
    )
    from medsynth.analysis.roe_metz import STRUCTURES

    plan = cfg.plan
    settings = settings_from_config(cfg)
    readers = _int_list(plan.readers, "plan.readers", 2)
    cases = _int_list(plan.cases, "plan.cases", 4)
    auc, null_auc = float(plan.auc), float(plan.equivalence_auc)
    if not 0.5 < auc < 1.0:
        raise ConfigError("plan.auc", f"must lie in (0.5, 1), got {auc}")
    if not 0.0 < null_auc < 1.0:
        raise ConfigError("plan.equivalence_auc", f"must lie in (0, 1), got {null_auc}")
    alpha, margin = settings.alpha, settings.equivalence_margin
    if plan.pilot is not None:
        components = pilot_components(load_ratings(str(plan.pilot), settings.scale_min, settings.scale_max))
        source = (
            f"OR variance components from the pilot {plan.pilot} ({components.n_readers} readers x "
            f"{components.n_cases} cases, AUC {components.auc:.3f}: reader variance {components.var_r:.2e}, "
            f"error variance {components.var_error:.2e}, cov2 {components.cov2:.2e}); analytic power (Hillis & Obuchowski 2011)"
        )

        def power(r: int, c: int) -> tuple[float, float]:
            return analytic_power(components, r, c, auc, alpha, margin, null_auc)
    else:
        name = str(plan.structure)
        if name not in STRUCTURES:
            raise ConfigError("plan.structure", f"must be one of {', '.join(STRUCTURES)}, got {name}")
        studies = int(plan.studies)
        if studies < 10:
            raise ConfigError("plan.studies", f"must be at least 10, got {studies}")
        rng = np.random.default_rng(int(plan.seed))
        source = f"Roe-Metz variance structure {name} (Roe & Metz 1997; Hillis 2018), {studies} simulated studies per cell"

        def power(r: int, c: int) -> tuple[float, float]:
            return simulated_power(STRUCTURES[name], r, c, auc, alpha, margin, studies, rng, null_auc)

    detect, equivalent = power_table(readers, cases, power)
    print(f"Study sizing: {source}; alpha {alpha}; cases half synthetic, every reader reads every case.\n")
    print(f"Power to show that readers tell synthetic from real (OR-H, H0: AUC = 0.5) when the AUC is {auc}:")
    print(format_table(detect))
    print(f"\nPower to show equivalence (TOST, AUC within 0.5 +- {margin}) when the AUC is {null_auc}:")
    print(format_table(equivalent))
    if plan.out is not None:
        table = detect.stack().rename("power_detect").to_frame().join(equivalent.stack().rename("power_equivalence"))
        with atomic_path(Path(str(plan.out))) as tmp:
            table.reset_index().to_csv(tmp, index=False)
        print(f"\ntables: {plan.out}")
    return 0
