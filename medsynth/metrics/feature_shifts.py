"""Which radiomics features separate a synthetic set from the real one (evaluate's ``feature_shifts.csv``).

FRD's d^2 is taken in frd-score v1's space, every feature z-scored by the real set (unit SD over
the real volumes). There d^2 = |mu_s - mu_r|^2 + tr(S_r + S_s - 2 (S_r S_s)^(1/2)): the first
(mean) term is a sum over features, so each feature's part of it is exact; the rest is the
covariance term. Per feature (one row, sorted by |shift|, largest first):

=====================  =====================================================================
``feature``            frd-score's name: ``<image>_<class>_<feature>`` (Original: no image)
``image``              ``original``, ``log-sigma-<s>-mm-3D`` or ``wavelet-<band>``
``feature_class``      ``firstorder``, ``glcm``, ``glrlm``, ``glszm``, ``ngtdm``, ...
``shift_sd``           synthetic mean - real mean, in real SDs (the z of the synthetic mean)
``sd_ratio``           synthetic SD / real SD (< 1: the samples vary less than the real scans)
``share_of_d2``        shift_sd^2 / d^2: this feature's part of the distance (mean term; d^2 of frd-score v1)
=====================  =====================================================================

Written here because frd-score reports d^2 alone, and where a model falls short (a band's median,
a texture's busyness, too little spread) is what a user needs to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from medsynth.metrics.set_metrics import frd_v1_space, frechet_distance_from_samples

COLUMNS = ("feature", "image", "feature_class", "shift_sd", "sd_ratio", "share_of_d2")


def split_feature_name(name: str) -> tuple[str, str]:
    """frd-score feature name -> (image, feature class); Original-image names carry no image part."""
    parts = name.split("_")
    if len(parts) >= 3:
        return parts[0], parts[1]
    return "original", parts[0]


def feature_shifts(real: np.ndarray, synthetic: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Per-feature shift of ``synthetic`` (M, F) from ``real`` (N, F) raw radiomics features (:data:`COLUMNS`).

    The shares sum to the mean term's part of d^2 (d^2 computed as FRD's ``frd_d2``, closed form).
    """
    x, y, keep = frd_v1_space(real, synthetic)
    kept = [n for n, k in zip(names, keep, strict=True) if k]
    d2 = frechet_distance_from_samples(x, y)
    shift = y.mean(axis=0) - x.mean(axis=0)
    real_sd = x.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd_ratio = np.where(real_sd > 0, y.std(axis=0) / real_sd, np.nan)
    split = [split_feature_name(n) for n in kept]
    table = pd.DataFrame(
        {
            "feature": kept,
            "image": [s[0] for s in split],
            "feature_class": [s[1] for s in split],
            "shift_sd": shift,
            "sd_ratio": sd_ratio,
            "share_of_d2": shift**2 / d2 if d2 > 0 else np.zeros_like(shift),
        }
    )
    order = np.argsort(-np.abs(shift), kind="stable")
    return table.iloc[order].reset_index(drop=True)


def summary_line(table: pd.DataFrame, top: int = 3) -> str:
    """One line for the user: the mean term's share of d^2 and the ``top`` features furthest from the real set."""
    mean_share = float(table["share_of_d2"].sum())
    worst = ", ".join(f"{r.feature} ({r.shift_sd:+.1f} SD)" for r in table.head(top).itertuples())
    spread = float(np.nanmedian(table["sd_ratio"]))
    return (
        f"feature shifts: the means make {mean_share:.0%} of FRD d^2; furthest from the real set: {worst}; "
        f"median SD ratio {spread:.2f} (feature_shifts.csv)"
    )
