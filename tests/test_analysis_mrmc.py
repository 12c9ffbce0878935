"""MRMC statistics (medsynth.analysis.mrmc) against independent computations, and their calibration on
Roe-Metz simulated studies (small version of benchmarks/mrmc_calibration.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medsynth.analysis import mrmc
from medsynth.analysis.roe_metz import STRUCTURES, calibration, delta_for_auc, expected_auc, simulate_scores


def ratings_study(seed: int = 0, readers: int = 4, m: int = 12, n: int = 15):
    """Discrete signed-confidence scores (ties included), like a real study."""
    rng = np.random.default_rng(seed)
    positive, negative = simulate_scores(STRUCTURES["HL"], 1.0, readers, m, n, 1, rng)
    return np.clip(np.rint(positive[0] * 2), -5, 5), np.clip(np.rint(negative[0] * 2), -5, 5)


def test_auc_and_delong_covariance_match_their_formulas():
    positive, negative = ratings_study()
    auc, v10, v01 = mrmc.auc_components(positive, negative)
    readers, m, n = positive.shape[0], positive.shape[1], negative.shape[1]
    truth = np.r_[np.ones(m), np.zeros(n)]
    for r in range(readers):
        assert auc[r] == pytest.approx(roc_auc_score(truth, np.r_[positive[r], negative[r]]))
    # DeLong et al. 1988 written out with loops: psi, V10, V01, S10, S01
    def psi(x, y):
        return 1.0 if x > y else 0.5 if x == y else 0.0

    V10 = np.array([[np.mean([psi(positive[r, i], negative[r, j]) for j in range(n)]) for i in range(m)] for r in range(readers)])
    V01 = np.array([[np.mean([psi(positive[r, i], negative[r, j]) for i in range(m)]) for j in range(n)] for r in range(readers)])
    S = np.zeros((readers, readers))
    for a in range(readers):
        for b in range(readers):
            s10 = sum((V10[a, i] - auc[a]) * (V10[b, i] - auc[b]) for i in range(m)) / (m - 1)
            s01 = sum((V01[a, j] - auc[a]) * (V01[b, j] - auc[b]) for j in range(n)) / (n - 1)
            S[a, b] = s10 / m + s01 / n
    np.testing.assert_allclose(mrmc.delong_covariance(v10, v01), S, rtol=1e-12, atol=1e-15)


def test_jackknife_by_brute_force():
    positive, negative = ratings_study(seed=3)
    auc, v10, v01 = mrmc.auc_components(positive, negative)
    readers, m, n = positive.shape[0], positive.shape[1], negative.shape[1]
    scores = np.concatenate([positive, negative], axis=1)
    truth = np.r_[np.ones(m), np.zeros(n)]
    loo = np.array(
        [[roc_auc_score(np.delete(truth, k), np.delete(scores[r], k)) for k in range(m + n)] for r in range(readers)]
    )
    np.testing.assert_allclose(mrmc.auc_leave_one_out(auc, v10, v01), loo, rtol=1e-12)
    c = m + n
    centred = loo - loo.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(mrmc.jackknife_covariance(loo), (c - 1) / c * centred @ centred.T, rtol=1e-12)
    correct = (scores > 0) == truth.astype(bool)
    accuracy, accuracy_loo = mrmc.accuracy_leave_one_out(correct)
    brute = np.array([[np.delete(correct[r], k).mean() for k in range(c)] for r in range(readers)])
    np.testing.assert_allclose(accuracy_loo, brute, rtol=1e-12)
    np.testing.assert_allclose(accuracy, correct.mean(axis=1))


def test_or_single_by_hand_and_dbm_equals_or_with_jackknife_covariance():
    positive, negative = ratings_study(seed=5, readers=5)
    auc, v10, v01 = mrmc.auc_components(positive, negative)
    cov = mrmc.delong_covariance(v10, v01)
    result = mrmc.or_single(auc, cov, 0.5, 0.05)
    r = len(auc)
    ms_r = np.var(auc, ddof=1)
    cov2 = np.mean([cov[a, b] for a in range(r) for b in range(r) if a != b])
    den = ms_r + r * max(cov2, 0.0)
    ddf = den**2 / (ms_r**2 / (r - 1))
    f = (auc.mean() - 0.5) ** 2 / (den / r)
    assert result["f"] == pytest.approx(f) and result["df2"] == pytest.approx(ddf)
    assert result["p"] == pytest.approx(stats.f.sf(f, 1, ddf))
    half = stats.t.ppf(0.975, ddf) * np.sqrt(den / r)
    assert [result["ci_low"], result["ci_high"]] == pytest.approx([auc.mean() - half, auc.mean() + half])
    # the p of the F test and the t interval agree: 0.5 is outside the CI iff p < 0.05
    assert (result["p"] < 0.05) == (not result["ci_low"] <= 0.5 <= result["ci_high"])
    # Hillis et al. 2008: DBM on centred pseudovalues is OR-H with jackknife covariance
    loo = mrmc.auc_leave_one_out(auc, v10, v01)
    jack = mrmc.or_single(auc, mrmc.jackknife_covariance(loo), 0.5)
    dbm = mrmc.dbm_single(auc, loo, 0.5)
    assert dbm["f"] == pytest.approx(jack["f"], rel=1e-10) and dbm["df2"] == pytest.approx(jack["df2"], rel=1e-10)
    assert dbm["estimate"] == pytest.approx(auc.mean())


def test_or_treatments_by_hand():
    rng = np.random.default_rng(2)
    theta = rng.uniform(0.5, 0.9, (3, 4))
    a = rng.normal(size=(12, 12))
    cov = a @ a.T / 500
    result = mrmc.or_treatments(theta, cov)
    t, r = theta.shape
    pairs = [(i, j) for i in range(12) for j in range(12) if i != j]
    cov2 = np.mean([cov[i, j] for i, j in pairs if i // r == j // r])
    cov3 = np.mean([cov[i, j] for i, j in pairs if i // r != j // r and i % r != j % r])
    ms_t = r * np.var(theta.mean(axis=1), ddof=1)
    inter = theta - theta.mean(1, keepdims=True) - theta.mean(0, keepdims=True) + theta.mean()
    ms_tr = (inter**2).sum() / ((t - 1) * (r - 1))
    den = ms_tr + r * max(cov2 - cov3, 0)
    assert result["f"] == pytest.approx(ms_t / den)
    assert result["df2"] == pytest.approx(den**2 / (ms_tr**2 / ((t - 1) * (r - 1))))
    assert result["p"] == pytest.approx(stats.f.sf(ms_t / den, t - 1, result["df2"]))


def test_tost_is_the_90_percent_interval_inside_the_margin():
    estimate, se, ddf = np.array([0.51, 0.54, 0.47]), np.array([0.01, 0.01, 0.03]), np.array([20.0, 20.0, 8.0])
    p = mrmc.tost(estimate, se, ddf, 0.05)
    half = stats.t.ppf(0.95, ddf) * se
    inside = (estimate - half > 0.45) & (estimate + half < 0.55)
    np.testing.assert_array_equal(p < 0.05, inside)
    assert inside.tolist() == [True, False, False]


def test_fixed_reader_single_is_a_z_test():
    result = mrmc.fixed_reader_single(np.array([0.7]), np.array([[0.0025]]))
    assert result["f"] == pytest.approx(16.0) and result["p"] == pytest.approx(stats.chi2.sf(16.0, 1))
    assert result["ci_low"] == pytest.approx(0.7 - 1.959964 * 0.05, rel=1e-5)


def test_expected_auc_inverts_delta():
    for structure in STRUCTURES.values():
        assert expected_auc(delta_for_auc(0.8, structure), structure) == pytest.approx(0.8)


def test_calibration_small_or_h_holds_alpha_where_the_pooled_binomial_does_not():
    """CI version of benchmarks/mrmc_calibration.py: 1500 null studies (HL, 4 readers x 50 cases).

    OR-H rejects near 5% (bound 2.5-8.5%: 4 binomial SEs); the naive pooled binomial test, which
    treats the 200 correlated calls as independent, rejects ~19% and fails the same bound.
    """
    rng = np.random.default_rng(11)
    null = calibration(STRUCTURES["HL"], 4, 25, 25, 1500, 0.5, rng)
    assert 0.025 <= null["or_reject"] <= 0.085
    assert 0.025 <= null["dbm_reject"] <= 0.085
    assert null["binom_reject"] > 0.085
    assert null["or_dbm_agreement"] > 0.98
    alt = calibration(STRUCTURES["LL"], 4, 25, 25, 1500, 0.75, rng)
    assert 0.90 <= alt["or_coverage"] <= 0.98
    assert alt["or_reject"] > 0.8


def test_clustered_intervals_are_wider_than_independent_ones_when_cases_repeat():
    """HL null study with strong case effects: resampling readers and cases widens the pooled
    accuracy interval beyond Clopper-Pearson's, which treats the 400 calls as independent."""
    import pandas as pd

    from medsynth.analysis.bootstrap import BootstrapSettings
    from medsynth.analysis.reader_stats import clustered_intervals, detection_performance

    positive, negative = simulate_scores(STRUCTURES["HL"], 0.0, 8, 25, 25, 1, np.random.default_rng(4))
    scores = np.concatenate([positive[0], negative[0]], axis=1)  # (8 readers, 50 cases)
    rows = [
        {
            "reader_id": f"r{r}",
            "case_id": f"c{k}",
            "is_synthetic": int(k < 25),
            "called_synthetic": int(scores[r, k] > 0),
            "confidence": int(np.clip(1 + abs(scores[r, k]) * 2, 1, 5)),
        }
        for r in range(8)
        for k in range(50)
    ]
    firsts = pd.DataFrame(rows)
    settings = BootstrapSettings(n_resamples=1000)
    clustered = clustered_intervals(firsts, settings)
    naive = detection_performance(firsts, 0.05, settings)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(clustered["accuracy_ci_clustered"]) > 1.3 * width(naive["accuracy_ci"])
    assert width(clustered["auc_ci_clustered"]) > 1.3 * width(naive["auc_ci"])
    assert clustered["accuracy_ci_clustered"][0] < naive["accuracy"] < clustered["accuracy_ci_clustered"][1]


# Van Dyke (RJafroc dataset02, MRMCaov VanDyke): 5 readers x 114 cases (45 positive) x 2 modalities.
VANDYKE = Path(__file__).parent / "data" / "vandyke_roc.csv"
# Published output, as printed. DeLong: MRMCaov JSS paper (docs/jss/MRMCaov.tex, `mrmc(empirical_auc(...),
# cov = DeLong)`); jackknife: RJafroc book, OR hand calculation on dataset02 (RJafrocBook
# docs/10C-OR-AnalysisApplications.md), identical to RJafroc StSignificanceTesting(method = "ORH").
VANDYKE_PUBLISHED = {
    "DeLong": {
        "f": "4.484854", "df2": "15.06611", "p": "0.05123303", "cov2": "0.0003395265", "cov3": "0.0002358497",
        "diff_se": "0.0206825", "diff_ci": ("-0.0878671960", "0.0002665519"),
        "treatments": [  # estimate, Cov2, StdErr, df, CI
            ("0.8970370", "0.0004775239", "0.03307642", "12.59597", "0.8253461", "0.9687280"),
            ("0.9408374", "0.0002015292", "0.02150464", "12.56530", "0.8942155", "0.9874592"),
        ],
    },
    "jackknife": {
        "f": "4.456", "df2": "15.26", "p": "0.05167", "cov2": "0.0003441", "cov3": "0.0002390",
        "diff_se": None, "diff_ci": ("-0.0879595", "0.0003589"),
        "treatments": [
            ("0.8970", "0.0004840", "0.03317", "12.74", "0.8252", "0.9689"),
            ("0.9408", "0.0002042", "0.02157", "12.71", "0.8941", "0.9875"),
        ],
    },
}


def as_printed(value: float, printed: str) -> bool:
    """``value`` rounds to ``printed`` at the printed number of decimals."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(value) - float(printed)) <= 0.5 * 10.0**-decimals + 1e-12


def vandyke_scores(column_truth: int) -> np.ndarray:
    """(2 modalities, 5 readers, cases of one truth state) ratings of the Van Dyke study."""
    data = pd.read_csv(VANDYKE, comment="#").sort_values(["reader", "case"])
    part = data[data["truth"] == column_truth]
    readers = sorted(part["reader"].unique())
    return np.stack(
        [np.stack([part.loc[part["reader"] == r, col].to_numpy(float) for r in readers]) for col in ("cine_mri", "se_mri")]
    )


@pytest.mark.parametrize("covariance", ["DeLong", "jackknife"])
def test_or_h_matches_published_van_dyke_analysis(covariance):
    """OR-H treatment comparison and per-modality analyses on Van Dyke equal MRMCaov's and RJafroc's
    printed figures at their printed precision (a wrong covariance average, df or t quantile fails)."""
    positive, negative = vandyke_scores(1), vandyke_scores(0)
    t, r, m = positive.shape
    auc, v10, v01 = mrmc.auc_components(positive.reshape(t * r, m), negative.reshape(t * r, -1))
    # per-reader AUCs printed by RJafroc (UtilFigureOfMerit, 4 digits)
    printed_auc = ["0.9196", "0.8588", "0.9039", "0.9731", "0.8298", "0.9478", "0.9053", "0.9217", "0.9994", "0.9300"]
    assert all(as_printed(a, p) for a, p in zip(auc, printed_auc, strict=True))
    if covariance == "DeLong":
        cov = mrmc.delong_covariance(v10, v01)
    else:
        cov = mrmc.jackknife_covariance(mrmc.auc_leave_one_out(auc, v10, v01))
    published = VANDYKE_PUBLISHED[covariance]
    result = mrmc.or_treatments(auc.reshape(t, r), cov)
    for key in ("f", "df2", "p", "cov2", "cov3"):
        assert as_printed(result[key], published[key]), (key, result[key], published[key])
    assert result["df1"] == 1
    diff = result["estimates"][0] - result["estimates"][1]
    half = result["diff_t"] * result["diff_se"]
    assert as_printed(diff - half, published["diff_ci"][0]) and as_printed(diff + half, published["diff_ci"][1])
    if published["diff_se"]:
        assert as_printed(result["diff_se"], published["diff_se"])
    for i, (estimate, cov2, se, df, low, high) in enumerate(published["treatments"]):
        block = cov[i * r : (i + 1) * r, i * r : (i + 1) * r]
        single = mrmc.or_single(auc.reshape(t, r)[i], block, 0.5)
        got = [single["estimate"], single["cov2"], single["se"], single["df2"], single["ci_low"], single["ci_high"]]
        for value, printed in zip(got, (estimate, cov2, se, df, low, high), strict=True):
            assert as_printed(value, printed), (covariance, i, value, printed)
        if covariance == "jackknife":
            # DBM on the same modality (Hillis et al. 2008: equal to OR-H with jackknife covariance)
            loo = mrmc.auc_leave_one_out(auc, v10, v01)[i * r : (i + 1) * r]
            dbm = mrmc.dbm_single(auc.reshape(t, r)[i], loo, 0.5)
            assert as_printed(dbm["df2"], df) and dbm["f"] == pytest.approx(single["f"], rel=1e-10)


def test_or_h_with_sensitivity_matches_published_van_dyke_analysis():
    """Binary figure of merit (sensitivity of rating >= 3, jackknife over the 45 positive cases) against
    MRMCaov's printed `mrmc(binary_sens(truth, rating >= 3), ...)` (docs/jss/MRMCaov.tex)."""
    positive = vandyke_scores(1)
    t, r, m = positive.shape
    sensitivity, loo = mrmc.accuracy_leave_one_out((positive >= 3).reshape(t * r, m))
    cov = mrmc.jackknife_covariance(loo)
    result = mrmc.or_treatments(sensitivity.reshape(t, r), cov)
    published = {"f": "6.689493", "df2": "15.71732", "p": "0.02008822", "cov1": "0.0009943883",
                 "cov2": "0.0010145903", "cov3": "0.0006604938", "diff_se": "0.03780451"}
    for key, printed in published.items():
        assert as_printed(result[key], printed), (key, result[key], printed)
    for i, (se, df, low) in enumerate([("0.05893747", "14.456811", "0.6961876"), ("0.03741657", "7.575855", "0.8328691")]):
        single = mrmc.or_single(sensitivity.reshape(t, r)[i], cov[i * r : (i + 1) * r, i * r : (i + 1) * r], 0.5)
        assert as_printed(single["se"], se) and as_printed(single["df2"], df) and as_printed(single["ci_low"], low)
