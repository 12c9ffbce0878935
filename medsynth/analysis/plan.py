"""Study sizing (``medsynth analyze plan``): power of the OR-H test and of the equivalence test
for a grid of readers x cases.

Two ways to describe the variability of a future study:

- a Roe-Metz variance structure (:data:`medsynth.analysis.roe_metz.STRUCTURES`, Roe & Metz 1997 /
  Hillis 2018): power is the share of ``n_studies`` simulated studies per cell in which OR-H
  (DeLong) rejects AUC = 0.5 at the expected AUC, and in which the TOST shows equivalence within
  +-margin when the true AUC is ``equivalence_auc``;
- OR variance components estimated from a pilot ratings.csv (:func:`pilot_components`): the
  analytic approximation of Hillis & Obuchowski (2011): with var and cov2 scaled by
  pilot cases / cases, den = var_r + var - cov2 + R cov2, ddf = den^2 / ((var_r + var - cov2)^2 / (R-1)),
  power = P(F(1, ddf, lambda) > F_(1-alpha)(1, ddf)), lambda = R (auc - 0.5)^2 / den; TOST power
  from the t distribution with se = sqrt(den / R).

Cases are split half synthetic, half real.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from medsynth.analysis import mrmc
from medsynth.analysis.reader_stats import call_score, first_showings
from medsynth.analysis.roe_metz import RoeMetzStructure, simulated_analyses
from medsynth.errors import ConfigError


@dataclass(frozen=True)
class PilotComponents:
    """OR variance components of the reader-averaged AUC estimated from a pilot study."""

    var_r: float  # reader variance of the AUC (between-reader, beyond case noise), >= 0
    var_error: float  # Var(AUC_r) over case samples at the pilot's size (DeLong)
    cov2: float  # Cov(AUC_r, AUC_r') between readers over case samples at the pilot's size
    n_cases: int  # pilot cases every reader rated
    n_readers: int
    auc: float  # pilot reader-averaged AUC


def pilot_components(ratings: pd.DataFrame) -> PilotComponents:
    """Estimate :class:`PilotComponents` from a validated ratings table (first showings, cases
    rated by every reader). Raises :class:`ConfigError` when the pilot cannot give them."""
    firsts = first_showings(ratings)
    scores = firsts.assign(score=call_score(firsts)).pivot(index="reader_id", columns="case_id", values="score")
    scores = scores.loc[:, scores.notna().all(axis=0)]
    truth = firsts.drop_duplicates("case_id").set_index("case_id")["is_synthetic"].reindex(scores.columns)
    positive, negative = scores.loc[:, truth == 1].to_numpy(float), scores.loc[:, truth == 0].to_numpy(float)
    if scores.shape[0] < 2:
        raise ConfigError("pilot", "needs at least 2 readers to estimate the reader variance")
    if positive.shape[1] < 2 or negative.shape[1] < 2:
        raise ConfigError("pilot", "needs at least 2 synthetic and 2 real cases rated by every reader (with confidence)")
    auc, v10, v01 = mrmc.auc_components(positive, negative)
    result = mrmc.or_single(auc, mrmc.delong_covariance(v10, v01))
    var_r = max(float(result["ms_r"] - result["var_error"] + result["cov2"]), 0.0)
    return PilotComponents(
        var_r, float(result["var_error"]), float(result["cov2"]), int(scores.shape[1]), int(scores.shape[0]), float(auc.mean())
    )


def analytic_power(
    components: PilotComponents, n_readers: int, n_cases: int, auc: float, alpha: float, margin: float, null_auc: float = 0.5
) -> tuple[float, float]:
    """(power of OR-H at ``auc``, power of the TOST when the true AUC is ``null_auc``)."""
    scale = components.n_cases / n_cases
    var, cov2 = components.var_error * scale, max(components.cov2 * scale, 0.0)
    ms_r = components.var_r + var - cov2  # expected reader mean square
    den = ms_r + n_readers * cov2
    ddf = den**2 / (ms_r**2 / (n_readers - 1)) if ms_r > 0 else np.inf
    finite = 1e6 if np.isinf(ddf) else ddf
    critical = stats.f.ppf(1 - alpha, 1, finite)
    detect = float(stats.ncf.sf(critical, 1, finite, n_readers * (auc - 0.5) ** 2 / den))
    se = np.sqrt(den / n_readers)
    t = stats.t.ppf(1 - alpha, finite)
    shift = abs(null_auc - 0.5)
    equivalent = stats.t.cdf((margin - shift) / se - t, finite) - stats.t.cdf(-(margin + shift) / se + t, finite)
    return detect, float(max(equivalent, 0.0))


def simulated_power(
    structure: RoeMetzStructure,
    n_readers: int,
    n_cases: int,
    auc: float,
    alpha: float,
    margin: float,
    n_studies: int,
    rng: np.random.Generator,
    null_auc: float = 0.5,
) -> tuple[float, float]:
    """(share of simulated studies where OR-H rejects at ``auc``, share where TOST shows
    equivalence at ``null_auc``)."""
    m = n_cases // 2

    def share(target: float, key: str) -> float:
        batches = simulated_analyses(structure, target, n_readers, m, n_cases - m, n_studies, rng, alpha, margin)
        return sum(int(np.sum(r[key] < alpha)) for r in batches) / n_studies

    return share(auc, "or_p"), share(null_auc, "tost_p")


def power_table(
    readers: Sequence[int],
    cases: Sequence[int],
    power: Callable[[int, int], tuple[float, float]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two (readers x cases) tables: power to detect, power to show equivalence."""
    detect = pd.DataFrame(index=pd.Index(readers, name="readers"), columns=pd.Index(cases, name="cases"), dtype=float)
    equivalent = detect.copy()
    for r in readers:
        for c in cases:
            detect.loc[r, c], equivalent.loc[r, c] = power(r, c)
    return detect, equivalent


def format_table(table: pd.DataFrame) -> str:
    """Plain-text table: rows = readers, columns = cases."""
    width = max(6, *(len(str(c)) + 1 for c in table.columns))
    head = "readers \\ cases" + "".join(f"{c:>{width}}" for c in table.columns)
    rows = [f"{r:<15}" + "".join(f"{v:>{width}.2f}" for v in table.loc[r]) for r in table.index]
    return "\n".join([head, *rows])
