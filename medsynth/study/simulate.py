"""Simulated readers with known skill, answering a study through the service (seeded).

Each simulated reader calls a case correctly with probability ``skill``; confidence is higher
when the call is right (``confidence_correct`` vs ``confidence_wrong``); realism is lower for
synthetic cases and, with a per_image.csv, rises with the rank of a quality column; the other
Likert questions follow realism with noise. A repeated showing re-uses the first answers, each
changed with probability ``repeat_noise``. Answers go through :meth:`StudyService.submit`, so
they are validated and stored exactly like a person's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.progress import track
from sqlalchemy import select

from medsynth.errors import ConfigError, InputFileError
from medsynth.study.assignment import reader_seed
from medsynth.study.db import read_session
from medsynth.study.models import Assignment, Case
from medsynth.study.service import StudyService


@dataclass(frozen=True)
class ReaderModel:
    """How one simulated reader answers (see conf/study.yaml ``simulate``)."""

    skill: float
    confidence_correct: float = 3.8
    confidence_wrong: float = 2.4
    confidence_sd: float = 0.8
    realism_real: float = 4.0
    realism_synthetic: float = 2.7
    realism_sd: float = 0.7
    quality_effect: float = 1.2
    repeat_noise: float = 0.15
    seconds_median: float = 25.0


def quality_ranks(per_image: str | Path, column: str, higher_is_better: bool) -> dict[str, float]:
    """case_id -> rank of ``column`` scaled to [0, 1] (1 = most realistic)."""
    import pandas as pd

    path = Path(per_image)
    if not path.is_file():
        raise InputFileError(path, "per_image.csv not found")
    frame = pd.read_csv(path)
    for needed in ("case_id", column):
        if needed not in frame:
            raise InputFileError(path, f"has no column '{needed}'")
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().all():
        raise InputFileError(path, f"column '{column}' holds no numbers")
    ranks = values.rank(pct=True, ascending=higher_is_better).fillna(0.5)
    return dict(zip(frame["case_id"].astype(str), ranks.astype(float), strict=True))


def _likert(rng: np.random.Generator, mean: float, sd: float, lo: int, hi: int) -> int:
    return int(np.clip(np.rint(rng.normal(mean, sd)), lo, hi))


def answer_case(
    model: ReaderModel,
    questions: Sequence[Mapping],
    is_synthetic: bool,
    quality: float,
    rng: np.random.Generator,
) -> dict:
    """One first-showing answer set for every question of the study."""
    correct = rng.random() < model.skill
    called_synthetic = is_synthetic if correct else not is_synthetic
    if is_synthetic:
        realism_mean = model.realism_synthetic + model.quality_effect * (quality - 0.5) * 2.0
    else:
        realism_mean = model.realism_real
    answers: dict = {}
    for q in questions:
        key, qtype = q["key"], q["type"]
        if qtype == "bool":
            answers[key] = bool(called_synthetic) if key == "called_synthetic" else bool(rng.random() < 0.5)
        elif qtype == "likert":
            lo, hi = int(q["min"]), int(q["max"])
            scale = (hi - lo) / 4.0  # the model's means are on a 1-5 scale
            if key == "confidence":
                mean = model.confidence_correct if correct else model.confidence_wrong
                answers[key] = _likert(rng, lo + (mean - 1) * scale, model.confidence_sd * scale, lo, hi)
            else:  # realism and the realism-like criteria (slice consistency, anatomy)
                sd = model.realism_sd if key == "realism" else model.realism_sd * 1.3
                answers[key] = _likert(rng, lo + (realism_mean - 1) * scale, sd * scale, lo, hi)
        elif qtype == "choice":
            answers[key] = str(rng.choice(q["options"]))
        elif q.get("required"):
            answers[key] = "simulated"
    return answers


def perturb(answers: Mapping, questions: Sequence[Mapping], noise: float, rng: np.random.Generator) -> dict:
    """A repeated showing: the same answers, each changed with probability ``noise``."""
    out = dict(answers)
    for q in questions:
        key = q["key"]
        if key not in out or rng.random() >= noise:
            continue
        if q["type"] == "bool":
            out[key] = not out[key]
        elif q["type"] == "likert":
            out[key] = int(np.clip(out[key] + rng.choice([-1, 1]), q["min"], q["max"]))
        elif q["type"] == "choice":
            out[key] = str(rng.choice(q["options"]))
    return out


def simulate_readers(
    service: StudyService,
    study: str,
    models: Sequence[ReaderModel],
    seed: int = 0,
    name_prefix: str = "sim_reader",
    quality: Mapping[str, float] | None = None,
    progress: bool = True,
) -> list[str]:
    """Add ``len(models)`` readers and answer their whole reading order; returns their names."""
    names = []
    for i, model in enumerate(models):
        name = f"{name_prefix}_{i + 1:02d}"
        token = service.add_reader(study, name, "reader")
        session = service.login(token)
        questions = service.questions(session)
        rng = np.random.default_rng(reader_seed(seed, name))
        with read_session(service.factory) as s:
            truth = {
                a.position: (c.case_key, bool(c.is_synthetic), a.repeat)
                for a, c in s.execute(
                    select(Assignment, Case)
                    .join(Case, Case.id == Assignment.case_id)
                    .where(Assignment.reader_id == session.reader_id)
                )
            }
        first: dict[str, dict] = {}
        for position in track(
            sorted(truth), description=f"simulating {name}", disable=not progress, transient=True
        ):
            key, is_synthetic, repeat = truth[position]
            if repeat and key in first:
                answers = perturb(first[key], questions, model.repeat_noise, rng)
            else:
                answers = answer_case(model, questions, is_synthetic, (quality or {}).get(key, 0.5), rng)
                first[key] = answers
            seconds = float(model.seconds_median * np.exp(rng.normal(0.0, 0.5)))
            service.submit(session, position, answers, seconds=seconds)
        names.append(name)
    return names


def simulate_from_config(cfg: DictConfig) -> str:
    """``medsynth study simulate``: returns a one-line summary."""
    from medsynth.config import require

    sim = OmegaConf.to_container(cfg.simulate, resolve=True)
    n_readers = int(sim["n_readers"])
    skills = sim["skill"] if isinstance(sim["skill"], list) else [sim["skill"]] * n_readers
    if len(skills) != n_readers:
        raise ConfigError(
            "simulate.skill", f"needs one value or {n_readers} (simulate.n_readers), got {len(skills)}"
        )
    if any(not 0.0 <= float(s) <= 1.0 for s in skills):
        raise ConfigError("simulate.skill", "every skill must be a probability in [0, 1]")
    quality = None
    if sim["per_image"]:
        if not sim["quality_column"]:
            raise ConfigError("simulate.quality_column", "is required with simulate.per_image")
        quality = quality_ranks(sim["per_image"], str(sim["quality_column"]), bool(sim["higher_is_better"]))
    shared = {k: float(sim[k]) for k in ReaderModel.__dataclass_fields__ if k != "skill"}
    models = [ReaderModel(skill=float(s), **shared) for s in skills]
    service = StudyService(str(require(cfg, "db")))
    names = simulate_readers(service, str(cfg.study), models, int(cfg.seed), str(sim["name_prefix"]), quality)
    return (
        f"{len(names)} simulated readers answered study '{cfg.study}': {', '.join(names)} (skills {skills})"
    )
