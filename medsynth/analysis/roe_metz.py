"""Roe-Metz simulation of reader studies (one treatment), vectorised over studies.

The Roe & Metz (1997) decision-variable model for reader r and case k of truth state d (0 = real,
1 = synthetic), with every random effect drawn independently per truth state:

    X_rk = delta * d + R_r + C_k + (RC)_rk + E_rk,
    R ~ N(0, var_r), C ~ N(0, var_c), RC ~ N(0, var_rc), E ~ N(0, var_error).

With one treatment the treatment-by-reader and treatment-by-case components of Roe & Metz's
Table 1 add to ``var_r`` and ``var_c``. Reader r's AUC over infinitely many cases is
Phi((delta + R_r1 - R_r0) / sqrt(2 w)), w = var_c + var_rc + var_error, so the mean over the
reader population is Phi(delta / sqrt(2 w + 2 var_r)) (:func:`expected_auc`). ``STRUCTURES`` are
Table 1 of Roe & Metz 1997 (also Hillis 2018, Table 2) at their lowest reader variance: first
letter data correlation (H: var_c 0.3 + 0.3, L: 0.1 + 0.1), second letter reader variance
(L: 0.0055 + 0.0055, H: 0.011 + 0.011).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats

from medsynth.analysis import mrmc


@dataclass(frozen=True)
class RoeMetzStructure:
    """Variance components of one treatment (latent units; var_c + var_rc + var_error = 1 in Table 1)."""

    var_r: float
    var_c: float
    var_rc: float
    var_error: float

    @property
    def within(self) -> float:
        """w: variance of one case's score for a given reader."""
        return self.var_c + self.var_rc + self.var_error


STRUCTURES: dict[str, RoeMetzStructure] = {
    "HL": RoeMetzStructure(var_r=0.011, var_c=0.6, var_rc=0.2, var_error=0.2),
    "LL": RoeMetzStructure(var_r=0.011, var_c=0.2, var_rc=0.2, var_error=0.6),
    "HH": RoeMetzStructure(var_r=0.022, var_c=0.6, var_rc=0.2, var_error=0.2),
    "LH": RoeMetzStructure(var_r=0.022, var_c=0.2, var_rc=0.2, var_error=0.6),
}


def expected_auc(delta: float, structure: RoeMetzStructure) -> float:
    """Reader-population mean AUC (infinitely many cases) of separation ``delta``."""
    return float(stats.norm.cdf(delta / np.sqrt(2 * structure.within + 2 * structure.var_r)))


def delta_for_auc(auc: float, structure: RoeMetzStructure) -> float:
    """The separation whose reader-population mean AUC is ``auc`` (inverse of :func:`expected_auc`)."""
    return float(stats.norm.ppf(auc) * np.sqrt(2 * structure.within + 2 * structure.var_r))


def simulate_scores(
    structure: RoeMetzStructure,
    delta: float,
    n_readers: int,
    n_positive: int,
    n_negative: int,
    n_studies: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Decision variables of ``n_studies`` independent studies.

    Returns:
        ``(positive (S, R, m), negative (S, R, n))``: S studies, R readers, m synthetic and n real cases.
    """

    def draw(n_cases: int, shift: float) -> np.ndarray:
        s = structure
        reader = rng.normal(0.0, np.sqrt(s.var_r), (n_studies, n_readers, 1))
        case = rng.normal(0.0, np.sqrt(s.var_c), (n_studies, 1, n_cases))
        rest = rng.normal(0.0, np.sqrt(s.var_rc + s.var_error), (n_studies, n_readers, n_cases))
        return shift + reader + case + rest

    return draw(n_positive, delta), draw(n_negative, 0.0)


def analyse_studies(
    positive: np.ndarray,
    negative: np.ndarray,
    alpha: float = 0.05,
    margin: float = 0.05,
    threshold: float = 0.0,
) -> dict[str, np.ndarray]:
    """Analyse every simulated study (S,) at once.

    Args:
        positive: (S, R, m) synthetic-case scores; negative: (S, R, n) real-case scores.
        threshold: a score above it is a "synthetic" call (for the pooled binomial test).

    Returns:
        (S,) arrays: ``auc``, OR-H with DeLong (``or_*``) and jackknife (``orj_*``) covariance,
        ``dbm_p``, ``tost_p`` (OR-H DeLong), and ``binom_p``: the naive exact binomial test of all
        R (m + n) calls pooled as if independent.
    """
    auc, v10, v01 = mrmc.auc_components(positive, negative)
    delong = mrmc.or_single(auc, mrmc.delong_covariance(v10, v01), 0.5, alpha)
    loo = mrmc.auc_leave_one_out(auc, v10, v01)
    jack = mrmc.or_single(auc, mrmc.jackknife_covariance(loo), 0.5, alpha)
    dbm = mrmc.dbm_single(auc, loo, 0.5)
    correct = (positive > threshold).sum(axis=(-2, -1)) + (negative <= threshold).sum(axis=(-2, -1))
    total = positive.shape[-2] * (positive.shape[-1] + negative.shape[-1])
    # exact two-sided binomial p vs 1/2 (symmetric): 2 P(X <= min(k, N - k)), capped at 1
    binom_p = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(correct, total - correct), total, 0.5))
    return {
        "auc": delong["estimate"],
        "or_p": delong["p"],
        "or_ci_low": delong["ci_low"],
        "or_ci_high": delong["ci_high"],
        "or_f": delong["f"],
        "orj_p": jack["p"],
        "orj_ci_low": jack["ci_low"],
        "orj_ci_high": jack["ci_high"],
        "orj_f": jack["f"],
        "dbm_p": dbm["p"],
        "dbm_f": dbm["f"],
        "tost_p": mrmc.tost(delong["estimate"], delong["se"], delong["df2"], margin, 0.5),
        "binom_p": binom_p,
    }


def simulated_analyses(
    structure: RoeMetzStructure,
    auc: float,
    n_readers: int,
    n_positive: int,
    n_negative: int,
    n_studies: int,
    rng: np.random.Generator,
    alpha: float = 0.05,
    margin: float = 0.05,
    max_elements: int = 20_000_000,
) -> Iterator[dict[str, np.ndarray]]:
    """:func:`analyse_studies` of ``n_studies`` studies simulated at reader-averaged ``auc``, in
    chunks of at most ``max_elements`` pairwise comparisons (bounded memory)."""
    delta = delta_for_auc(auc, structure)
    chunk = max(1, max_elements // (n_readers * n_positive * n_negative))
    done = 0
    while done < n_studies:
        size = min(chunk, n_studies - done)
        positive, negative = simulate_scores(structure, delta, n_readers, n_positive, n_negative, size, rng)
        yield analyse_studies(positive, negative, alpha, margin)
        done += size


def calibration(
    structure: RoeMetzStructure,
    n_readers: int,
    n_positive: int,
    n_negative: int,
    n_studies: int,
    auc: float,
    rng: np.random.Generator,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Operating characteristics of the tests over ``n_studies`` simulated studies.

    With ``auc`` = 0.5 (the null): rejection rates of OR-H (DeLong and jackknife covariance), DBM
    and the pooled binomial test. With ``auc`` != 0.5: rejection rates (power) and the coverage of
    the (1 - alpha) OR-H interval of the reader-averaged AUC, whose target is :func:`expected_auc`.
    ``or_dbm_agreement``: share of studies where OR-H (DeLong) and DBM take the same decision.
    """
    target = expected_auc(delta_for_auc(auc, structure), structure)
    sums: dict[str, float] = {}
    for r in simulated_analyses(structure, auc, n_readers, n_positive, n_negative, n_studies, rng, alpha):
        counts = {
            "or_reject": r["or_p"] < alpha,
            "orj_reject": r["orj_p"] < alpha,
            "dbm_reject": r["dbm_p"] < alpha,
            "binom_reject": r["binom_p"] < alpha,
            "or_dbm_agreement": (r["or_p"] < alpha) == (r["dbm_p"] < alpha),
            "or_coverage": (r["or_ci_low"] <= target) & (target <= r["or_ci_high"]),
            "orj_coverage": (r["orj_ci_low"] <= target) & (target <= r["orj_ci_high"]),
        }
        for key, hit in counts.items():
            sums[key] = sums.get(key, 0.0) + float(np.sum(hit))
    return {"target_auc": target, "n_studies": n_studies} | {k: v / n_studies for k, v in sums.items()}
