"""Automatic metrics vs expert realism.

Per image: for each numeric per_image.csv column, Spearman's rho and Kendall's tau-b (scipy)
against per-case mean realism over synthetic cases (joined on ``case_id``, NaN dropped pairwise,
``n`` reported), paired bootstrap intervals and Holm-corrected p-values across metrics
(statsmodels ``multipletests``).

Per model (when ratings carry a ``model`` column and set-level metrics per model are given): the
experts rank models by the mean realism of their synthetic cases; each set-level metric ranks
them by its value oriented by the direction its metrics.json declares (``better``: lower, higher,
or target = closeness to ``target``, e.g. diversity compared by distance to the real set's value),
never by its name; ``settings`` are never ranked. Equal values are ties, reported as such. Agreement
is Spearman/Kendall between the two, so a positive rho means the metric ranks the models as the
experts do.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from medsynth.analysis.bootstrap import BootstrapSettings, bootstrap_ci, finite_or_none, quietly
from medsynth.io.metrics_schema import MetricsFile


def _spearman_vectorized(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis``: Pearson correlation of ranks (scipy), batched for bootstrap."""
    return stats.pearsonr(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis).statistic


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    return stats.kendalltau(x, y).statistic


def rank_correlation(x: np.ndarray, y: np.ndarray, bootstrap: BootstrapSettings | None) -> dict:
    """Spearman and Kendall between two (N,) arrays with no NaN; ``None`` where undefined."""
    n = int(len(x))
    result = {
        "spearman_rho": None,
        "spearman_p": None,
        "kendall_tau": None,
        "kendall_p": None,
        "n": n,
        "spearman_ci": None,
        "kendall_ci": None,
    }
    if n < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    spearman = quietly(stats.spearmanr, x, y)
    kendall = quietly(stats.kendalltau, x, y)
    result.update(
        spearman_rho=finite_or_none(spearman.statistic),
        spearman_p=finite_or_none(spearman.pvalue),
        kendall_tau=finite_or_none(kendall.statistic),
        kendall_p=finite_or_none(kendall.pvalue),
    )
    if bootstrap is not None:
        result["spearman_ci"] = bootstrap_ci(
            (x, y), _spearman_vectorized, bootstrap, paired=True, vectorized=True
        )
        result["kendall_ci"] = bootstrap_ci((x, y), _kendall, bootstrap, paired=True, vectorized=False)
    return result


def _holm(results: dict[str, dict], key: str, alpha: float) -> None:
    names = [m for m, r in results.items() if r[key] is not None]
    for r in results.values():
        r[f"{key}_holm"] = None
    if names:
        adjusted = multipletests([results[m][key] for m in names], alpha=alpha, method="holm")[1]
        for name, value in zip(names, adjusted, strict=True):
            results[name][f"{key}_holm"] = finite_or_none(value)


def metric_correlation(
    cases: pd.DataFrame, per_image: pd.DataFrame, bootstrap: BootstrapSettings, alpha: float, min_cases: int
) -> tuple[dict, list[str]]:
    """summary.json ``metric_correlation``: ``{metric: {spearman_rho, spearman_p, kendall_tau,
    kendall_p, n, spearman_ci, kendall_ci, spearman_p_holm, kendall_p_holm}}`` and notes.

    Args:
        cases: per-case table from :func:`medsynth.analysis.realism.case_mean_realism`.
        per_image: metric columns indexed by ``case_id``.
        min_cases: fewer complete pairs than this gives null statistics (``n`` still reported).
    """
    notes: list[str] = []
    synthetic = cases[cases["is_synthetic"] == 1]
    joined = synthetic[["mean_realism"]].join(per_image, how="inner")
    unmatched = len(synthetic) - len(joined)
    if unmatched:
        notes.append(
            f"{unmatched} rated synthetic case(s) have no row in per_image.csv and are left out of the correlations"
        )
    if len(synthetic) and joined.empty:
        notes.append(
            "no synthetic case_id of the ratings matches per_image.csv: metric correlations are null"
        )
    results: dict[str, dict] = {}
    for metric in per_image.columns:
        pairs = joined[["mean_realism", metric]].dropna()
        dropped = len(joined) - len(pairs)
        if dropped:
            notes.append(
                f"metric '{metric}': {dropped} case(s) with a missing value dropped (n={len(pairs)})"
            )
        x = pairs[metric].to_numpy(dtype=float)
        y = pairs["mean_realism"].to_numpy(dtype=float)
        if len(pairs) < min_cases:
            results[metric] = rank_correlation(x[:0], y[:0], None) | {"n": int(len(pairs))}
            if len(joined):
                notes.append(
                    f"metric '{metric}': only {len(pairs)} synthetic case(s) with values (< {min_cases}): null"
                )
            continue
        results[metric] = rank_correlation(x, y, bootstrap)
        if results[metric]["spearman_rho"] is None:
            which = "metric" if np.ptp(x) == 0 else "mean realism"
            notes.append(
                f"metric '{metric}': {which} is constant over the synthetic cases, correlation undefined (null)"
            )
    _holm(results, "spearman_p", alpha)
    _holm(results, "kendall_p", alpha)
    return results, notes


def ranked_groups(scores: dict[str, float], tolerance: float = 1e-12) -> list[list[str]]:
    """Models best first, models with equal scores (relative ``tolerance``) in one group."""
    order = sorted(scores, key=lambda m: (-scores[m], m))
    groups: list[list[str]] = []
    for model in order:
        if groups and math.isclose(scores[groups[-1][0]], scores[model], rel_tol=tolerance, abs_tol=0.0):
            groups[-1].append(model)
        else:
            groups.append([model])
    return groups


def _ranking_text(groups: list[list[str]]) -> list[str]:
    """``[["a"], ["b", "c"]]`` -> ``["a", "b = c"]`` (ties shown as ties)."""
    return [" = ".join(group) for group in groups]


def model_ranking(
    cases: pd.DataFrame, firsts: pd.DataFrame, set_metrics: dict[str, MetricsFile]
) -> tuple[dict | None, list[str]]:
    """Agreement between the experts' ranking of models and each set-level metric's ranking.

    Args:
        set_metrics: ``{model: MetricsFile}`` (:func:`medsynth.analysis.io.load_set_metrics`).

    Returns ``{"models": {model: {mean_realism, fooled_rate, n_cases, metrics}}, "expert_ranking":
    [best .. worst], "metrics": {metric: {spearman_rho, spearman_p, kendall_tau, kendall_p, n,
    better, target, ranking, tied}}}`` or ``None`` when fewer than two rated models have metrics.
    Rankings list models best first; tied models share one entry ``"b = c"``. ``fooled_rate`` =
    fraction of first-showing calls on the model's cases that said "real".
    """
    notes: list[str] = []
    if "model" not in cases.columns:
        if set_metrics:
            notes.append("set_metrics given but ratings.csv has no 'model' column: model ranking skipped")
        return None, notes
    synthetic = cases[(cases["is_synthetic"] == 1) & (cases["model"] != "")]
    rated = sorted(synthetic["model"].unique())
    if not set_metrics:
        return None, notes
    missing = [m for m in rated if m not in set_metrics]
    if missing:
        notes.append(f"no set-level metrics for model(s) {', '.join(missing)}: left out of the model ranking")
    models = [m for m in rated if m in set_metrics]
    if len(models) < 2:
        notes.append(
            f"model ranking needs at least 2 rated models with set-level metrics (found {len(models)})"
        )
        return None, notes
    synthetic_firsts = firsts[firsts["is_synthetic"] == 1]
    per_model = {}
    for model in models:
        calls = synthetic_firsts.loc[synthetic_firsts["model"] == model, "called_synthetic"]
        per_model[model] = {
            "mean_realism": finite_or_none(synthetic.loc[synthetic["model"] == model, "mean_realism"].mean()),
            "fooled_rate": finite_or_none((calls == 0).mean()),
            "n_cases": int((synthetic["model"] == model).sum()),
            "metrics": {name: e.as_dict() for name, e in set_metrics[model].metrics.items()},
        }
    expert = np.array([per_model[m]["mean_realism"] for m in models], dtype=float)
    expert_groups = ranked_groups({m: float(v) for m, v in zip(models, expert, strict=True)})
    common = sorted(set.intersection(*(set(set_metrics[m].metrics) for m in models)))
    metrics: dict[str, dict] = {}
    for metric in common:
        entries = {m: set_metrics[m].metrics[metric] for m in models}
        if len({e.better for e in entries.values()}) > 1:
            notes.append(f"metric '{metric}': the models' metrics.json disagree on its direction: not ranked")
            continue
        goodness = {m: e.goodness() for m, e in entries.items()}
        if any(g is None for g in goodness.values()):
            undefined = ", ".join(m for m, g in goodness.items() if g is None)
            notes.append(f"metric '{metric}': undefined for model(s) {undefined}: not ranked")
            continue
        oriented = np.array([goodness[m] for m in models], dtype=float)
        stats_ = rank_correlation(oriented, expert, None)
        groups = ranked_groups(goodness)
        first = entries[models[0]]
        metrics[metric] = {
            k: stats_[k] for k in ("spearman_rho", "spearman_p", "kendall_tau", "kendall_p", "n")
        }
        metrics[metric] |= {
            "better": first.better,
            "target": {m: e.target for m, e in entries.items()} if first.better == "target" else None,
            "ranking": _ranking_text(groups),
            "tied": any(len(g) > 1 for g in groups),
            "values": {m: e.value for m, e in entries.items()},
            "ci": {m: None if e.ci is None else list(e.ci) for m, e in entries.items()},
            "floor": {m: e.floor for m, e in entries.items()},
        }
    if len(models) < 3:
        notes.append("model ranking over 2 models: rho is +1 or -1 and p-values are not meaningful")
    return {"models": per_model, "expert_ranking": _ranking_text(expert_groups), "metrics": metrics}, notes
