"""Assemble summary.json (DESIGN.md keys, exact definitions) and its plain-language sentences."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from medsynth.analysis.agreement import inter_reader_agreement, intra_reader_agreement
from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.correlation import metric_correlation, model_ranking
from medsynth.analysis.reader_stats import first_showings, reader_statistics
from medsynth.analysis.realism import case_mean_realism, realism_comparison
from medsynth.io.metrics_schema import MetricsFile

FIVE = ("accuracy", "sensitivity", "specificity", "binom_p", "auc")


@dataclass(frozen=True)
class AnalysisSettings:
    """Numbers the analysis needs (conf/analyze.yaml)."""

    alpha: float = 0.05
    scale_min: int = 1
    scale_max: int = 5
    min_cases: int = 3
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)


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
    notes = agreement_notes + intra_notes + realism_notes + notes + ranking_notes
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
        "settings": {
            "alpha": settings.alpha,
            "bootstrap_resamples": settings.bootstrap.n_resamples,
            "bootstrap_method": settings.bootstrap.method,
            "confidence_level": settings.bootstrap.confidence_level,
            "scale": [settings.scale_min, settings.scale_max],
        },
        "notes": notes,
    }
    summary["plain_language"] = plain_language(summary)
    return Analysis(summary, ratings, cases, per_image)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "p<0.001" if value < 0.001 else f"p={value:.3f}"


def plain_language(summary: dict) -> list[str]:
    """A few sentences a reader of a paper understands without the statistics."""
    pooled, agreement, realism = summary["pooled"], summary["agreement"], summary["realism"]
    alpha = summary["settings"]["alpha"]
    lines = []
    verdict = (
        "better than chance"
        if pooled["binom_p"] is not None and pooled["binom_p"] < alpha and (pooled["accuracy"] or 0) > 0.5
        else "not distinguishably better than chance"
    )
    lines.append(
        f"{summary['n_readers']} reader(s) told synthetic from real at {_pct(pooled['accuracy'])} accuracy "
        f"({_p(pooled['binom_p'])}, {verdict}); sensitivity {_pct(pooled['sensitivity'])}, specificity "
        f"{_pct(pooled['specificity'])}, ROC AUC {_num(pooled['auc'])}."
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
        lines.append(
            f"Mean realism was {_num(realism['mean_synthetic'])} for synthetic vs {_num(realism['mean_real'])} for real "
            f"cases (Mann-Whitney {_p(realism['mannwhitney_p'])}: synthetic cases looked "
            f"{('less' if lower else 'more') + ' real' if significant else 'as real as real ones, within the noise'})."
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
