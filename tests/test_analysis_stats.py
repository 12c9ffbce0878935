"""medsynth analyze statistics, each checked against an independent computation written here.

A hand-made study of 3 readers x 8 cases (4 synthetic, 4 real) with 3 repeated showings; every
figure of summary.json is recomputed by plain counting or its textbook formula.
"""

from __future__ import annotations

import io
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.io import load_ratings
from medsynth.analysis.summary import AnalysisSettings, analyze

#  reader  case  truth call conf realism repeat
TABLE = """reader_id,case_id,is_synthetic,called_synthetic,confidence,realism,repeat
A,s1,1,1,5,2,0
A,s2,1,1,3,3,0
A,s3,1,0,2,4,0
A,s4,1,1,4,1,0
A,r1,0,0,4,5,0
A,r2,0,0,2,4,0
A,r3,0,1,3,3,0
A,r4,0,0,5,5,0
B,s1,1,1,4,1,0
B,s2,1,0,3,4,0
B,s3,1,0,4,5,0
B,s4,1,1,2,2,0
B,r1,0,0,3,4,0
B,r2,0,1,2,3,0
B,r3,0,1,4,2,0
B,r4,0,0,4,5,0
C,s1,1,1,5,1,0
C,s2,1,1,4,2,0
C,s3,1,1,1,3,0
C,s4,1,1,3,2,0
C,r1,0,0,5,5,0
C,r2,0,0,3,4,0
C,r3,0,0,2,4,0
C,r4,0,1,1,3,0
A,s1,1,1,4,2,1
A,r3,0,0,2,4,1
B,s2,1,0,3,3,1
"""

PER_IMAGE = """case_id,metric_good,metric_bad,metric_nan
s1,0.10,3.0,1.0
s2,0.35,1.0,
s3,0.90,4.0,2.0
s4,0.05,2.0,0.5
unrated,5.0,5.0,5.0
"""

FAST = AnalysisSettings(bootstrap=BootstrapSettings(n_resamples=300, seed=1))


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("ratings") / "ratings.csv"
    path.write_text(TABLE)
    return load_ratings(path)


@pytest.fixture(scope="module")
def per_image() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(PER_IMAGE)).set_index("case_id")


@pytest.fixture(scope="module")
def summary(ratings, per_image) -> dict:
    return analyze(ratings, per_image, None, FAST).summary


@pytest.fixture(scope="module")
def firsts(ratings) -> pd.DataFrame:
    return ratings[ratings["repeat"] == 0]


# ---------------------------------------------------------------- independent reference formulas


def binom_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided binomial p vs 0.5: total probability of outcomes no more likely than k."""
    pmf = stats.binom.pmf(np.arange(n + 1), n, 0.5)
    return float(pmf[pmf <= pmf[k] * (1 + 1e-7)].sum())


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    low = 0.0 if k == 0 else stats.beta.ppf(alpha / 2, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.ppf(1 - alpha / 2, k + 1, n - k)
    return low, high


def auc_by_pairs(truth, score) -> float:
    """AUC = P(score of a synthetic case > score of a real case), ties counting half."""
    pos = [s for t, s in zip(truth, score, strict=True) if t == 1]
    neg = [s for t, s in zip(truth, score, strict=True) if t == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def fleiss_textbook(calls: np.ndarray) -> float:
    """calls: (cases, readers) of 0/1. Fleiss (1971)."""
    n_cases, n = calls.shape
    counts = np.stack([(calls == 0).sum(1), (calls == 1).sum(1)], axis=1)  # n_ij
    p_j = counts.sum(0) / (n_cases * n)
    p_i = ((counts**2).sum(1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), (p_j**2).sum()
    return (p_bar - p_e) / (1 - p_e)


def cohen_textbook(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    po = np.mean(a == b)
    pe = sum(np.mean(a == c) * np.mean(b == c) for c in (0, 1))
    return (po - pe) / (1 - pe)


def icc21_anova(x: np.ndarray) -> float:
    """x: (cases, readers). ICC(2,1) from the two-way ANOVA mean squares (Shrout & Fleiss)."""
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc, mse = ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)


def krippendorff_ordinal_textbook(x: np.ndarray) -> float:
    """x: (cases, readers), complete. Krippendorff (2011) coincidence matrix + ordinal metric."""
    values = np.unique(x)
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in x:
        m = len(unit)
        for i, j in itertools.permutations(range(m), 2):
            o[index[unit[i]], index[unit[j]]] += 1.0 / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    delta = np.zeros_like(o)
    for c, k in itertools.product(range(len(values)), repeat=2):
        lo, hi = min(c, k), max(c, k)
        delta[c, k] = (n_c[lo : hi + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2
    observed = (o * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    return 1 - observed / expected


def kendall_tau_b_by_pairs(x, y) -> float:
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif dx == dy:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / math.sqrt((conc + disc + tx) * (conc + disc + ty))


# ---------------------------------------------------------------- tests


def test_summary_has_the_design_keys_and_valid_json(summary):
    five = {"accuracy", "sensitivity", "specificity", "binom_p", "auc"}
    assert {
        "n_readers",
        "n_cases",
        "n_ratings",
        "pooled",
        "per_reader",
        "agreement",
        "realism",
        "metric_correlation",
    } <= set(summary)
    assert five <= set(summary["pooled"])
    assert set(summary["per_reader"]) == {"A", "B", "C"}
    assert all(five <= set(r) for r in summary["per_reader"].values())
    assert {"fleiss_kappa_call", "cohen_kappa_call", "krippendorff_alpha_realism", "icc2_realism"} <= set(
        summary["agreement"]
    )
    assert {"mean_real", "mean_synthetic", "mannwhitney_u", "mannwhitney_p"} <= set(summary["realism"])
    for r in summary["metric_correlation"].values():
        assert {"spearman_rho", "spearman_p", "kendall_tau", "kendall_p", "n"} <= set(r)
    text = json.dumps(summary, allow_nan=False)  # raises on NaN/inf
    json.loads(text)


def test_counts(summary):
    assert summary["n_readers"] == 3
    assert summary["n_cases"] == 8
    assert summary["n_ratings"] == 27  # repeats included


@pytest.mark.parametrize("reader", [None, "A", "B", "C"])
def test_detection_figures_by_counting(summary, firsts, reader):
    rows = firsts if reader is None else firsts[firsts["reader_id"] == reader]
    got = summary["pooled"] if reader is None else summary["per_reader"][reader]
    truth, call = rows["is_synthetic"].tolist(), rows["called_synthetic"].tolist()
    correct = sum(t == c for t, c in zip(truth, call, strict=True))
    n_syn = sum(truth)
    tp = sum(t == 1 and c == 1 for t, c in zip(truth, call, strict=True))
    tn = sum(t == 0 and c == 0 for t, c in zip(truth, call, strict=True))
    assert got["accuracy"] == pytest.approx(correct / len(truth))
    assert got["sensitivity"] == pytest.approx(tp / n_syn)
    assert got["specificity"] == pytest.approx(tn / (len(truth) - n_syn))
    assert got["binom_p"] == pytest.approx(binom_two_sided_p(correct, len(truth)), rel=1e-9)
    assert got["accuracy_ci"] == pytest.approx(clopper_pearson(correct, len(truth)), rel=1e-9)
    assert got["sensitivity_ci"] == pytest.approx(clopper_pearson(tp, n_syn), rel=1e-9)
    score = [c if k == 1 else -c for k, c in zip(call, rows["confidence"], strict=True)]
    assert got["auc"] == pytest.approx(auc_by_pairs(truth, score))
    low, high = got["auc_ci"]
    assert 0.0 <= low <= high <= 1.0


def test_hand_checked_values(summary):
    # reader A: 6 of 8 correct; pooled: 6 + 4 + 7 = 17 of 24
    assert summary["per_reader"]["A"]["accuracy"] == 0.75
    assert summary["pooled"]["accuracy"] == pytest.approx(17 / 24)
    assert summary["pooled"]["binom_p"] == pytest.approx(
        2 * sum(math.comb(24, k) for k in range(17, 25)) / 2**24
    )


def test_agreement_against_textbook_formulas(summary, firsts):
    calls = firsts.pivot(index="case_id", columns="reader_id", values="called_synthetic").to_numpy()
    realism = firsts.pivot(index="case_id", columns="reader_id", values="realism").to_numpy().astype(float)
    agreement = summary["agreement"]
    assert agreement["fleiss_kappa_call"] == pytest.approx(fleiss_textbook(calls))
    assert agreement["cohen_kappa_call"] is None  # 3 readers
    assert agreement["icc2_realism"] == pytest.approx(icc21_anova(realism))
    assert agreement["krippendorff_alpha_realism"] == pytest.approx(krippendorff_ordinal_textbook(realism))
    assert agreement["n_complete_cases"] == 8


def test_cohen_kappa_with_two_readers(ratings):
    two = ratings[ratings["reader_id"].isin(["A", "C"])]
    summary = analyze(two, None, None, FAST).summary
    firsts = two[two["repeat"] == 0].pivot(index="case_id", columns="reader_id", values="called_synthetic")
    expected = cohen_textbook(firsts["A"], firsts["C"])
    assert summary["agreement"]["cohen_kappa_call"] == pytest.approx(expected)
    assert summary["n_readers"] == 2


def test_realism_mann_whitney(summary, firsts):
    means = firsts.groupby("case_id").agg(m=("realism", "mean"), t=("is_synthetic", "first"))
    x, y = means.loc[means.t == 1, "m"].to_numpy(), means.loc[means.t == 0, "m"].to_numpy()
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    r = summary["realism"]
    assert r["mean_synthetic"] == pytest.approx(x.mean())
    assert r["mean_real"] == pytest.approx(y.mean())
    assert r["mannwhitney_u"] == pytest.approx(u)
    assert r["rank_biserial"] == pytest.approx(2 * u / (len(x) * len(y)) - 1)
    # asymptotic two-sided p with tie and continuity correction (the data have ties)
    pooled = np.concatenate([x, y])
    _, t = np.unique(pooled, return_counts=True)
    n1, n2, n = len(x), len(y), len(pooled)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - (t**3 - t).sum() / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    assert r["mannwhitney_p"] == pytest.approx(2 * stats.norm.sf(z), rel=1e-6)


def test_metric_correlation_by_ranks(summary, firsts, per_image):
    means = firsts[firsts.is_synthetic == 1].groupby("case_id")["realism"].mean()
    results = summary["metric_correlation"]
    assert set(results) == {"metric_good", "metric_bad", "metric_nan"}
    for metric, expected_n in (("metric_good", 4), ("metric_bad", 4), ("metric_nan", 3)):
        pairs = pd.concat([means, per_image[metric]], axis=1, join="inner").dropna()
        x, y = pairs[metric].to_numpy(), pairs["realism"].to_numpy()
        rho = np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1]
        got = results[metric]
        assert got["n"] == expected_n  # unrated per_image row ignored, NaN dropped pairwise
        assert got["spearman_rho"] == pytest.approx(rho)
        t = rho * math.sqrt((len(x) - 2) / (1 - rho**2))
        assert got["spearman_p"] == pytest.approx(2 * stats.t.sf(abs(t), len(x) - 2))
        assert got["kendall_tau"] == pytest.approx(kendall_tau_b_by_pairs(x, y))
    # Holm by hand
    names = list(results)
    p = np.array([results[m]["spearman_p"] for m in names])
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    for name, value in zip(names, adjusted, strict=True):
        assert results[name]["spearman_p_holm"] == pytest.approx(value)


def test_intra_reader_agreement_by_counting(summary):
    intra = summary["intra_reader"]
    # A: s1 same call (1 -> 1), r3 changed (1 -> 0); B: s2 same (0 -> 0)
    assert intra["pooled"]["n_pairs"] == 3
    assert intra["pooled"]["call_agreement"] == pytest.approx(2 / 3)
    assert intra["per_reader"]["A"]["call_agreement"] == 0.5
    assert intra["per_reader"]["B"]["call_agreement"] == 1.0
    # realism: A s1 2->2, A r3 3->4, B s2 4->3
    assert intra["pooled"]["realism_mean_abs_difference"] == pytest.approx(2 / 3)
    assert "C" not in intra["per_reader"]


def test_plain_language_leads_with_mrmc_then_pooled_accuracy_and_p(summary):
    lines = summary["plain_language"]
    assert lines[0].startswith("Generalising over readers and cases (OR-H")
    assert "no evidence that readers can tell" in lines[0]  # 3 readers x 8 cases: p = 0.175
    assert "Equivalence not shown" in lines[1] and "not evidence that synthetic scans look real" in lines[1]
    pooled = next(line for line in lines if "as if independent" in line)
    assert "71% accuracy" in pooled and "p=" in pooled
