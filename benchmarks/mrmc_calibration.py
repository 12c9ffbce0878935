"""Calibration of medsynth's MRMC tests on Roe-Metz simulated reader studies (Roe & Metz 1997).

    nice .venv/bin/python benchmarks/mrmc_calibration.py [--studies 10000] [--readers 4] [--cases 50]
        [--auc 0.75] [--seed 0] [--out mrmc_calibration.json]

For each Roe-Metz variance structure (HL, LL, HH, LH; Hillis 2018 Table 2): under the null (every
reader's expected AUC 0.5) the share of studies where OR-H (DeLong and jackknife covariance), DBM
and the naive pooled binomial test reject at alpha = 0.05; under a non-null model (``--auc``) the
coverage of the 95% OR-H interval of the reader-averaged AUC and the power; and how often OR-H and
DBM take the same decision. Half the cases are synthetic. A few seconds per 10000 studies.

Two more tables say where OR-H's excess over 5% comes from (``--no-diagnose`` skips them):

- the treatment comparison (two modalities of equal AUC, Roe & Metz's two-test model with the
  structure's reader and case variance split equally into main and test-by-factor components, as in
  Roe & Metz 1997 Table 1): the null that Hillis's simulation studies report;
- the single-test null re-analysed with the true case covariance (Var, Cov2 of the reader AUCs over
  case samples, by Monte Carlo with reader effects fixed) in place of the DeLong estimate, and the
  OR model itself (normal reader AUCs, known Cov2, 4 and 10 readers): what the Hillis df give when
  nothing about the cases is estimated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from medsynth.analysis import mrmc
from medsynth.analysis.roe_metz import STRUCTURES, RoeMetzStructure, calibration, simulate_scores


def _two_test_scores(s: RoeMetzStructure, shift: float, size: int, n_readers: int, cases: int, rng) -> np.ndarray:
    """(size, 2 tests, R, cases) Roe-Metz decision variables of one truth state (see treatment_null)."""

    def normal(var: float, shape: tuple) -> np.ndarray:
        return rng.normal(0.0, np.sqrt(var), (size, *shape))

    return (
        shift
        + normal(s.var_r / 2, (1, n_readers, 1))
        + normal(s.var_r / 2, (2, n_readers, 1))
        + normal(s.var_c / 2, (1, 1, cases))
        + normal(s.var_c / 2, (2, 1, cases))
        + normal(s.var_rc, (1, n_readers, cases))
        + normal(s.var_error, (2, n_readers, cases))
    )


def treatment_null(
    structure: RoeMetzStructure, n_readers: int, m: int, n: int, n_studies: int, rng, alpha: float, chunk: int = 500
) -> float:
    """Rejection rate of the OR-H (DeLong) test of equal AUCs for two modalities of the same AUC (0.75).

    Roe & Metz two-test model: X_trk = delta d + R_r + TR_tr + C_k + TC_tk + RC_rk + E_trk, every
    effect independent per truth state; var_R = var_TR = structure.var_r / 2, var_C = var_TC =
    structure.var_c / 2, so each modality alone follows ``structure``.
    """
    s = structure
    delta = float(stats.norm.ppf(0.75) * np.sqrt(2 * s.within + 2 * s.var_r))
    rejected = 0
    for start in range(0, n_studies, chunk):
        size = min(chunk, n_studies - start)

        positive = _two_test_scores(s, delta, size, n_readers, m, rng)  # (S, 2, R, m)
        negative = _two_test_scores(s, 0.0, size, n_readers, n, rng)
        auc, v10, v01 = mrmc.auc_components(positive.reshape(size, 2 * n_readers, m), negative.reshape(size, 2 * n_readers, n))
        result = mrmc.or_treatments(auc.reshape(size, 2, n_readers), mrmc.delong_covariance(v10, v01), alpha)
        rejected += int(np.sum(result["p"] < alpha))
    return rejected / n_studies


def oracle_null(
    structure: RoeMetzStructure, n_readers: int, m: int, n: int, n_studies: int, rng, alpha: float
) -> tuple[float, float, float]:
    """Single-test null analysed with the true case covariance instead of DeLong's estimate.

    Returns ``(rejection with DeLong, rejection with the true covariance, E[MS_R] / (R Cov2))``.
    The true Var and Cov2 of two readers' AUCs over case samples come from 20000 studies with the
    reader effects fixed at zero (under the null every reader's AUC is then 0.5).
    """
    fixed = RoeMetzStructure(0.0, structure.var_c, structure.var_rc, structure.var_error)
    auc2, _, _ = mrmc.auc_components(*simulate_scores(fixed, 0.0, 2, m, n, 20000, rng))
    (var, cov2), _ = np.cov(auc2.T)
    true_cov = np.full((n_readers, n_readers), cov2) + (var - cov2) * np.eye(n_readers)
    est_rej = oracle_rej = 0
    ms_r = 0.0
    for start in range(0, n_studies, 2000):
        size = min(2000, n_studies - start)
        auc, v10, v01 = mrmc.auc_components(*simulate_scores(structure, 0.0, n_readers, m, n, size, rng))
        est_rej += int(np.sum(mrmc.or_single(auc, mrmc.delong_covariance(v10, v01), 0.5, alpha)["p"] < alpha))
        oracle = mrmc.or_single(auc, np.broadcast_to(true_cov, (size, n_readers, n_readers)), 0.5, alpha)
        oracle_rej += int(np.sum(oracle["p"] < alpha))
        ms_r += float(np.sum(oracle["ms_r"]))
    return est_rej / n_studies, oracle_rej / n_studies, ms_r / n_studies / (n_readers * cov2)


def or_model_null(n_readers: int, ratio: float, n_draws: int, rng, alpha: float) -> float:
    """Rejection rate of the OR-H single test under the OR model itself: normal reader AUCs,
    Cov2 known, E[MS_R] / (R Cov2) = ``ratio``; only MS_R (R - 1 df) is estimated."""
    b = 1.0
    a = ratio * b
    z = rng.standard_normal(n_draws)
    w = rng.chisquare(n_readers - 1, n_draws) / (n_readers - 1)
    den = a * w + b
    ddf = den**2 / ((a * w) ** 2 / (n_readers - 1))
    return float(np.mean(stats.f.sf((a + b) * z**2 / den, 1, ddf) < alpha))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10000, help="simulated studies per structure and model")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--cases", type=int, default=50, help="cases per study, half synthetic")
    parser.add_argument("--auc", type=float, default=0.75, help="reader-averaged AUC of the non-null model")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    parser.add_argument("--no-diagnose", dest="diagnose", action="store_false", help="skip the two diagnostic tables")
    args = parser.parse_args()
    m = args.cases // 2
    n = args.cases - m
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = {}
    for name, structure in STRUCTURES.items():
        null = calibration(structure, args.readers, m, n, args.studies, 0.5, rng, args.alpha)
        alt = calibration(structure, args.readers, m, n, args.studies, args.auc, rng, args.alpha)
        rows[name] = {"null": null, "non_null": alt}
    seconds = time.perf_counter() - start
    print(
        f"Roe-Metz calibration: {args.readers} readers x {args.cases} cases ({m} synthetic), "
        f"{args.studies} studies per cell, alpha {args.alpha}, seed {args.seed}, {seconds:.1f} s\n"
    )
    print("| structure | OR-H DeLong | OR-H jackknife | DBM | pooled binomial | OR-H/DBM agree "
          f"| coverage (AUC {args.auc}) OR-H DeLong | jackknife | power OR-H | OR-H/DBM agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        a, b = r["null"], r["non_null"]
        print(
            f"| {name} | {a['or_reject']:.4f} | {a['orj_reject']:.4f} | {a['dbm_reject']:.4f} "
            f"| {a['binom_reject']:.4f} | {a['or_dbm_agreement']:.4f} | {b['or_coverage']:.4f} "
            f"| {b['orj_coverage']:.4f} | {b['or_reject']:.4f} | {b['or_dbm_agreement']:.4f} |"
        )
    print("\n(null columns: rejection rate at alpha; binomial SE of a rate p over N studies: sqrt(p(1-p)/N))")
    diagnosis = {}
    if args.diagnose:
        start = time.perf_counter()
        print("\n| structure | OR-H DeLong, treatment comparison (2 modalities, equal AUC 0.75) | single test: DeLong "
              "| single test: true case covariance | E[MS_R] / (R Cov2) |")
        print("|---|---|---|---|---|")
        for name, structure in STRUCTURES.items():
            treatments = treatment_null(structure, args.readers, m, n, args.studies, rng, args.alpha)
            estimated, oracle, ratio = oracle_null(structure, args.readers, m, n, args.studies, rng, args.alpha)
            diagnosis[name] = {"treatment_null": treatments, "single_delong": estimated,
                               "single_true_cov": oracle, "ms_r_over_r_cov2": ratio}
            print(f"| {name} | {treatments:.4f} | {estimated:.4f} | {oracle:.4f} | {ratio:.2f} |")
        ratios = (0.1, 0.5, 1.4, 3.0)
        print("\nOR model (normal reader AUCs, Cov2 known), single test, 10^6 draws: rejection at alpha by "
              "E[MS_R] / (R Cov2)\n")
        print("| readers | " + " | ".join(f"{r:g}" for r in ratios) + " |")
        print("|---|" + "---|" * len(ratios))
        for readers in (args.readers, 10):
            cells = [or_model_null(readers, r, 1_000_000, rng, args.alpha) for r in ratios]
            diagnosis[f"or_model_{readers}_readers"] = dict(zip(map(str, ratios), cells, strict=True))
            print(f"| {readers} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
        print(f"\n(diagnostic tables: {time.perf_counter() - start:.1f} s)")
    if args.out:
        payload = {"settings": vars(args), "seconds": seconds, "structures": rows, "diagnosis": diagnosis}
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
