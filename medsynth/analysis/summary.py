"""Assemble summary.json (DESIGN.md keys, exact definitions) and its plain-language sentences."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from medsynth.analysis.agreement import inter_reader_agreement, intra_reader_agreement
from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.correlation import metric_correlation, model_ranking
from medsynth.analysis.mrmc_summary import mrmc_block
from medsynth.analysis.reader_stats import clustered_intervals, first_showings, reader_statistics
from medsynth.analysis.realism import case_mean_realism, realism_comparison
from medsynth.io.metrics_schema import MetricsFile


@dataclass(frozen=True)
class AnalysisSettings:
    """Numbers the analysis needs (conf/analyze.yaml)."""

    alpha: float = 0.05
    scale_min: int = 1
    scale_max: int = 5
    min_cases: int = 3
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    mrmc_covariance: str = "DeLong"
    equivalence_margin: float = 0.05


@dataclass
class Analysis:
    """Everything the report needs: the summary plus the tables behind the figures."""

    summary: dict
    ratings: pd.DataFrame
    cases: pd.DataFrame
    per_image: pd.DataFrame | None


def analyze(
    ratings: pd.DataFrame,
    per_image: pd.DataFrame | None,
    set_metrics: dict[str, MetricsFile] | None,
    settings: AnalysisSettings,
    notes: list[str] | None = None,
) -> Analysis:
    """Compute summary.json from validated ratings (and optional per-image / set-level metrics)."""
    notes = list(notes or [])
    firsts = first_showings(ratings)
    pooled, per_reader = reader_statistics(ratings, settings.alpha, settings.bootstrap)
    pooled.update(clustered_intervals(firsts, settings.bootstrap))
    mrmc, mrmc_notes = mrmc_block(firsts, settings.alpha, settings.mrmc_covariance, settings.equivalence_margin)
    if firsts["confidence"].isna().all():
        mrmc_notes.insert(0, "ratings carry no confidence: every AUC is null (accuracy, sensitivity, specificity stand)")
    agreement, agreement_notes = inter_reader_agreement(firsts, settings.scale_min, settings.scale_max)
    intra, intra_notes = intra_reader_agreement(ratings, settings.scale_min, settings.scale_max)
    cases = case_mean_realism(firsts)
    realism, realism_notes = realism_comparison(cases)
    correlation: dict = {}
    if per_image is not None:
        correlation, correlation_notes = metric_correlation(
            cases, per_image, settings.bootstrap, settings.alpha, settings.min_cases
        )
        notes += correlation_notes
    else:
        notes.append("no per_image.csv given: metric_correlation is empty")
    ranking, ranking_notes = model_ranking(cases, firsts, set_metrics or {})
    notes = mrmc_notes + agreement_notes + intra_notes + realism_notes + notes + ranking_notes
    summary = {
        "n_readers": int(ratings["reader_id"].nunique()),
        "n_cases": int(ratings["case_id"].nunique()),
        "n_ratings": int(len(ratings)),
        "pooled": pooled,
        "per_reader": per_reader,
        "agreement": agreement,
        "realism": realism,
        "metric_correlation": correlation,
        "intra_reader": intra,
        "model_ranking": ranking,
        "mrmc": mrmc,
        "simulated_readers": simulated_readers(ratings),
        "settings": {
            "alpha": settings.alpha,
            "bootstrap_resamples": settings.bootstrap.n_resamples,
            "bootstrap_method": settings.bootstrap.method,
            "confidence_level": settings.bootstrap.confidence_level,
            "scale": [settings.scale_min, settings.scale_max],
            "mrmc_covariance": settings.mrmc_covariance,
            "equivalence_margin": settings.equivalence_margin,
        },
        "notes": notes,
    }
    summary["plain_language"] = plain_language(summary)
    return Analysis(summary, ratings, cases, per_image)


def simulated_readers(ratings: pd.DataFrame) -> list[str]:
    """Reader ids whose ratings are marked ``simulated = 1`` (ratings.csv optional column)."""
    if "simulated" not in ratings.columns:
        return []
    flag = pd.to_numeric(ratings["simulated"], errors="coerce").fillna(0) > 0
    return sorted(ratings.loc[flag, "reader_id"].astype(str).unique())


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def _mrmc_sentences(summary: dict) -> list[str]:
    """The MRMC verdict (readers and cases random) and the equivalence verdict (TOST)."""
    m, alpha = summary["mrmc"], summary["settings"]["alpha"]
    level = f"{100 * (1 - alpha):.0f}%"
    lines = []
    if m["auc"] is None:
        acc = m.get("accuracy")
        if acc and acc["accuracy"] is not None:
            lines.append(
                f"Generalising over readers and cases ({acc['method']}, accuracy as the figure of merit): "
                f"reader-averaged accuracy {_pct(acc['accuracy'])} ({_p(acc['p'])}); the MRMC AUC is undefined "
                "(see notes), so no equivalence claim can be made."
            )
        else:
            lines.append("No MRMC result (see notes), so no claim about readers in general can be made.")
        return lines
    ci = m["auc_ci"]
    span = f"{level} CI {_num(ci[0])}-{_num(ci[1])}" if ci else "CI undefined"
    scope = "readers and cases" if m["readers_random"] else "cases (one reader: not readers in general)"
    tells = m["p"] is not None and m["p"] < alpha
    lines.append(
        f"Generalising over {scope} ({m['method']}, {m['covariance']} covariance): reader-averaged AUC "
        f"{_num(m['auc'])} ({span}, {_p(m['p'])}): "
        + (
            (
                "readers can tell synthetic from real."
                if m["auc"] > 0.5
                else "readers systematically take synthetic scans for real ones and the reverse."
            )
            if tells
            else "no evidence that readers can tell synthetic from real."
        )
    )
    eq = m["equivalence"]
    margin = _num(eq["margin"])
    if eq["equivalent"]:
        lines.append(
            f"Equivalence shown: readers' AUC lies within 0.5 +- {margin} (TOST {_p(eq['p'])}), so synthetic "
            f"scans were indistinguishable from real ones within +-{margin} AUC."
        )
    elif tells:
        lines.append(f"So synthetic scans are not indistinguishable from real ones within +-{margin} AUC.")
    else:
        lines.append(
            f"Equivalence not shown: the study cannot rule out an AUC outside 0.5 +- {margin} (TOST {_p(eq['p'])}); "
            "failing to detect a difference is not evidence that synthetic scans look real."
        )
    return lines


def plain_language(summary: dict) -> list[str]:
    """A few sentences a reader of a paper understands without the statistics."""
    pooled, agreement, realism = summary["pooled"], summary["agreement"], summary["realism"]
    alpha = summary["settings"]["alpha"]
    lines = []
    if summary.get("simulated_readers"):
        lines.append(
            f"SIMULATED READERS: {len(summary['simulated_readers'])} of {summary['n_readers']} reader(s) are "
            "simulated (ratings.csv column 'simulated'); these figures describe the simulator, not experts."
        )
    lines += _mrmc_sentences(summary)
    lines.append(
        f"Pooling all {pooled['n']} calls as if independent: {_pct(pooled['accuracy'])} accuracy "
        f"({_p(pooled['binom_p'])}); sensitivity {_pct(pooled['sensitivity'])}, specificity "
        f"{_pct(pooled['specificity'])}, ROC AUC {_num(pooled['auc'])} (these p-values ignore that ratings "
        "repeat readers and cases; see the intervals that resample both)."
    )
    if agreement["fleiss_kappa_call"] is not None:
        lines.append(
            f"Readers agreed on the call with Fleiss' kappa {_num(agreement['fleiss_kappa_call'])}; on realism, "
            f"Krippendorff's alpha {_num(agreement['krippendorff_alpha_realism'])} and ICC(2,1) "
            f"{_num(agreement['icc2_realism'])}."
        )
    if realism["mannwhitney_u"] is not None:
        lower = (realism["mean_synthetic"] or 0) < (realism["mean_real"] or 0)
        significant = realism["mannwhitney_p"] is not None and realism["mannwhitney_p"] < alpha
        verdict = (
            f"synthetic cases looked {'less' if lower else 'more'} real"
            if significant
            else "no significant difference, which alone does not show that synthetic cases look as real"
        )
        lines.append(
            f"Mean realism was {_num(realism['mean_synthetic'])} for synthetic vs {_num(realism['mean_real'])} for "
            f"real cases (Mann-Whitney {_p(realism['mannwhitney_p'])}: {verdict})."
        )
    correlation = {m: r for m, r in summary["metric_correlation"].items() if r["spearman_rho"] is not None}
    if correlation:
        best = max(correlation, key=lambda m: abs(correlation[m]["spearman_rho"]))
        r = correlation[best]
        lines.append(
            f"Of {len(correlation)} per-image metric(s), '{best}' tracked mean realism most closely "
            f"(Spearman rho={_num(r['spearman_rho'])}, Holm-adjusted {_p(r['spearman_p_holm'])}, n={r['n']})."
        )
    ranking = summary.get("model_ranking")
    if ranking and ranking["metrics"]:
        for metric, r in ranking["metrics"].items():
            lines.append(_ranking_sentence(metric, r, ranking))
    return lines


def _ranking_sentence(metric: str, r: dict, ranking: dict) -> str:
    """One line per metric: how it ranked the models against the experts, ties said as ties."""
    n = len(ranking["models"])
    if len(r["ranking"]) == 1:
        return f"{metric} tied all {n} models (it does not rank them)."
    if r["ranking"] == ranking["expert_ranking"]:
        verdict = "exactly as the experts did"
    else:
        verdict = "differently from the experts"
    ties = [group for group in r["ranking"] if " = " in group]
    tied = f"; tied: {', '.join(ties)}" if ties else ""
    return (
        f"{metric} ({r['better']} is better) ranked the {n} models {verdict}: "
        f"{', '.join(r['ranking'])} (rho={_num(r['spearman_rho'])}{tied})."
    )
