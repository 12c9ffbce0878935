"""Real-vs-synthetic detection performance per reader and pooled (first showings only).

accuracy = correct calls / calls; sensitivity = synthetic cases called synthetic; specificity =
real cases called real; ``binom_p`` = exact two-sided binomial test of the number correct vs
p = 0.5 (scipy.stats.binomtest); Clopper-Pearson intervals (statsmodels ``method="beta"``);
``auc`` = ROC AUC (scikit-learn) of ``is_synthetic`` against ``score`` = +confidence when called
synthetic else -confidence, with a stratified bootstrap interval (synthetic and real scores
resampled separately, so every resample has both classes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.proportion import proportion_confint

from medsynth.analysis.bootstrap import BootstrapSettings, bootstrap_ci, finite_or_none


def first_showings(ratings: pd.DataFrame) -> pd.DataFrame:
    """Rows with ``repeat == 0``."""
    return ratings[ratings["repeat"] == 0]


def call_score(ratings: pd.DataFrame) -> np.ndarray:
    """(N,) ROC score: +confidence when called synthetic, -confidence when called real."""
    confidence = ratings["confidence"].to_numpy(dtype=float)
    return np.where(ratings["called_synthetic"].to_numpy() == 1, confidence, -confidence)


def _proportion(count: int, total: int, alpha: float) -> tuple[float | None, list[float] | None]:
    if total == 0:
        return None, None
    low, high = proportion_confint(count, total, alpha=alpha, method="beta")
    return count / total, [float(low), float(high)]


def _auc_statistic(synthetic_scores: np.ndarray, real_scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUC = U / (n_synthetic * n_real): the Mann-Whitney identity, vectorised for the bootstrap."""
    u = stats.mannwhitneyu(synthetic_scores, real_scores, axis=axis).statistic
    return u / (synthetic_scores.shape[axis] * real_scores.shape[axis])


def detection_performance(ratings: pd.DataFrame, alpha: float, bootstrap: BootstrapSettings) -> dict:
    """Detection statistics of one reader or all readers pooled (pass first showings only).

    Returns the summary.json five (accuracy, sensitivity, specificity, binom_p, auc) plus counts,
    Clopper-Pearson intervals (``*_ci``) and the AUC bootstrap interval (``auc_ci``); undefined
    values are ``None``.
    """
    truth = ratings["is_synthetic"].to_numpy()
    called = ratings["called_synthetic"].to_numpy()
    correct = int((truth == called).sum())
    n = int(len(truth))
    n_synthetic = int((truth == 1).sum())
    n_real = n - n_synthetic
    accuracy, accuracy_ci = _proportion(correct, n, alpha)
    sensitivity, sensitivity_ci = _proportion(int(((truth == 1) & (called == 1)).sum()), n_synthetic, alpha)
    specificity, specificity_ci = _proportion(int(((truth == 0) & (called == 0)).sum()), n_real, alpha)
    binom_p = float(stats.binomtest(correct, n, 0.5, alternative="two-sided").pvalue) if n else None
    auc = auc_ci = None
    if n_synthetic and n_real:
        score = call_score(ratings)
        auc = float(roc_auc_score(truth, score))
        auc_ci = bootstrap_ci(
            (score[truth == 1], score[truth == 0]), _auc_statistic, bootstrap, vectorized=True
        )
    return {
        "accuracy": finite_or_none(accuracy),
        "sensitivity": finite_or_none(sensitivity),
        "specificity": finite_or_none(specificity),
        "binom_p": finite_or_none(binom_p),
        "auc": finite_or_none(auc),
        "n": n,
        "n_correct": correct,
        "n_synthetic": n_synthetic,
        "n_real": n_real,
        "accuracy_ci": accuracy_ci,
        "sensitivity_ci": sensitivity_ci,
        "specificity_ci": specificity_ci,
        "auc_ci": auc_ci,
    }


def reader_statistics(ratings: pd.DataFrame, alpha: float, bootstrap: BootstrapSettings) -> tuple[dict, dict]:
    """``(pooled, per_reader)`` detection statistics over first showings."""
    firsts = first_showings(ratings)
    pooled = detection_performance(firsts, alpha, bootstrap)
    per_reader = {
        str(reader): detection_performance(group, alpha, bootstrap)
        for reader, group in firsts.groupby("reader_id", sort=True)
    }
    return pooled, per_reader


def roc_points(ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(false positive rate, true positive rate) of the ROC curve, or ``None`` with one class."""
    truth = ratings["is_synthetic"].to_numpy()
    if truth.min() == truth.max():
        return None
    fpr, tpr, _ = roc_curve(truth, call_score(ratings))
    return fpr, tpr
