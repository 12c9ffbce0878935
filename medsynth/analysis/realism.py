"""Realism ratings, real vs synthetic: Mann-Whitney U on per-case mean realism (first showings).

``x`` = synthetic cases, ``y`` = real cases, two-sided (scipy.stats.mannwhitneyu). Effect sizes:
common-language effect size ``U / (n_x n_y)`` (probability that a synthetic case looks more real
than a real one, ties counting half) and rank-biserial correlation ``2 U / (n_x n_y) - 1``
(negative when synthetic cases look less real); both are one line of arithmetic on U.
"""

from __future__ import annotations

import pandas as pd
from scipy import stats

from medsynth.analysis.bootstrap import finite_or_none


def case_mean_realism(firsts: pd.DataFrame) -> pd.DataFrame:
    """Per case: ``mean_realism`` (mean over readers' first showings), ``is_synthetic``,
    ``n_readers``, and ``model`` when the ratings have one. Indexed by ``case_id``."""
    grouped = firsts.groupby("case_id", sort=True)
    table = pd.DataFrame(
        {
            "mean_realism": grouped["realism"].mean(),
            "is_synthetic": grouped["is_synthetic"].first(),
            "n_readers": grouped["reader_id"].nunique(),
        }
    )
    if "model" in firsts.columns:
        table["model"] = grouped["model"].first()
    return table


def realism_comparison(cases: pd.DataFrame) -> tuple[dict, list[str]]:
    """summary.json ``realism`` block from :func:`case_mean_realism` output, plus notes.

    ``mean_real`` / ``mean_synthetic`` are means of the per-case mean realism (equal to the mean
    rating when every reader rated every case).
    """
    synthetic = cases.loc[cases["is_synthetic"] == 1, "mean_realism"].to_numpy(dtype=float)
    real = cases.loc[cases["is_synthetic"] == 0, "mean_realism"].to_numpy(dtype=float)
    result = {
        "mean_real": finite_or_none(real.mean()) if real.size else None,
        "mean_synthetic": finite_or_none(synthetic.mean()) if synthetic.size else None,
        "mannwhitney_u": None,
        "mannwhitney_p": None,
        "n_real_cases": int(real.size),
        "n_synthetic_cases": int(synthetic.size),
        "common_language_effect_size": None,
        "rank_biserial": None,
    }
    if not (real.size and synthetic.size):
        return result, ["realism: need both real and synthetic cases for Mann-Whitney U (null)"]
    test = stats.mannwhitneyu(synthetic, real, alternative="two-sided")
    cles = float(test.statistic) / (synthetic.size * real.size)
    result.update(
        mannwhitney_u=finite_or_none(test.statistic),
        mannwhitney_p=finite_or_none(test.pvalue),
        common_language_effect_size=finite_or_none(cles),
        rank_biserial=finite_or_none(2.0 * cles - 1.0),
    )
    return result, []
