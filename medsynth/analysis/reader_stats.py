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
    score = call_score(ratings)
    if n_synthetic and n_real and not np.isnan(score).any():  # no AUC without the confidence
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
    score = call_score(ratings)
    if truth.min() == truth.max() or np.isnan(score).any():
        return None
    fpr, tpr, _ = roc_curve(truth, score)
    return fpr, tpr


def clustered_intervals(firsts: pd.DataFrame, bootstrap: BootstrapSettings) -> dict:
    """Pooled accuracy, sensitivity, specificity and AUC intervals that respect the clustering.

    Two-way bootstrap (percentile): each resample draws readers with replacement and cases with
    replacement (synthetic and real cases separately, so both classes remain) and pools every
    rating of a drawn reader on a drawn case, with the multiplicity of both draws. Ratings of one
    reader, or of one case, are correlated; resampling single ratings (``*_ci``) ignores that and
    gives intervals that are too narrow. Returns ``{accuracy|sensitivity|specificity|auc}_ci_clustered``
    (``None`` when undefined: fewer than 2 readers or cases).
    """
    keys = ("accuracy", "sensitivity", "specificity", "auc")
    out: dict = {f"{k}_ci_clustered": None for k in keys}
    b = bootstrap.n_resamples
    frame = firsts.assign(score=call_score(firsts), correct=(firsts["is_synthetic"] == firsts["called_synthetic"]))
    correct = frame.pivot(index="reader_id", columns="case_id", values="correct").astype(float)
    scores = frame.pivot(index="reader_id", columns="case_id", values="score").astype(float)
    truth = frame.drop_duplicates("case_id").set_index("case_id")["is_synthetic"].reindex(correct.columns).to_numpy()
    n_readers = correct.shape[0]
    if b <= 0 or n_readers < 2 or correct.shape[1] < 2:
        return out
    rng = np.random.default_rng(bootstrap.seed)

    def counts(n: int, size: int) -> np.ndarray:
        draws = rng.integers(0, n, (b, size))
        result = np.zeros((b, n))
        np.add.at(result, (np.arange(b)[:, None], draws), 1.0)
        return result

    reader_w = counts(n_readers, n_readers)  # (B, R)
    case_w = np.zeros((b, correct.shape[1]))  # (B, C), stratified by truth
    for cls in (0, 1):
        idx = np.flatnonzero(truth == cls)
        if idx.size:
            case_w[:, idx] = counts(idx.size, idx.size)
    present = correct.notna().to_numpy(float)
    x = correct.fillna(0.0).to_numpy()
    tail = 50.0 * (1.0 - bootstrap.confidence_level)

    def interval(draws: np.ndarray) -> list[float] | None:
        draws = draws[np.isfinite(draws)]
        if draws.size < max(2, b // 2):
            return None
        return [float(v) for v in np.percentile(draws, [tail, 100.0 - tail])]

    with np.errstate(invalid="ignore", divide="ignore"):
        for key, columns in (("accuracy", truth >= 0), ("sensitivity", truth == 1), ("specificity", truth == 0)):
            if columns.any():
                num = np.einsum("br,rc,bc->b", reader_w, x[:, columns], case_w[:, columns])
                den = np.einsum("br,rc,bc->b", reader_w, present[:, columns], case_w[:, columns])
                out[f"{key}_ci_clustered"] = interval(num / den)
        s = scores.to_numpy()
        pos_r, pos_c = np.nonzero(~np.isnan(s) & (truth == 1)[None, :])
        neg_r, neg_c = np.nonzero(~np.isnan(s) & (truth == 0)[None, :])
        if pos_r.size and neg_r.size:
            sp, sn = s[pos_r, pos_c], s[neg_r, neg_c]
            psi = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])  # (N+, N-)
            w_pos = reader_w[:, pos_r] * case_w[:, pos_c]  # (B, N+)
            w_neg = reader_w[:, neg_r] * case_w[:, neg_c]  # (B, N-)
            auc = np.einsum("bi,ij,bj->b", w_pos, psi, w_neg) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))
            out["auc_ci_clustered"] = interval(auc)
    return out
