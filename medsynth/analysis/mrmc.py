"""Multi-reader multi-case (MRMC) analysis: Obuchowski-Rockette with Hillis df, DBM, equivalence.

Written by hand because no maintained Python package does MRMC (the reference software is R's
RJafroc and MRMCaov and the FDA's Java iMRMC); numpy/scipy supply the building blocks. Every
function is vectorised over leading "study" axes (``...``) so that the calibration benchmark and
``medsynth analyze plan`` analyse thousands of simulated studies at once.

Readers and cases are both random: a result generalises to other readers and other cases. The
figure of merit (FOM) is computed per reader r (and treatment t = synthetic model) on one set of
cases that every reader rated; "positive" cases are synthetic, "negative" cases real.

Notation (code -> paper):

=========================  =========================================================  ==============================
code                       meaning                                                    source
=========================  =========================================================  ==============================
``theta`` (..., K)         FOM per reader (K = T x R, treatment-major): empirical       Hanley-McNeil 1982
                           AUC (Mann-Whitney) or accuracy
``psi``                    1 if positive score > negative score, 1/2 if tied, else 0  DeLong et al. 1988
``v10`` (..., K, m)        structural component of positive case i: mean_j psi        DeLong et al. 1988, eq. 3
``v01`` (..., K, n)        structural component of negative case j: mean_i psi        DeLong et al. 1988, eq. 3
``cov`` (..., K, K)        covariance of the FOM estimates over case samples:         DeLong 1988 (S10/m + S01/n);
                           ``delong_covariance`` or ``jackknife_covariance``          Efron 1981 (jackknife)
``var_error``              Var(theta_tr | readers): mean of the diagonal of ``cov``   Obuchowski-Rockette 1995
``cov1, cov2, cov3``       mean covariance: same reader / other treatment, other      Obuchowski-Rockette 1995
                           reader / same treatment, other reader / other treatment
``ms_r, ms_t, ms_tr``      reader, treatment, treatment x reader mean squares of      Obuchowski-Rockette 1995
                           theta
``ddf``                    Hillis denominator degrees of freedom                      Hillis 2007; Hillis 2018
``pseudo`` (..., K, C)     jackknife pseudovalues C theta - (C - 1) theta_(-k),       Dorfman-Berbaum-Metz 1992;
                           centred so that their reader mean is theta                 Hillis et al. 2005
``ms_c, ms_rc``            case and reader x case mean squares of the pseudovalues    Dorfman-Berbaum-Metz 1992
TOST                       two one-sided tests of abs(auc - 0.5) < margin             Schuirmann 1987
Roe-Metz model             see :mod:`medsynth.analysis.roe_metz`                      Roe & Metz 1997; Hillis 2018
=========================  =========================================================  ==============================

Single treatment (is the reader-averaged FOM different from ``theta0`` = 0.5, i.e. can readers
tell synthetic from real?), Hillis 2018 section 2.3:

    F = (mean(theta) - theta0)^2 / (den / R),  den = ms_r + R max(cov2, 0),
    ddf = den^2 / (ms_r^2 / (R - 1)),  CI = mean(theta) +- t_{1-alpha/2, ddf} sqrt(den / R).

Several treatments (do the models differ?), Hillis 2007:

    F = ms_t / den,  den = ms_tr + R max(cov2 - cov3, 0),  ddf = den^2 / (ms_tr^2 / ((T-1)(R-1))).

Both match MRMCaov and RJafroc to every printed digit on the Van Dyke data (tests/test_analysis_mrmc.py).
With 4 readers the Hillis df make both tests slightly liberal (5-6.5% at alpha 0.05 on Roe-Metz
studies): a property of the method, measured in docs/analysis.md (Calibration).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def auc_components(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical AUC and DeLong structural components.

    Args:
        positive: (..., m) scores of the positive (synthetic) cases.
        negative: (..., n) scores of the negative (real) cases.

    Returns:
        ``(auc (...), v10 (..., m), v01 (..., n))``; ``auc = mean(v10) = mean(v01)``.
    """
    positive = np.asarray(positive, dtype=np.float64)[..., :, None]
    negative = np.asarray(negative, dtype=np.float64)[..., None, :]
    psi = (positive > negative) + 0.5 * (positive == negative)
    v10, v01 = psi.mean(axis=-1), psi.mean(axis=-2)
    return v10.mean(axis=-1), v10, v01


def delong_covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """(..., K, K) DeLong covariance of K AUCs on the same cases: S10 / m + S01 / n.

    Args:
        v10: (..., K, m) positive-case components; v01: (..., K, n) negative-case components.
    """
    m, n = v10.shape[-1], v01.shape[-1]
    d10 = v10 - v10.mean(axis=-1, keepdims=True)
    d01 = v01 - v01.mean(axis=-1, keepdims=True)
    s10 = d10 @ np.swapaxes(d10, -1, -2) / (m - 1)
    s01 = d01 @ np.swapaxes(d01, -1, -2) / (n - 1)
    return s10 / m + s01 / n


def auc_leave_one_out(auc: np.ndarray, v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """(..., K, m + n) AUC with each case left out (positives first): from the components, exact.

    Removing positive i: (m auc - v10_i) / (m - 1); removing negative j: (n auc - v01_j) / (n - 1).
    """
    m, n = v10.shape[-1], v01.shape[-1]
    a = auc[..., None]
    return np.concatenate([(m * a - v10) / (m - 1), (n * a - v01) / (n - 1)], axis=-1)


def accuracy_leave_one_out(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (..., K) of (..., K, C) 0/1 correct calls, and (..., K, C) leave-one-case-out."""
    correct = np.asarray(correct, dtype=np.float64)
    c = correct.shape[-1]
    accuracy = correct.mean(axis=-1)
    return accuracy, (c * accuracy[..., None] - correct) / (c - 1)


def jackknife_covariance(leave_one_out: np.ndarray) -> np.ndarray:
    """(..., K, K) jackknife covariance (C - 1) / C sum_k (theta_(-k) - mean)(theta_(-k) - mean)^T."""
    c = leave_one_out.shape[-1]
    d = leave_one_out - leave_one_out.mean(axis=-1, keepdims=True)
    return (c - 1) / c * (d @ np.swapaxes(d, -1, -2))


def _t_quantile(q: float, ddf: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(ddf), stats.norm.ppf(q), stats.t.ppf(q, np.where(np.isinf(ddf), 1.0, ddf)))


def _f_sf(f: np.ndarray, df1: float, ddf: np.ndarray) -> np.ndarray:
    """P(F(df1, ddf) > f); ddf = inf -> chi2(df1) / df1."""
    with np.errstate(invalid="ignore"):
        finite = stats.f.sf(f, df1, np.where(np.isinf(ddf), 1.0, ddf))
        return np.where(np.isinf(ddf), stats.chi2.sf(f * df1, df1), finite)


def _hillis_ddf(den: np.ndarray, ms: np.ndarray, df_ms: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ms > 0, den**2 / (ms**2 / df_ms), np.inf)


def or_single(theta: np.ndarray, cov: np.ndarray, theta0: float = 0.5, alpha: float = 0.05) -> dict:
    """OR-H test of H0: reader-averaged FOM = ``theta0`` for one treatment (random readers, cases).

    Args:
        theta: (..., R) FOM per reader, R >= 2. cov: (..., R, R) its covariance over cases.

    Returns:
        dict of (...) arrays: ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``f``, ``df1`` (1),
        ``df2`` (Hillis ddf; inf when the readers' FOMs are identical), ``p``, ``ms_r``,
        ``var_error``, ``cov2``. NaN where the variance estimate is zero.
    """
    r = theta.shape[-1]
    if r < 2:
        raise ValueError("the random-reader OR-H test needs at least 2 readers")
    estimate = theta.mean(axis=-1)
    ms_r = theta.var(axis=-1, ddof=1)
    diagonal = np.diagonal(cov, axis1=-2, axis2=-1)
    var_error = diagonal.mean(axis=-1)
    cov2 = (cov.sum(axis=(-2, -1)) - diagonal.sum(axis=-1)) / (r * (r - 1))
    den = ms_r + r * np.maximum(cov2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(den > 0, np.sqrt(den / r), np.nan)
        f = (estimate - theta0) ** 2 / se**2
    ddf = _hillis_ddf(den, ms_r, r - 1)
    half = _t_quantile(1 - alpha / 2, ddf) * se
    return {
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - half,
        "ci_high": estimate + half,
        "f": f,
        "df1": np.ones_like(estimate),
        "df2": ddf,
        "p": _f_sf(f, 1.0, ddf),
        "ms_r": ms_r,
        "var_error": var_error,
        "cov2": cov2,
    }


def fixed_reader_single(theta: np.ndarray, cov: np.ndarray, theta0: float = 0.5, alpha: float = 0.05) -> dict:
    """Readers fixed, cases random (what is left with one reader): z test on mean(theta).

    Same keys as :func:`or_single`; ``df2`` is inf (normal approximation), Var = mean of ``cov``.
    """
    estimate = theta.mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(np.maximum(cov.mean(axis=(-2, -1)), 0.0))
        se = np.where(se > 0, se, np.nan)
        f = (estimate - theta0) ** 2 / se**2
    z = stats.norm.ppf(1 - alpha / 2)
    return {
        "estimate": estimate,
        "se": se,
        "ci_low": estimate - z * se,
        "ci_high": estimate + z * se,
        "f": f,
        "df1": np.ones_like(estimate),
        "df2": np.full_like(estimate, np.inf),
        "p": stats.chi2.sf(f, 1),
    }


def _treatment_reader_masks(n_treatments: int, n_readers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.repeat(np.arange(n_treatments), n_readers)
    r = np.tile(np.arange(n_readers), n_treatments)
    same_t, same_r = t[:, None] == t[None, :], r[:, None] == r[None, :]
    return same_r & ~same_t, ~same_r & same_t, ~same_r & ~same_t


def or_treatments(theta: np.ndarray, cov: np.ndarray, alpha: float = 0.05) -> dict:
    """OR-H test of H0: all T treatments have the same reader-averaged FOM (Hillis 2007).

    Args:
        theta: (..., T, R) FOM per treatment and reader, T >= 2, R >= 2.
        cov: (..., T R, T R) covariance of ``theta`` flattened treatment-major.

    Returns:
        dict of arrays: ``estimates`` (..., T), ``f``, ``df1``, ``df2``, ``p``, ``cov1..3``, and
        ``diff_se`` (...): the standard error of a difference of two treatment means, with
        ``diff_t`` the t quantile for a (1 - alpha) interval of a difference.
    """
    t, r = theta.shape[-2:]
    if t < 2 or r < 2:
        raise ValueError("comparing treatments needs at least 2 treatments and 2 readers")
    mask1, mask2, mask3 = _treatment_reader_masks(t, r)
    cov1 = cov[..., mask1].mean(axis=-1)
    cov2 = cov[..., mask2].mean(axis=-1)
    cov3 = cov[..., mask3].mean(axis=-1)
    treatment_mean = theta.mean(axis=-1)
    reader_mean = theta.mean(axis=-2)
    grand = treatment_mean.mean(axis=-1)
    ms_t = r * ((treatment_mean - grand[..., None]) ** 2).sum(axis=-1) / (t - 1)
    interaction = theta - treatment_mean[..., :, None] - reader_mean[..., None, :] + grand[..., None, None]
    ms_tr = (interaction**2).sum(axis=(-2, -1)) / ((t - 1) * (r - 1))
    den = ms_tr + r * np.maximum(cov2 - cov3, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(den > 0, ms_t / den, np.nan)
        diff_se = np.where(den > 0, np.sqrt(2.0 * den / r), np.nan)
    ddf = _hillis_ddf(den, ms_tr, (t - 1) * (r - 1))
    return {
        "estimates": treatment_mean,
        "f": f,
        "df1": np.full_like(grand, t - 1),
        "df2": ddf,
        "p": _f_sf(f, t - 1.0, ddf),
        "cov1": cov1,
        "cov2": cov2,
        "cov3": cov3,
        "diff_se": diff_se,
        "diff_t": _t_quantile(1 - alpha / 2, ddf),
    }


def pseudovalues(theta: np.ndarray, leave_one_out: np.ndarray) -> np.ndarray:
    """(..., R, C) jackknife pseudovalues, centred so each reader's mean pseudovalue is theta_r."""
    c = leave_one_out.shape[-1]
    pseudo = c * theta[..., None] - (c - 1) * leave_one_out
    return pseudo + (theta - pseudo.mean(axis=-1))[..., None]


def dbm_single(theta: np.ndarray, leave_one_out: np.ndarray, theta0: float = 0.5) -> dict:
    """Dorfman-Berbaum-Metz test of H0: reader-averaged FOM = ``theta0`` (one treatment).

    Mixed two-way ANOVA (readers and cases random) of the pseudovalues, with Hillis's
    denominator ``ms_r + max(ms_c - ms_rc, 0)`` and its degrees of freedom (Hillis et al. 2008).

    Args:
        theta: (..., R) FOM per reader; leave_one_out: (..., R, C) FOM with case k left out.

    Returns:
        dict of arrays: ``estimate``, ``f``, ``df1``, ``df2``, ``p``, ``ms_r``, ``ms_c``, ``ms_rc``.
    """
    r, c = leave_one_out.shape[-2:]
    if r < 2:
        raise ValueError("the random-reader DBM test needs at least 2 readers")
    y = pseudovalues(theta, leave_one_out)
    grand = y.mean(axis=(-2, -1))
    reader = y.mean(axis=-1)
    case = y.mean(axis=-2)
    ms_r = c * ((reader - grand[..., None]) ** 2).sum(axis=-1) / (r - 1)
    ms_c = r * ((case - grand[..., None]) ** 2).sum(axis=-1) / (c - 1)
    resid = y - reader[..., :, None] - case[..., None, :] + grand[..., None, None]
    ms_rc = (resid**2).sum(axis=(-2, -1)) / ((r - 1) * (c - 1))
    den = ms_r + np.maximum(ms_c - ms_rc, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(den > 0, r * c * (grand - theta0) ** 2 / den, np.nan)
    ddf = _hillis_ddf(den, ms_r, r - 1)
    return {
        "estimate": grand,
        "f": f,
        "df1": np.ones_like(grand),
        "df2": ddf,
        "p": _f_sf(f, 1.0, ddf),
        "ms_r": ms_r,
        "ms_c": ms_c,
        "ms_rc": ms_rc,
    }


def tost(
    estimate: np.ndarray, se: np.ndarray, ddf: np.ndarray, margin: float, theta0: float = 0.5
) -> np.ndarray:
    """Two one-sided tests of H0: abs(FOM - theta0) >= margin; returns the TOST p (the larger one).

    Equivalence at level alpha (p < alpha) is the same as the (1 - 2 alpha) interval lying inside
    ``theta0 +- margin``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        finite = np.where(np.isinf(ddf), 1.0, ddf)
        lower = (estimate - (theta0 - margin)) / se
        upper = (estimate - (theta0 + margin)) / se
        p_lower = np.where(np.isinf(ddf), stats.norm.sf(lower), stats.t.sf(lower, finite))
        p_upper = np.where(np.isinf(ddf), stats.norm.cdf(upper), stats.t.cdf(upper, finite))
    return np.maximum(p_lower, p_upper)
