"""report.html: one self-contained page (figures embedded as base64 PNG, matplotlib Agg).

Sections: a banner when readers are simulated, plain-language summary, MRMC (readers and cases
random: OR-H, DBM, equivalence, model comparison), detection per reader (table + ROC curves), agreement table,
realism real vs synthetic (distributions), each per-image metric against mean realism with its
least-squares line, model ranking, notes.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medsynth import __version__  # noqa: E402
from medsynth.analysis.reader_stats import first_showings, roc_points  # noqa: E402
from medsynth.analysis.summary import Analysis  # noqa: E402

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1b1f24;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1em}th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa}
figure{margin:1em 0}figcaption{color:#57606a;font-size:.9em}img{max-width:100%;height:auto}
.summary li{margin:.3em 0}.muted{color:#57606a;font-size:.9em}
.banner{background:#fff3cd;border:2px solid #d4a017;padding:.6em 1em;font-weight:600;margin:1em 0}
"""


def figure_png(fig: plt.Figure, dpi: int) -> str:
    """Base64 PNG of ``fig`` (closed afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def roc_figure(analysis: Analysis) -> plt.Figure | None:
    """ROC curve per reader plus the pooled curve (first showings)."""
    firsts = first_showings(analysis.ratings)
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    drawn = False
    for reader, group in firsts.groupby("reader_id", sort=True):
        points = roc_points(group)
        if points is not None:
            auc = analysis.summary["per_reader"][str(reader)]["auc"]
            ax.plot(*points, marker="o", ms=3, lw=1.2, label=f"{reader} (AUC {auc:.2f})")
            drawn = True
    pooled = roc_points(firsts)
    if pooled is not None:
        ax.plot(*pooled, color="black", lw=2.2, label=f"pooled (AUC {analysis.summary['pooled']['auc']:.2f})")
    if not drawn and pooled is None:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(
        xlabel="1 - specificity (real called synthetic)",
        ylabel="sensitivity (synthetic called synthetic)",
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        title="Real vs synthetic: ROC from call x confidence",
    )
    ax.legend(loc="lower right", fontsize=8)
    return fig


def realism_figure(analysis: Analysis, scale: tuple[int, int]) -> plt.Figure:
    """Left: distribution of realism ratings; right: per-case mean realism, real vs synthetic."""
    firsts = first_showings(analysis.ratings)
    levels = np.arange(scale[0], scale[1] + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.4
    for offset, (truth, label, color) in zip(
        (-width / 2, width / 2), ((0, "real", "#2b7bba"), (1, "synthetic", "#d9622b")), strict=True
    ):
        values = firsts.loc[firsts["is_synthetic"] == truth, "realism"]
        if len(values):
            share = values.value_counts(normalize=True).reindex(levels, fill_value=0.0)
            left.bar(
                levels + offset,
                share.to_numpy(),
                width=width,
                label=f"{label} (n={len(values)})",
                color=color,
            )
    left.set(
        xlabel="realism rating (1 = clearly artificial, 5 = fully realistic)",
        ylabel="share of ratings",
        xticks=levels,
        title="Realism ratings",
    )
    left.legend(fontsize=8)
    cases = analysis.cases
    groups = [cases.loc[cases["is_synthetic"] == t, "mean_realism"].to_numpy() for t in (0, 1)]
    present = [(g, name) for g, name in zip(groups, ("real", "synthetic"), strict=True) if len(g)]
    right.boxplot([g for g, _ in present], tick_labels=[n for _, n in present], widths=0.5)
    rng = np.random.default_rng(0)
    for i, (g, _) in enumerate(present, start=1):
        right.scatter(i + rng.uniform(-0.12, 0.12, len(g)), g, s=10, alpha=0.6, color="black")
    p = analysis.summary["realism"]["mannwhitney_p"]
    right.set(
        ylabel="mean realism per case",
        ylim=(scale[0] - 0.2, scale[1] + 0.2),
        title="Per-case mean realism" + (f" (Mann-Whitney p={p:.3g})" if p is not None else ""),
    )
    fig.tight_layout()
    return fig


def metric_figure(analysis: Analysis, max_panels: int) -> plt.Figure | None:
    """Each per-image metric (x) against per-case mean realism (y) for synthetic cases, with the
    least-squares line and Spearman's rho."""
    if analysis.per_image is None:
        return None
    synthetic = analysis.cases[analysis.cases["is_synthetic"] == 1][["mean_realism"]].join(
        analysis.per_image, how="inner"
    )
    metrics = [m for m in analysis.per_image.columns if synthetic[m].notna().sum() >= 2][:max_panels]
    if not metrics:
        return None
    cols = min(3, len(metrics))
    rows = int(np.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        pairs = synthetic[[metric, "mean_realism"]].dropna()
        x, y = pairs[metric].to_numpy(float), pairs["mean_realism"].to_numpy(float)
        ax.scatter(x, y, s=14, alpha=0.75, color="#d9622b")
        if np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, slope * grid + intercept, color="black", lw=1.2)
        stats_ = analysis.summary["metric_correlation"].get(metric, {})
        rho = stats_.get("spearman_rho")
        ax.set(
            xlabel=metric,
            ylabel="mean realism",
            title=f"{metric}: rho={rho:.2f} (n={len(pairs)})"
            if rho is not None
            else f"{metric} (n={len(pairs)})",
        )
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list) and len(value) == 2:
        return f"[{_fmt(value[0], digits)}, {_fmt(value[1], digits)}]"
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(b64: str, alt: str, caption: str) -> str:
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def mrmc_section(s: dict) -> str:
    """HTML of the MRMC results (summary.json ``mrmc``)."""
    m = s["mrmc"]
    level = f"{100 * (1 - s['settings']['alpha']):.0f}%"
    parts = ["<h2>Readers and cases as random samples (MRMC)</h2>"]
    rows = []
    if m["auc"] is not None:
        rows.append([f"{m['method']} ({m['covariance']})", "AUC", m["auc"], m["auc_ci"], m["f"], m["df1"], m["df2"], m["p"]])
        if m["dbm"]["f"] is not None:
            rows.append(["DBM", "AUC", m["auc"], None, m["dbm"]["f"], m["dbm"]["df1"], m["dbm"]["df2"], m["dbm"]["p"]])
    acc = m.get("accuracy")
    if acc:
        rows.append(
            [f"{acc['method']} ({acc['covariance']})", "accuracy", acc["accuracy"], acc["accuracy_ci"], acc["f"]]
            + [acc["df1"], acc["df2"], acc["p"]]
        )
    if not rows:
        parts.append("<p>No MRMC result: see the notes.</p>")
        return "".join(parts)
    parts.append(
        _table(["test", "figure of merit", "reader average", f"{level} CI", "F", "df1", "df2 (Hillis)", "p (H0: 0.5)"], rows)
    )
    eq = m["equivalence"]
    parts.append(
        f"<p>Equivalence (two one-sided tests, margin +-{_fmt(eq['margin'])} AUC around 0.5): p = {_fmt(eq['p'])}, "
        f"<strong>{'equivalent' if eq['equivalent'] else 'equivalence not shown'}</strong>.</p>"
    )
    if m["per_reader_auc"]:
        parts.append(_table(["reader", "AUC"], [[r, a] for r, a in m["per_reader_auc"].items()]))
    models = m.get("models")
    if models:
        parts.append("<h3>Models compared (treatment effect)</h3>")
        parts.append(_table(["model", "reader-averaged AUC"], [[k, v] for k, v in models["auc"].items()]))
        parts.append(
            f"<p>OR-H test that every model has the same AUC: F = {_fmt(models['f'])}, df = {_fmt(models['df1'])}, "
            f"{_fmt(models['df2'])}, p = {_fmt(models['p'])}. A lower AUC means readers told that model's scans from "
            "real ones less well.</p>"
        )
        parts.append(
            _table(
                ["models", "AUC difference", f"{level} CI"],
                [[" - ".join(d["models"]), d["difference"], d["ci"]] for d in models["differences"]],
            )
        )
    parts.append(
        "<p class=muted>Obuchowski-Rockette with Hillis degrees of freedom: readers and cases random, over the cases "
        "every reader rated (first showings); figure of merit the per-reader ROC AUC of +-confidence. DBM: "
        "Dorfman-Berbaum-Metz on jackknife pseudovalues, the same hypothesis. df2 n/a = infinite (normal "
        "approximation).</p>"
    )
    return "".join(parts)


def render_report(
    analysis: Analysis,
    scale: tuple[int, int],
    dpi: int,
    max_metric_panels: int,
    extra_sections: tuple[str, ...] = (),
) -> tuple[str, dict[str, str]]:
    """Return ``(html, figures)`` where ``figures`` maps a name to its base64 PNG.

    ``extra_sections``: ready HTML sections placed before the notes (e.g. the utility section,
    :mod:`medsynth.analysis.utility_section`).
    """
    s = analysis.summary
    figures: dict[str, str] = {}
    for name, fig in (
        ("roc", roc_figure(analysis)),
        ("realism", realism_figure(analysis, scale)),
        ("metrics", metric_figure(analysis, max_metric_panels)),
    ):
        if fig is not None:
            figures[name] = figure_png(fig, dpi)
    parts = [
        f"<h1>medsynth reader-study analysis</h1><p class=muted>{s['n_readers']} reader(s), {s['n_cases']} case(s), "
        f"{s['n_ratings']} rating(s) (repeats included). medsynth {__version__}, "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>"
    ]
    if s.get("simulated_readers"):
        parts.append(
            "<div class=banner id=simulated-banner>Simulated readers: "
            f"{html.escape(', '.join(s['simulated_readers']))} ({len(s['simulated_readers'])} of {s['n_readers']}) "
            "are not people. Their ratings come from medsynth's reader simulator (ratings.csv column "
            "<code>simulated</code>); every figure on this page describes the simulator, not expert judgement.</div>"
        )
    parts.append(
        "<h2>Summary</h2><ul class=summary>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in s["plain_language"])
        + "</ul>"
    )

    parts.append(mrmc_section(s))
    parts.append("<h2>Telling synthetic from real</h2>")
    keys = ["accuracy", "accuracy_ci", "sensitivity", "specificity", "binom_p", "auc", "auc_ci", "n"]
    rows = [[reader, *(r[k] for k in keys)] for reader, r in s["per_reader"].items()]
    rows.append(["pooled", *(s["pooled"][k] for k in keys)])
    clustered = {k: s["pooled"].get(f"{k}_ci_clustered") for k in ("accuracy", "auc")}
    rows.append(
        ["pooled, CI resampling readers and cases", None, clustered["accuracy"], None, None, None, None]
        + [clustered["auc"], s["pooled"]["n"]]
    )
    parts.append(
        _table(
            [
                "reader",
                "accuracy",
                "95% CI (Clopper-Pearson)",
                "sensitivity",
                "specificity",
                "binomial p",
                "ROC AUC",
                "AUC 95% CI (bootstrap)",
                "n",
            ],
            rows,
        )
    )
    parts.append(
        "<p class=muted>First showings only. Sensitivity: synthetic called synthetic; specificity: real called real; "
        "binomial p: exact two-sided test of the number correct against 50%. AUC from +confidence (called synthetic) / "
        "-confidence (called real). The pooled row's Clopper-Pearson interval, binomial p and AUC bootstrap treat every "
        "rating as independent and so ignore that readers and cases repeat: they are too narrow / too small. The row "
        "below them resamples readers and cases (two-way bootstrap); the MRMC section above is the test to report.</p>"
    )
    if "roc" in figures:
        parts.append(
            _img(
                figures["roc"],
                "ROC curves per reader",
                "ROC curve per reader and pooled; the dashed line is chance.",
            )
        )

    a = s["agreement"]
    parts.append("<h2>Agreement between readers</h2>")
    parts.append(
        _table(
            ["statistic", "value", "on"],
            [
                ["Fleiss' kappa", a["fleiss_kappa_call"], "real/synthetic call"],
                ["Cohen's kappa (2 readers)", a["cohen_kappa_call"], "real/synthetic call"],
                ["Krippendorff's alpha (ordinal)", a["krippendorff_alpha_realism"], "realism"],
                ["ICC(2,1)", a["icc2_realism"], "realism"],
                ["ICC(2,1) 95% CI", a["icc2_realism_ci"], "realism"],
                ["cases rated by every reader", a["n_complete_cases"], ""],
            ],
        )
    )
    intra = s.get("intra_reader")
    if intra:
        rows = [
            [
                reader,
                r["n_pairs"],
                r["call_agreement"],
                r["call_kappa"],
                r["realism_weighted_kappa"],
                r["realism_mean_abs_difference"],
            ]
            for reader, r in [*intra["per_reader"].items(), ("pooled", intra["pooled"])]
        ]
        parts.append("<h3>Same reader, repeated case</h3>")
        parts.append(
            _table(
                [
                    "reader",
                    "pairs",
                    "same call",
                    "Cohen's kappa (call)",
                    "weighted kappa (realism)",
                    "mean |realism change|",
                ],
                rows,
            )
        )

    r = s["realism"]
    parts.append("<h2>Realism: real vs synthetic</h2>")
    parts.append(
        _table(
            [
                "mean real",
                "mean synthetic",
                "Mann-Whitney U",
                "p",
                "rank-biserial r",
                "real cases",
                "synthetic cases",
            ],
            [
                [
                    r["mean_real"],
                    r["mean_synthetic"],
                    r["mannwhitney_u"],
                    r["mannwhitney_p"],
                    r["rank_biserial"],
                    r["n_real_cases"],
                    r["n_synthetic_cases"],
                ]
            ],
        )
    )
    parts.append(
        _img(
            figures["realism"],
            "Realism distributions real vs synthetic",
            "Realism ratings (first showings) and per-case means.",
        )
    )

    parts.append("<h2>Automatic metrics vs expert realism</h2>")
    if s["metric_correlation"]:
        rows = [
            [
                m,
                c["spearman_rho"],
                c["spearman_ci"],
                c["spearman_p"],
                c["spearman_p_holm"],
                c["kendall_tau"],
                c["kendall_ci"],
                c["kendall_p_holm"],
                c["n"],
            ]
            for m, c in s["metric_correlation"].items()
        ]
        parts.append(
            _table(
                [
                    "metric",
                    "Spearman rho",
                    "95% CI",
                    "p",
                    "p (Holm)",
                    "Kendall tau",
                    "95% CI",
                    "p (Holm)",
                    "n",
                ],
                rows,
            )
        )
        parts.append(
            "<p class=muted>Synthetic cases only; per-case mean realism vs each per-image metric, joined on case_id.</p>"
        )
    else:
        parts.append("<p>No per-image metrics.</p>")
    if "metrics" in figures:
        parts.append(
            _img(
                figures["metrics"],
                "Metrics against mean realism",
                "Each metric against per-case mean realism, with the least-squares line.",
            )
        )

    ranking = s.get("model_ranking")
    if ranking:
        parts.append("<h2>Ranking of models: experts vs set-level metrics</h2>")
        parts.append(
            _table(
                ["model", "mean realism", "fooled rate", "cases"],
                [
                    [m, v["mean_realism"], v["fooled_rate"], v["n_cases"]]
                    for m, v in ranking["models"].items()
                ],
            )
        )
        parts.append(
            f"<p>Experts' ranking (best first): {html.escape(', '.join(ranking['expert_ranking']))}</p>"
        )
        parts.append(
            _table(
                [
                    "metric",
                    "better",
                    "ranking (best first; = ties)",
                    "Spearman rho",
                    "Kendall tau",
                    "n models",
                ],
                [
                    [
                        m,
                        str(v["better"]),
                        ", ".join(v["ranking"]),
                        v["spearman_rho"],
                        v["kendall_tau"],
                        v["n"],
                    ]
                    for m, v in ranking["metrics"].items()
                ],
            )
        )
    parts.extend(extra_sections)
    if s["notes"]:
        parts.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in s["notes"]) + "</ul>"
        )
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>medsynth analysis</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    return page, figures
