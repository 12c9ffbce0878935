"""The simulated reader: one generative model behind ``medsynth study simulate`` (answers go into a
study database through the service) and ``medsynth analyze simulate`` (writes a ratings.csv).

Every simulated rating is marked: readers are stored with ``simulated = 1`` in the database and
the ratings.csv gets ``simulated = 1``, so the analysis report carries a banner.

The model, for reader r (skill s_r, realism offset b_r ~ N(0, reader_bias_sd)) and case c:

- latent realism z_c ~ N(0, 1) for each synthetic case, drawn once per case (shared by every
  reader) from the seed and, optionally, from the synthetic set's own generation parameters
  (``latent_column`` of its manifest.csv, e.g. ``steps`` or ``guidance_scale``, standardised) plus
  noise. It is never an automatic metric's value, so any correlation that ``medsynth analyze`` finds
  between a metric and the simulated realism is not built into the simulation;
- a signal-detection decision variable X = d_r (is_synthetic - 1/2) - difficulty z_c + N(0, 1)
  (z_c = 0 for real cases), d_r = 2 Phi^-1(s_r): the call is "synthetic" when X > 0, so a
  reader is right with probability s_r on a case of median realism (realistic synthetic cases fool
  readers more often), and with s_r = 0.5 the calls and confidences carry no information;
- confidence ~ round(confidence_intercept + confidence_slope abs(X) + N(0, confidence_sd)), 1..5;
- realism ~ round(N(mu_c + b_r - call_shift (called_synthetic - 0.5), realism_sd)), clipped, with
  mu_c = realism_real for real cases and realism_synthetic + latent_effect z_c for synthetic ones;
- a repeated showing copies the first answer with probability ``repeat_consistency``, else the
  reader answers afresh.

Likert means are on a 1-5 scale and are rescaled to a question's range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy.special import ndtri

from medsynth.errors import ConfigError, InputFileError


@dataclass(frozen=True)
class ReaderModel:
    """How one simulated reader answers (conf/reader_model/default.yaml; Likert units 1-5)."""

    skill: float = 0.7
    confidence_intercept: float = 1.5
    confidence_slope: float = 1.5
    confidence_sd: float = 0.5
    realism_real: float = 4.0
    realism_synthetic: float = 3.0
    latent_effect: float = 0.8
    difficulty: float = 0.5
    realism_sd: float = 0.7
    reader_bias_sd: float = 0.3
    call_shift: float = 0.5
    repeat_consistency: float = 0.8
    seconds_median: float = 25.0
    seconds_sigma: float = 0.4


@dataclass(frozen=True)
class Answer:
    """One simulated answer: the call, confidence and realism on a 1-5 scale."""

    called_synthetic: int
    confidence: int
    realism: int


def reader_models(skill: float | Sequence[float], n_readers: int, params: Mapping | None = None) -> list[ReaderModel]:
    """``n_readers`` models sharing ``params`` (the ReaderModel fields) with one skill each.

    Raises:
        ConfigError: a skill list of the wrong length, a skill outside [0, 1], an unknown field.
    """
    if n_readers < 1:
        raise ConfigError("readers", f"must be at least 1, got {n_readers}")
    skills = [float(s) for s in skill] if isinstance(skill, Sequence) else [float(skill)] * n_readers
    if len(skills) != n_readers:
        raise ConfigError("skill", f"gives {len(skills)} values for {n_readers} readers")
    if any(not 0.0 <= s <= 1.0 for s in skills):
        raise ConfigError("skill", f"every skill must be a probability in [0, 1], got {skills}")
    params = dict(params or {})
    known = {f.name for f in fields(ReaderModel)} - {"skill"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"reader.{unknown[0]}", f"is not a reader-model parameter ({', '.join(sorted(known))})")
    if not 0.0 <= float(params.get("repeat_consistency", 0.8)) <= 1.0:
        raise ConfigError("reader.repeat_consistency", "must lie in [0, 1]")
    return [ReaderModel(skill=s, **{k: float(v) for k, v in params.items()}) for s in skills]


def latent_realism(
    case_ids: Sequence[str],
    seed: int,
    generator_values: Mapping[str, float] | None = None,
    generator_weight: float = 0.5,
) -> dict[str, float]:
    """case_id -> latent realism z (mean 0, SD 1) of each synthetic case, shared by every reader.

    Without ``generator_values``: z ~ N(0, 1) per case. With them (a generation parameter per case):
    z = w * standardised(value) + sqrt(1 - w^2) * noise, so the generator's settings drive part of the
    realism, the rest is case-to-case variation. Never derived from an automatic metric.
    """
    ids = sorted(str(c) for c in case_ids)
    rng = np.random.default_rng([seed, 0x1A7E])
    noise = rng.standard_normal(len(ids))
    if not generator_values:
        return dict(zip(ids, noise.tolist(), strict=True))
    values = np.array([generator_values.get(c, np.nan) for c in ids], dtype=float)
    spread = np.nanstd(values)
    standard = np.where(np.isnan(values), 0.0, (values - np.nanmean(values)) / spread) if spread > 0 else 0.0 * values
    w = float(np.clip(generator_weight, 0.0, 1.0))
    return dict(zip(ids, (w * standard + np.sqrt(1 - w * w) * noise).tolist(), strict=True))


def generator_values(manifest: str | Path, column: str) -> dict[str, float]:
    """case_id (file name without .nii/.nii.gz) -> a numeric generation parameter from manifest.csv."""
    path = Path(manifest)
    if not path.is_file():
        raise InputFileError(path, "manifest.csv not found")
    frame = pd.read_csv(path)
    for needed in ("file", column):
        if needed not in frame.columns:
            raise InputFileError(path, f"has no column '{needed}'")
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().all():
        raise InputFileError(path, f"column '{column}' holds no numbers")
    ids = frame["file"].astype(str).str.replace(r"\.nii(\.gz)?$", "", regex=True).map(lambda p: Path(p).name)
    return dict(zip(ids, values.astype(float), strict=True))


def _likert(rng: np.random.Generator, mean: float, sd: float) -> int:
    return int(np.clip(np.rint(rng.normal(mean, sd)), 1, 5))


def answer(model: ReaderModel, is_synthetic: bool, latent: float, bias: float, rng: np.random.Generator) -> Answer:
    """One first-showing answer of ``model`` to one case (see the module docstring)."""
    d_prime = 2.0 * float(ndtri(np.clip(model.skill, 1e-6, 1 - 1e-6)))
    x = d_prime * (float(is_synthetic) - 0.5) - (model.difficulty * latent if is_synthetic else 0.0) + rng.normal()
    called = int(x > 0)
    confidence = _likert(rng, model.confidence_intercept + model.confidence_slope * abs(x), model.confidence_sd)
    mu = model.realism_synthetic + model.latent_effect * latent if is_synthetic else model.realism_real
    realism = _likert(rng, mu + bias - model.call_shift * (called - 0.5), model.realism_sd)
    return Answer(called, confidence, realism)


def simulate_ratings(
    cases: pd.DataFrame,
    models: Sequence[ReaderModel],
    repeat_fraction: float = 0.1,
    seed: int = 0,
    latent: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """A ratings.csv table (DESIGN.md) from simulated readers, ``simulated`` = 1 on every row.

    Args:
        cases: ``case_id``, ``is_synthetic`` (0/1), optional ``model`` (copied to the output).
        models: one :class:`ReaderModel` per reader (``reader_01`` ...); each rates every case.
        repeat_fraction: share of each reader's cases shown a second time (repeat = 1).
        seed: the table is a function of (inputs, seed).
        latent: case_id -> latent realism of synthetic cases (default :func:`latent_realism`).

    Returns:
        reader_id, case_id, is_synthetic, called_synthetic, confidence, realism, repeat, seconds,
        simulated (+ model), rows in each reader's showing order.
    """
    if cases.empty or not {"case_id", "is_synthetic"} <= set(cases.columns):
        raise ConfigError("cases", "need at least one case with columns case_id and is_synthetic")
    if not 0.0 <= repeat_fraction <= 1.0:
        raise ConfigError("repeat_fraction", f"must lie in [0, 1], got {repeat_fraction}")
    ids = cases["case_id"].astype(str).to_numpy()
    truth = cases["is_synthetic"].astype(int).to_numpy()
    latent = dict(latent) if latent is not None else latent_realism(ids[truth == 1], seed)
    z = np.array([latent.get(c, 0.0) if t else 0.0 for c, t in zip(ids, truth, strict=True)])
    rng = np.random.default_rng(seed)
    rows = []
    for r, model in enumerate(models):
        reader = f"reader_{r + 1:02d}"
        bias = rng.normal(0.0, model.reader_bias_sd)
        first: dict[int, Answer] = {}
        for i in rng.permutation(len(ids)):
            first[i] = answer(model, bool(truth[i]), z[i], bias, rng)
            rows.append((reader, i, first[i], 0, model))
        for i in rng.choice(len(ids), size=int(round(repeat_fraction * len(ids))), replace=False):
            same = rng.random() < model.repeat_consistency
            rows.append((reader, i, first[i] if same else answer(model, bool(truth[i]), z[i], bias, rng), 1, model))
    frame = pd.DataFrame(
        {
            "reader_id": [row[0] for row in rows],
            "case_id": ids[[row[1] for row in rows]],
            "is_synthetic": truth[[row[1] for row in rows]],
            "called_synthetic": [row[2].called_synthetic for row in rows],
            "confidence": [row[2].confidence for row in rows],
            "realism": [row[2].realism for row in rows],
            "repeat": [row[3] for row in rows],
            "seconds": [round(row[4].seconds_median * float(np.exp(rng.normal(0.0, row[4].seconds_sigma))), 1) for row in rows],
            "simulated": 1,
        }
    )
    if "model" in cases.columns:
        frame["model"] = cases["model"].fillna("").astype(str).to_numpy()[[row[1] for row in rows]]
    return frame


def _scaled(value: float, lo: int, hi: int) -> float:
    return lo + (value - 1.0) * (hi - lo) / 4.0


def study_answers(questions: Sequence[Mapping], first: Answer, rng: np.random.Generator) -> dict:
    """Map an :class:`Answer` onto a study's questions (rescaled to each Likert range); the other
    Likert criteria (slice consistency, anatomy) follow realism with noise, choices are random."""
    out: dict = {}
    for q in questions:
        key, qtype = q["key"], q["type"]
        if qtype == "bool":
            out[key] = bool(first.called_synthetic) if key == "called_synthetic" else bool(rng.random() < 0.5)
        elif qtype == "likert":
            lo, hi = int(q["min"]), int(q["max"])
            if key in ("confidence", "realism"):
                value = float(getattr(first, key))
            else:
                value = float(np.clip(np.rint(first.realism + rng.normal(0.0, 0.6)), 1, 5))
            out[key] = int(np.clip(np.rint(_scaled(value, lo, hi)), lo, hi))
        elif qtype == "choice":
            out[key] = str(rng.choice(q["options"]))
        elif q.get("required"):
            out[key] = "simulated"
    return out


def simulate_readers(
    service,
    study: str,
    models: Sequence[ReaderModel],
    seed: int = 0,
    name_prefix: str = "sim_reader",
    latent: Mapping[str, float] | None = None,
    progress: bool = True,
) -> list[str]:
    """Add ``len(models)`` simulated readers to ``study`` and answer their whole reading order through
    :meth:`StudyService.submit` (validated and stored like a person's answers); returns their names."""
    from rich.progress import track
    from sqlalchemy import select

    from medsynth.study.assignment import reader_seed
    from medsynth.study.db import read_session
    from medsynth.study.models import Assignment, Case, Study

    if latent is None:  # one latent realism per synthetic case of the study, shared by every reader
        with read_session(service.factory) as s:
            keys = s.scalars(
                select(Case.case_key).join(Study, Study.id == Case.study_id).where(Study.name == study, Case.is_synthetic)
            ).all()
        latent = latent_realism(keys, seed)
    names = []
    for i, model in enumerate(models):
        name = f"{name_prefix}_{i + 1:02d}"
        session = service.login(service.add_reader(study, name, "reader", simulated=True))
        questions = service.questions(session)
        rng = np.random.default_rng(reader_seed(seed, name))
        bias = rng.normal(0.0, model.reader_bias_sd)
        with read_session(service.factory) as s:
            shown = {
                a.position: (c.case_key, bool(c.is_synthetic), a.repeat)
                for a, c in s.execute(
                    select(Assignment, Case)
                    .join(Case, Case.id == Assignment.case_id)
                    .where(Assignment.reader_id == session.reader_id)
                )
            }
        first: dict[str, Answer] = {}
        for position in track(sorted(shown), description=f"simulating {name}", disable=not progress, transient=True):
            key, is_synthetic, repeat = shown[position]
            if repeat and key in first and rng.random() < model.repeat_consistency:
                given = first[key]
            else:
                given = answer(model, is_synthetic, latent.get(key, 0.0) if is_synthetic else 0.0, bias, rng)
                first.setdefault(key, given)
            seconds = float(model.seconds_median * np.exp(rng.normal(0.0, model.seconds_sigma)))
            service.submit(session, position, study_answers(questions, given, rng), seconds=seconds)
        names.append(name)
    return names


def simulate_from_config(cfg: DictConfig) -> str:
    """``medsynth study simulate``: returns a one-line summary."""
    from medsynth.config import require
    from medsynth.study.service import StudyService

    sim = OmegaConf.to_container(cfg.simulate, resolve=True)
    models = reader_models(sim["skill"], int(sim["n_readers"]), sim["reader"])
    latent = None
    if sim.get("latent_column"):
        if not sim.get("manifest"):
            raise ConfigError("simulate.manifest", "is required with simulate.latent_column (the synthetic set's manifest.csv)")
        values = generator_values(sim["manifest"], str(sim["latent_column"]))
        latent = latent_realism(list(values), int(cfg.seed), values, float(sim["latent_weight"]))
    service = StudyService(str(require(cfg, "db")))
    names = simulate_readers(service, str(cfg.study), models, int(cfg.seed), str(sim["name_prefix"]), latent)
    return (
        f"{len(names)} simulated readers (marked simulated) answered study '{cfg.study}': {', '.join(names)} "
        f"(skills {[m.skill for m in models]})"
    )
