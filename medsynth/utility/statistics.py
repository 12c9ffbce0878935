"""Scores, intervals and paired gains of ``medsynth utility`` (scipy.stats.bootstrap over test subjects).

Notation (one arm at one number of real subjects):

| symbol | code | meaning |
|---|---|---|
| S[s, i] | ``scores[s, i]`` | run with seed s, test subject i: mean Dice, or P(class 1) |
| y_i | ``truth[i]`` | class of test subject i (classification) |
| score | :func:`set_score` | segmentation: mean over s and i of S; classification: mean over s of AUC(y, S[s]) |
| gain | :func:`paired_gain` | score(arm B) - score(arm A) on the same test subjects |

Intervals resample test subjects (the unit that generalises) with replacement, the same
resample for both arms of a gain (paired), and recompute the statistic: scipy's bootstrap is
given the subject indices as its sample, so one machinery serves Dice means and AUCs. Seed
spread is reported apart (``seed_sd``: standard deviation over seeds of the per-seed score).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats


def set_score(scores: np.ndarray, truth: np.ndarray | None, task: str, index: np.ndarray | None = None) -> float:
    """The set-level score of ``scores`` (S, N) on test subjects ``index`` (all when None)."""
    index = np.arange(scores.shape[1]) if index is None else np.asarray(index, dtype=np.int64)
    if task == "segmentation":
        with np.errstate(all="ignore"):
            return float(np.nanmean(scores[:, index]))
    return float(np.mean([_auc(truth[index], s[index]) for s in scores]))


def per_seed_scores(scores: np.ndarray, truth: np.ndarray | None, task: str) -> list[float]:
    """The set-level score of each seed's run."""
    return [set_score(scores[s : s + 1], truth, task) for s in range(scores.shape[0])]


def _auc(truth: np.ndarray, probability: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(truth)) < 2:
        return float("nan")
    return float(roc_auc_score(truth, probability))


def _bootstrap(statistic: Callable[[np.ndarray], float], n_subjects: int, cfg):
    """scipy's bootstrap of ``statistic(subject indices)`` over ``n_subjects``; None below 2 subjects."""
    if n_subjects < 2:
        return None

    def on_indices(sample: np.ndarray) -> float:
        return statistic(sample.astype(np.int64))

    with np.errstate(all="ignore"):
        return stats.bootstrap(
            (np.arange(n_subjects),),
            on_indices,
            vectorized=False,
            n_resamples=int(cfg.n_resamples),
            confidence_level=float(cfg.confidence_level),
            method=str(cfg.method),
            random_state=np.random.default_rng(int(cfg.seed)),
        )


def _interval(result) -> list[float | None]:
    if result is None:
        return [None, None]
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return [low, high] if np.isfinite(low) and np.isfinite(high) else [None, None]


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n_subjects: int, cfg) -> list[float | None]:
    """[low, high] interval of ``statistic(subject indices)``, resampling the test subjects.

    Args:
        statistic: maps resampled subject indices (int array) to a number.
        n_subjects: test subjects.
        cfg: the ``bootstrap`` config (``n_resamples``, ``confidence_level``, ``method``, ``seed``).

    Returns:
        [low, high]; [None, None] when undefined (fewer than 2 subjects, or NaN resamples).
    """
    return _interval(_bootstrap(statistic, n_subjects, cfg))


def paired_gain(
    baseline: np.ndarray, other: np.ndarray, truth: np.ndarray | None, task: str, cfg
) -> dict[str, float | list | None]:
    """score(other) - score(baseline) on the same test subjects, with a paired bootstrap interval.

    Args:
        baseline, other: (S_a, N) and (S_b, N) per-seed, per-subject scores of two arms.
        truth: (N,) classes (classification) or None.

    Returns:
        {"gain", "ci": [low, high], "p_gain_positive": share of bootstrap resamples with a gain > 0}.
    """
    n = baseline.shape[1]

    def gain(index: np.ndarray) -> float:
        return set_score(other, truth, task, index) - set_score(baseline, truth, task, index)

    result = _bootstrap(gain, n, cfg)
    share = None
    if result is not None:
        distribution = np.asarray(result.bootstrap_distribution, dtype=float)
        finite = distribution[np.isfinite(distribution)]
        share = float(np.mean(finite > 0)) if finite.size else None
    return {"gain": gain(np.arange(n)), "ci": _interval(result), "p_gain_positive": share}
