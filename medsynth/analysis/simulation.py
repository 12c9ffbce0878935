"""Simulated reader studies with known reader skill (demos, tests, power checks).

The generative model, per reader r and case c (first showing):

- the call is correct with probability ``skill`` (the reader's expected accuracy; 0.5 = chance),
  independently of the case, so the expected accuracy, sensitivity and specificity are all
  ``skill``;
- confidence (1..5) = round(Normal(confidence_correct or confidence_wrong, confidence_sd)),
  clipped, so confident calls are more often right and the ROC AUC exceeds 0.5 when skill does;
- realism (1..5) = round(Normal(mu_c + bias_r - call_shift * (called_synthetic - 0.5),
  realism_sd)), clipped, with mu_c = ``real_mean`` for real cases and
  ``synthetic_low + quality_c * (synthetic_high - synthetic_low)`` for synthetic ones
  (``quality`` in [0, 1]; 1 = as realistic as the best synthetic case can look), bias_r ~
  Normal(0, reader_bias_sd);
- a ``repeat_fraction`` of each reader's cases is shown again (repeat = 1): with probability
  ``repeat_consistency`` the reader answers exactly as the first time, otherwise afresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medsynth.errors import ConfigError


@dataclass(frozen=True)
class RealismModel:
    """Likert realism and confidence model (all in scale points, 1..``scale_max``)."""

    real_mean: float = 4.0
    synthetic_low: float = 2.0
    synthetic_high: float = 4.0
    realism_sd: float = 0.7
    reader_bias_sd: float = 0.3
    call_shift: float = 0.5
    confidence_correct: float = 3.8
    confidence_wrong: float = 2.6
    confidence_sd: float = 0.9
    seconds_median: float = 25.0
    seconds_sigma: float = 0.4
    scale_min: int = 1
    scale_max: int = 5


def _likert(rng: np.random.Generator, mean: float, sd: float, model: RealismModel) -> int:
    return int(np.clip(np.rint(rng.normal(mean, sd)), model.scale_min, model.scale_max))


def _answer(
    rng: np.random.Generator, truth: int, skill: float, mu: float, bias: float, model: RealismModel
) -> tuple[int, int, int]:
    correct = rng.random() < skill
    called = truth if correct else 1 - truth
    confidence = _likert(
        rng, model.confidence_correct if correct else model.confidence_wrong, model.confidence_sd, model
    )
    realism = _likert(rng, mu + bias - model.call_shift * (called - 0.5), model.realism_sd, model)
    return called, confidence, realism


def simulate_ratings(
    cases: pd.DataFrame,
    n_readers: int = 3,
    skill: float | list[float] = 0.7,
    realism_model: RealismModel | None = None,
    repeat_fraction: float = 0.1,
    repeat_consistency: float = 0.8,
    seed: int = 0,
) -> pd.DataFrame:
    """Ratings in the ratings.csv format (DESIGN.md) from a simulated reader study.

    Args:
        cases: one row per case: ``case_id``, ``is_synthetic`` (0/1), optional ``quality``
            (synthetic cases, [0, 1]; missing = 0.5) and ``model`` (copied to the output).
        n_readers: readers ``reader_01`` ... each rate every case once (random order).
        skill: probability of a correct real/synthetic call, one value or one per reader.
        realism_model: Likert/confidence model; defaults to :class:`RealismModel()`.
        repeat_fraction: fraction of each reader's cases shown a second time (repeat = 1).
        repeat_consistency: probability that a repeat copies the first answer.
        seed: the whole table is a function of (inputs, seed).

    Returns:
        DataFrame with reader_id, case_id, is_synthetic, called_synthetic, confidence, realism,
        repeat, seconds (+ model), rows in each reader's showing order.
    """
    model = realism_model or RealismModel()
    if n_readers < 1:
        raise ConfigError("readers", f"must be at least 1, got {n_readers}")
    skills = list(skill) if isinstance(skill, list | tuple) else [float(skill)] * n_readers
    if len(skills) != n_readers:
        raise ConfigError("skill", f"gives {len(skills)} values for {n_readers} readers")
    if any(not 0.0 <= s <= 1.0 for s in skills):
        raise ConfigError("skill", f"must lie in [0, 1], got {skills}")
    if not 0.0 <= repeat_fraction <= 1.0:
        raise ConfigError("repeat_fraction", f"must lie in [0, 1], got {repeat_fraction}")
    if cases.empty or not {"case_id", "is_synthetic"} <= set(cases.columns):
        raise ConfigError("cases", "need at least one case with columns case_id and is_synthetic")
    rng = np.random.default_rng(seed)
    quality = (
        cases["quality"].astype(float).fillna(0.5)
        if "quality" in cases.columns
        else pd.Series(0.5, cases.index)
    )
    truth = cases["is_synthetic"].astype(int).to_numpy()
    mu = np.where(
        truth == 1,
        model.synthetic_low
        + np.clip(quality.to_numpy(), 0.0, 1.0) * (model.synthetic_high - model.synthetic_low),
        model.real_mean,
    )
    rows = []
    for r in range(n_readers):
        reader = f"reader_{r + 1:02d}"
        bias = rng.normal(0.0, model.reader_bias_sd)
        order = rng.permutation(len(cases))
        answers = {}
        for i in order:
            answers[i] = _answer(rng, truth[i], skills[r], mu[i], bias, model)
            rows.append((reader, i, *answers[i], 0))
        n_repeat = int(round(repeat_fraction * len(cases)))
        for i in rng.choice(len(cases), size=n_repeat, replace=False):
            same = rng.random() < repeat_consistency
            rows.append(
                (
                    reader,
                    i,
                    *(answers[i] if same else _answer(rng, truth[i], skills[r], mu[i], bias, model)),
                    1,
                )
            )
    frame = pd.DataFrame(
        rows, columns=["reader_id", "row", "called_synthetic", "confidence", "realism", "repeat"]
    )
    frame.insert(1, "case_id", cases["case_id"].astype(str).to_numpy()[frame["row"]])
    frame.insert(2, "is_synthetic", truth[frame["row"]])
    frame["seconds"] = np.round(
        model.seconds_median * np.exp(rng.normal(0.0, model.seconds_sigma, len(frame))), 1
    )
    if "model" in cases.columns:
        frame["model"] = cases["model"].fillna("").astype(str).to_numpy()[frame["row"]]
    return frame.drop(columns="row")
