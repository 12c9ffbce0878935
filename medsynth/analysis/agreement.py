"""Inter- and intra-reader agreement (first showings; cases rated by every reader).

Cohen's kappa (scikit-learn, exactly two readers) and Fleiss' kappa (statsmodels) on the
real/synthetic call; Krippendorff's alpha (``krippendorff``, ordinal) and ICC(2,1) (pingouin
``ICC2``: two-way random effects, absolute agreement, single rater) on realism. Intra-reader
agreement compares each repeated showing with the same reader's first showing of that case.
Undefined values (one reader, constant ratings, too few cases) are ``None`` with a note.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pingouin
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from medsynth.analysis.bootstrap import finite_or_none, quietly


def complete_case_table(firsts: pd.DataFrame, column: str) -> tuple[pd.DataFrame, int]:
    """(cases, readers) table of ``column`` over cases rated by every reader, and how many cases
    were left out because some reader did not rate them."""
    wide = firsts.pivot(index="case_id", columns="reader_id", values=column)
    complete = wide.dropna(axis=0, how="any")
    return complete.astype(int), int(len(wide) - len(complete))


def inter_reader_agreement(firsts: pd.DataFrame, scale_min: int, scale_max: int) -> tuple[dict, list[str]]:
    """summary.json ``agreement`` block (plus ``n_complete_cases``, ``icc2_realism_ci``) and notes."""
    notes: list[str] = []
    result: dict = {
        "fleiss_kappa_call": None,
        "cohen_kappa_call": None,
        "krippendorff_alpha_realism": None,
        "icc2_realism": None,
        "icc2_realism_ci": None,
        "n_complete_cases": 0,
        "n_readers": int(firsts["reader_id"].nunique()),
    }
    n_readers = result["n_readers"]
    if n_readers < 2:
        notes.append(
            "only one reader: inter-reader agreement (kappa, alpha, ICC) is undefined and reported as null"
        )
        return result, notes
    calls, left_out = complete_case_table(firsts, "called_synthetic")
    realism, _ = complete_case_table(firsts, "realism")
    result["n_complete_cases"] = int(len(calls))
    if left_out:
        notes.append(
            f"{left_out} case(s) were not rated by every reader; agreement uses the {len(calls)} case(s) "
            f"rated by all {n_readers} readers"
        )
    if len(calls) < 2:
        notes.append(
            "fewer than 2 cases were rated by every reader: agreement is undefined and reported as null"
        )
        return result, notes

    table, _ = aggregate_raters(calls.to_numpy(), n_cat=2)
    result["fleiss_kappa_call"] = finite_or_none(quietly(fleiss_kappa, table, method="fleiss"))
    if n_readers == 2:
        first, second = (calls[c].to_numpy() for c in calls.columns)
        result["cohen_kappa_call"] = finite_or_none(quietly(cohen_kappa_score, first, second, labels=[0, 1]))
    if result["fleiss_kappa_call"] is None:
        notes.append("every reader gave the same call on every case: kappa on the call is undefined (null)")

    values = realism.to_numpy(dtype=float).T  # (readers, cases), as krippendorff expects
    if np.unique(values).size < 2:
        notes.append(
            "every realism rating is the same value: Krippendorff's alpha and ICC are undefined (null)"
        )
        return result, notes
    result["krippendorff_alpha_realism"] = finite_or_none(
        quietly(
            krippendorff.alpha,
            reliability_data=values,
            level_of_measurement="ordinal",
            value_domain=list(range(scale_min, scale_max + 1)),
        )
    )
    long = realism.reset_index().melt(id_vars="case_id", var_name="reader_id", value_name="realism")
    icc = quietly(
        pingouin.intraclass_corr, data=long, targets="case_id", raters="reader_id", ratings="realism"
    )
    # pingouin >= 0.7 names ICC(2,1) "ICC(A,1)" (absolute agreement, single rater); older ones "ICC2"
    table = icc.set_index("Type")
    row = table.loc["ICC(A,1)" if "ICC(A,1)" in table.index else "ICC2"]
    result["icc2_realism"] = finite_or_none(row["ICC"])
    ci = [finite_or_none(v) for v in np.asarray(row["CI95"] if "CI95" in row else row["CI95%"], dtype=float)]
    result["icc2_realism_ci"] = ci if None not in ci else None
    if result["krippendorff_alpha_realism"] is None or result["icc2_realism"] is None:
        notes.append("realism ratings do not vary between cases: alpha/ICC undefined (null)")
    return result, notes


def _pair_stats(pairs: pd.DataFrame, scale_min: int, scale_max: int) -> dict:
    first_call, again_call = pairs["called_synthetic_first"].to_numpy(), pairs["called_synthetic"].to_numpy()
    first_real, again_real = pairs["realism_first"].to_numpy(), pairs["realism"].to_numpy()
    levels = list(range(scale_min, scale_max + 1))
    return {
        "n_pairs": int(len(pairs)),
        "call_agreement": finite_or_none(np.mean(first_call == again_call)),
        "call_kappa": finite_or_none(quietly(cohen_kappa_score, first_call, again_call, labels=[0, 1])),
        "realism_weighted_kappa": finite_or_none(
            quietly(cohen_kappa_score, first_real, again_real, labels=levels, weights="quadratic")
        ),
        "realism_mean_abs_difference": finite_or_none(np.mean(np.abs(first_real - again_real))),
    }


def intra_reader_agreement(
    ratings: pd.DataFrame, scale_min: int, scale_max: int
) -> tuple[dict | None, list[str]]:
    """Agreement of each repeated showing (repeat > 0) with the same reader's first showing.

    Returns ``{"pooled": {...}, "per_reader": {id: {...}}}`` with ``n_pairs``, ``call_agreement``
    (fraction of identical calls), ``call_kappa`` (Cohen), ``realism_weighted_kappa`` (Cohen,
    quadratic weights) and ``realism_mean_abs_difference`` (Likert points), or ``None`` without
    repeats.
    """
    repeats = ratings[ratings["repeat"] > 0]
    if repeats.empty:
        return None, ["no repeated showings (repeat > 0): intra-reader agreement not computed"]
    firsts = ratings[ratings["repeat"] == 0][["reader_id", "case_id", "called_synthetic", "realism"]]
    pairs = repeats.merge(firsts, on=["reader_id", "case_id"], suffixes=("", "_first"))
    per_reader = {
        str(reader): _pair_stats(group, scale_min, scale_max)
        for reader, group in pairs.groupby("reader_id", sort=True)
    }
    return {"pooled": _pair_stats(pairs, scale_min, scale_max), "per_reader": per_reader}, []
