"""The summary.json ``mrmc`` block from a study's first showings (DESIGN.md keys, plus extras).

Readers and cases random, over the cases every reader rated (a fully crossed block):

- ``auc``: OR-H (:mod:`medsynth.analysis.mrmc`) of the reader-averaged ROC AUC of the call x
  confidence score against 0.5, covariance ``DeLong`` or ``jackknife``; ``dbm`` the DBM test of the
  same hypothesis; ``equivalence`` a TOST of abs(auc - 0.5) < margin on the OR-H estimate;
- ``accuracy``: the same OR-H test with the share of correct calls as the figure of merit
  (jackknife covariance; needs no confidence);
- ``models``: with two or more synthetic models (``model`` column), OR-H comparison of the models'
  reader-averaged AUCs (each model's synthetic cases against all real cases; DeLong covariance,
  zero between disjoint synthetic sets).

Designs that are not fully crossed keep the cases every reader rated (a note says how many were
left out); a split-plot design (no case rated by every reader) is refused with a note. One reader:
readers cannot be random; the result is for that reader, cases random (z test), with a note.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medsynth.analysis import mrmc
from medsynth.analysis.bootstrap import finite_or_none
from medsynth.analysis.reader_stats import call_score

NULL_AUC = 0.5


def _test_keys(result: dict, prefix: str = "") -> dict:
    return {
        f"{prefix}f": finite_or_none(result["f"]),
        f"{prefix}df1": finite_or_none(result["df1"]),
        f"{prefix}df2": finite_or_none(result["df2"]),  # inf (normal approximation) -> null
        f"{prefix}p": finite_or_none(result["p"]),
    }


def empty_block(covariance: str, margin: float) -> dict:
    """The DESIGN.md ``mrmc`` keys with every value undefined."""
    return {
        "method": "OR-H",
        "fom": "auc",
        "auc": None,
        "auc_ci": None,
        "f": None,
        "df1": None,
        "df2": None,
        "p": None,
        "covariance": covariance,
        "per_reader_auc": {},
        "dbm": {"f": None, "df1": None, "df2": None, "p": None},
        "equivalence": {"margin": margin, "p": None, "equivalent": False},
        "readers_random": None,
        "n_readers": 0,
        "n_cases": 0,
        "accuracy": None,
        "models": None,
    }


def _interval(result: dict) -> list[float] | None:
    """The CI clipped to [0, 1] (AUC and accuracy are proportions), or None when undefined."""
    if not np.isfinite(result["se"]):
        return None
    return [float(np.clip(result["ci_low"], 0.0, 1.0)), float(np.clip(result["ci_high"], 0.0, 1.0))]


def _single(theta: np.ndarray, cov: np.ndarray, alpha: float) -> dict:
    if theta.shape[-1] >= 2:
        return mrmc.or_single(theta, cov, NULL_AUC, alpha)
    return mrmc.fixed_reader_single(theta, cov, NULL_AUC, alpha)


def _auc_covariance(covariance: str, auc, v10, v01) -> tuple[np.ndarray, np.ndarray]:
    loo = mrmc.auc_leave_one_out(auc, v10, v01)
    cov = mrmc.delong_covariance(v10, v01) if covariance == "DeLong" else mrmc.jackknife_covariance(loo)
    return cov, loo


def _model_comparison(
    scores: pd.DataFrame, truth: pd.Series, models: pd.Series, alpha: float
) -> tuple[dict | None, list[str]]:
    names = sorted({m for m in models[truth == 1] if m})
    if len(names) < 2:
        return None, []
    if scores.shape[0] < 2:
        return None, ["comparing models needs at least 2 readers: mrmc.models is null"]
    negative = scores.loc[:, truth == 0].to_numpy(float)
    if negative.shape[1] < 2:
        return None, ["comparing models needs at least 2 real cases: mrmc.models is null"]
    thetas, v10s, v01s = [], [], []
    for name in names:
        positive = scores.loc[:, (truth == 1) & (models == name)].to_numpy(float)
        if positive.shape[1] < 2:
            return None, [f"model '{name}' has fewer than 2 synthetic cases rated by every reader: mrmc.models is null"]
        auc, v10, v01 = mrmc.auc_components(positive, negative)
        thetas.append(auc)
        v10s.append(v10)
        v01s.append(v01)
    t, r, n = len(names), scores.shape[0], negative.shape[1]
    cov = np.zeros((t * r, t * r))
    d01 = np.concatenate([v - v.mean(axis=-1, keepdims=True) for v in v01s])  # (T R, n): real cases shared
    cov += d01 @ d01.T / ((n - 1) * n)
    for i, v10 in enumerate(v10s):  # synthetic cases: disjoint between models
        m = v10.shape[-1]
        d10 = v10 - v10.mean(axis=-1, keepdims=True)
        cov[i * r : (i + 1) * r, i * r : (i + 1) * r] += d10 @ d10.T / ((m - 1) * m)
    theta = np.stack(thetas)
    result = mrmc.or_treatments(theta, cov, alpha)
    readers = [str(x) for x in scores.index]
    differences = []
    for i in range(t):
        for j in range(i + 1, t):
            diff = float(theta[i].mean() - theta[j].mean())
            half = float(result["diff_t"] * result["diff_se"])
            differences.append(
                {
                    "models": [names[i], names[j]],
                    "difference": diff,
                    "ci": [finite_or_none(diff - half), finite_or_none(diff + half)]
                    if np.isfinite(half)
                    else None,
                }
            )
    return {
        "method": "OR-H",
        "fom": "auc",
        "covariance": "DeLong",
        "auc": {name: float(theta[i].mean()) for i, name in enumerate(names)},
        "per_reader_auc": {
            name: {reader: float(theta[i, k]) for k, reader in enumerate(readers)} for i, name in enumerate(names)
        },
        **_test_keys(result),
        "differences": differences,
    }, []


def mrmc_block(firsts: pd.DataFrame, alpha: float, covariance: str, margin: float) -> tuple[dict, list[str]]:
    """summary.json ``mrmc`` from first showings (ratings.csv columns); returns ``(block, notes)``."""
    block = empty_block(covariance, margin)
    notes: list[str] = []
    frame = firsts.assign(
        score=call_score(firsts), correct=(firsts["is_synthetic"] == firsts["called_synthetic"]).astype(float)
    )
    scores = frame.pivot(index="reader_id", columns="case_id", values="score")
    correct = frame.pivot(index="reader_id", columns="case_id", values="correct")
    rated = correct.notna().all(axis=0)
    if not rated.any():
        notes.append(
            "no case was rated by every reader (split-plot design): the OR-H/DBM analysis of a fully "
            "crossed study does not apply; mrmc is null"
        )
        return block, notes
    if not rated.all():
        notes.append(
            f"mrmc: {int((~rated).sum())} case(s) not rated by every reader were left out of the MRMC analysis "
            f"({int(rated.sum())} remain)"
        )
    scores, correct = scores.loc[:, rated], correct.loc[:, rated]
    cases = frame.drop_duplicates("case_id").set_index("case_id")
    truth = cases["is_synthetic"].reindex(scores.columns)
    n_readers, n_cases = scores.shape
    block.update(n_readers=int(n_readers), n_cases=int(n_cases), readers_random=n_readers >= 2)
    if n_readers < 2:
        notes.append(
            "one reader: readers cannot be treated as random, so the MRMC result generalises over cases "
            "only (z test, DeLong / jackknife variance); DBM needs 2 readers (null)"
        )
    if n_cases >= 2:
        acc, acc_loo = mrmc.accuracy_leave_one_out(correct.to_numpy())
        acc_result = _single(acc, mrmc.jackknife_covariance(acc_loo), alpha)
        block["accuracy"] = {
            "method": "OR-H" if n_readers >= 2 else "fixed readers",
            "fom": "accuracy",
            "covariance": "jackknife",
            "accuracy": finite_or_none(acc_result["estimate"]),
            "accuracy_ci": _interval(acc_result),
            **_test_keys(acc_result),
            "per_reader_accuracy": {str(r): float(a) for r, a in zip(scores.index, acc, strict=True)},
        }
    positive = scores.loc[:, truth == 1].to_numpy(float)
    negative = scores.loc[:, truth == 0].to_numpy(float)
    if np.isnan(positive).any() or np.isnan(negative).any():
        notes.append("confidence is missing: the MRMC AUC is undefined (null); the accuracy analysis stands")
        return block, notes
    if positive.shape[1] < 2 or negative.shape[1] < 2:
        what = "synthetic" if positive.shape[1] < 2 else "real"
        notes.append(
            f"fewer than 2 {what} cases rated by every reader: the MRMC AUC is undefined (null); "
            "mrmc.accuracy is still given"
        )
        return block, notes
    auc, v10, v01 = mrmc.auc_components(positive, negative)
    cov, loo = _auc_covariance(covariance, auc, v10, v01)
    result = _single(auc, cov, alpha)
    block.update(
        auc=finite_or_none(result["estimate"]),
        auc_ci=_interval(result),
        **_test_keys(result),
        per_reader_auc={str(r): float(a) for r, a in zip(scores.index, auc, strict=True)},
    )
    if n_readers < 2:
        block["method"] = "fixed readers"
    else:
        block["dbm"] = _test_keys(mrmc.dbm_single(auc, loo, NULL_AUC))
    if np.isfinite(result["se"]):
        p = finite_or_none(mrmc.tost(result["estimate"], result["se"], result["df2"], margin, NULL_AUC))
        block["equivalence"] = {"margin": margin, "p": p, "equivalent": bool(p is not None and p < alpha)}
    else:
        notes.append("every reader has the same AUC and no case variance: MRMC test and equivalence undefined")
    if "model" in frame.columns:
        models = cases["model"].reindex(scores.columns).fillna("").astype(str)
        block["models"], model_notes = _model_comparison(scores, truth, models, alpha)
        notes += model_notes
    return block, notes
