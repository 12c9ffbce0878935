"""Set-level realism metrics: real set vs synthetic set.

Inputs are feature matrices (N, F) (radiomics, or 3D-ResNet activations) or unit-range volumes
(N of (X, Y, Z)). Every function returns a finite float; estimators that can dip below their
identity value through sampling or matrix-square-root numerics are clamped at 0 (documented per
function), so identical sets give exactly the identity value.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medsynth.errors import InputFileError


@dataclass
class FeatureSpace:
    """Real and synthetic features standardised by the real set's mean and SD.

    Columns that are non-finite anywhere or constant over the real set are dropped (they cannot
    be standardised), as frd-score v1 does after its z-scoring. z-scores are clipped to
    [-z_clip, z_clip]: a feature that barely varies over a small real set would otherwise turn a
    modest synthetic change into a z of 10^6 and dominate every distance.

    Attributes:
        real: (N_real, F') z-scores.  synthetic: (N_syn, F') z-scores.  names: the F' kept names.
    """

    real: np.ndarray
    synthetic: np.ndarray
    names: list[str]

    @classmethod
    def standardise(
        cls, real: np.ndarray, synthetic: np.ndarray, names: Sequence[str], z_clip: float = 10.0
    ) -> FeatureSpace:
        real = np.asarray(real, dtype=np.float64)
        synthetic = np.asarray(synthetic, dtype=np.float64)
        finite = np.isfinite(real).all(axis=0) & np.isfinite(synthetic).all(axis=0)
        mean = np.where(finite, np.nan_to_num(real).mean(axis=0), 0.0)
        std = np.where(finite, np.nan_to_num(real).std(axis=0), 0.0)
        keep = finite & (std > 1e-12 * np.maximum(1.0, np.abs(mean)))
        if not keep.any():
            raise InputFileError("real_dir", "every radiomics feature is constant over the real set")
        z_real = np.clip((real[:, keep] - mean[keep]) / std[keep], -z_clip, z_clip)
        z_syn = np.clip((synthetic[:, keep] - mean[keep]) / std[keep], -z_clip, z_clip)
        return cls(real=z_real, synthetic=z_syn, names=[n for n, k in zip(names, keep, strict=True) if k])


def frd_normalised_features(
    real: np.ndarray, synthetic: np.ndarray, frd_version: str = "v1"
) -> tuple[np.ndarray, np.ndarray]:
    """frd-score's normalisation of raw radiomics features (N_real, F), (N_syn, F) for the version.

    v1 drops images with NaN features, casts to float32, z-scores both sets by the real set's
    statistics (frd-score's ``norm_ref='d1'``) and drops columns that become NaN/Inf; v0 min-max
    scales by the joint range to [0, 7.4567] (frd-score's ``min_max_normalize``). Returns float64 arrays (N_real', F'), (N_syn', F').
    """
    from frd_score import frd

    if frd_version == "v1":
        x, y, _ = frd_v1_space(real, synthetic)
        return x, y
    sets = [np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)]
    joint = np.concatenate(sets, axis=0)
    normed = [frd.min_max_normalize(s, *frd.V0_DEFAULT_NORM_RANGE, base_distribution=joint) for s in sets]
    return np.asarray(normed[0], dtype=np.float64), np.asarray(normed[1], dtype=np.float64)


def frd_v1_space(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frd-score v1's space: (real (N', F'), synthetic (M', F'), kept columns (F,) bool).

    Images with a NaN feature are dropped, both sets are z-scored by the real set in float32 and
    columns that become NaN/Inf in either set (constant over the real set) are dropped.
    """
    sets = [np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)]
    sets = [s[~np.isnan(s).any(axis=1)].astype(np.float32) for s in sets]
    if min(len(s) for s in sets) < 2:
        raise InputFileError("radiomics", "fewer than 2 volumes per set have finite radiomics features")
    normed = [z_score_by_reference(s, sets[0]) for s in sets]
    keep = np.ones(normed[0].shape[1], dtype=bool)
    for s in normed:
        keep &= np.isfinite(s).all(axis=0)
    return normed[0][:, keep].astype(np.float64), normed[1][:, keep].astype(np.float64), keep


def z_score_by_reference(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """frd-score v1's ``z_score_normalize(features, 0, 1, base_distribution=reference,
    replace_nan=False, handle_std_zero=False)``, vectorised with the same float32 arithmetic.

    Written here because frd-score's function loops over features in Python (~30 ms a call,
    paid twice per bootstrap resample); the tests check both agree exactly.
    """
    mean, std = np.nanmean(reference, axis=0), np.nanstd(reference, axis=0)
    out = np.copy(features)
    columns = ~np.isnan(mean) & ~np.isnan(std)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, columns] = ((features[:, columns] - mean[columns]) / std[columns]) * (1.0 - 0.0) + 0.0
    return out


def radiomics_frechet_d2(
    real: np.ndarray, synthetic: np.ndarray, frd_version: str = "v1", exact: bool = False
) -> float:
    """Squared Fréchet radiomics distance d^2 between raw radiomics features, frd-score's pipeline.

    ``exact=True`` evaluates d^2 with frd-score's own ``calculate_frechet_distance`` on the means
    and ``np.cov`` covariances (scipy ``sqrtm`` of the F x F product, as ``frd_score.compute_frd``
    does: the reported ``frd`` equals frd-score's to rounding); ``exact=False`` uses the equivalent
    O(N M F) :func:`frechet_distance_from_samples` (bootstrap resamples and split-half floors).
    Clamped at 0 (identical sets).
    """
    x, y = frd_normalised_features(real, synthetic, frd_version)
    if x.shape[1] == 0:
        return 0.0
    if not exact:
        return frechet_distance_from_samples(x, y)
    from frd_score import frd

    value = frd.calculate_frechet_distance(
        np.mean(x, axis=0), np.cov(x, rowvar=False), np.mean(y, axis=0), np.cov(y, rowvar=False)
    )
    return _finite_nonnegative(float(value))


def frd_family(d2: float, frd_version: str = "v1") -> dict[str, float | None]:
    """The three FRD figures of one d^2 (DOMAIN: published numbers compare only under one definition).

    - ``frd``: frd-score's own value: ln(d^2) for v1 (its default, ``use_paper_log=False``), d^2
      for v0; None where frd-score returns -inf (d^2 = 0, identical sets).
    - ``frd_paper``: the FRD paper's Eq. 3, ln(d) = ln(d^2) / 2 (frd-score ``use_paper_log=True``).
    - ``frd_d2``: d^2 itself; relative gaps between models are meaningful only on this one.
    """
    log_d2 = math.log(d2) if d2 > 0 else None
    return {
        "frd": (log_d2 if frd_version == "v1" else float(d2)),
        "frd_paper": None if log_d2 is None else 0.5 * log_d2,
        "frd_d2": float(d2),
    }


def frechet_distance_from_samples(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Fréchet distance between Gaussians fitted to samples x (N, F) and y (M, F).

    Tr((S_x S_y)^(1/2)) equals the nuclear norm of Xc Yc^T / sqrt((N-1)(M-1)) (Xc, Yc centred
    samples): the non-zero eigenvalues of S_x S_y are those of that small N x M product squared.
    Written here because scipy's ``sqrtm`` of the F x F product (F ~ 1000 radiomics features) takes
    ~10 s per call on 2 cores and leaves residues of order 1e-6 for identical sets; this form is
    exact, O(N M F), and gives 0 (to rounding) for identical sets. Clamped at 0.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    n, m = len(x), len(y)
    cross = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / math.sqrt((n - 1) * (m - 1))
    mean_term = float(np.sum((x.mean(axis=0) - y.mean(axis=0)) ** 2))
    value = mean_term + (xc**2).sum() / (n - 1) + (yc**2).sum() / (m - 1) - 2.0 * cross
    if value < 1e-9 * max(1.0, (xc**2).sum() / (n - 1)):  # rounding residue of identical sets
        value = 0.0
    return _finite_nonnegative(float(value))


def maximum_mean_discrepancy(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Unbiased MMD^2 with a linear kernel (Gretton et al. 2012, Eq. 3) on standardised features / sqrt(F).

    The estimator is MONAI's ``MMDMetric``; it is used directly when both sets have the same size.
    MONAI rejects sets of different sizes, so then the same formula is evaluated here (the tests
    check both agree). With z-scored features divided by sqrt(F) the expectation is the mean over
    features of the squared shift of the synthetic mean in real-SD units. The unbiased estimator is
    negative when two sets are closer than sampling noise (identical sets give -2/(N-1)); it is
    clamped at 0.
    """
    scale = math.sqrt(real.shape[1])
    y = torch.as_tensor(real / scale, dtype=torch.float64)
    y_pred = torch.as_tensor(synthetic / scale, dtype=torch.float64)
    if y.shape == y_pred.shape:
        from monai.metrics import MMDMetric

        return _finite_nonnegative(float(MMDMetric()(y, y_pred)))
    return _finite_nonnegative(float(linear_mmd_unbiased(y, y_pred)))


def linear_mmd_unbiased(y: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """MONAI's ``compute_mmd`` formula without its equal-size check: y (M, F), y_pred (N, F)."""
    m, n = y.shape[0], y_pred.shape[0]
    y_y, p_p = y @ y.T, y_pred @ y_pred.T
    a = y_y.sum() - y_y.diagonal().sum()
    b = p_p.sum() - p_p.diagonal().sum()
    return a / (m * (m - 1)) + b / (n * (n - 1)) - 2.0 * (y_pred @ y.T).sum() / (m * n)


def kernel_inception_distance(
    real: np.ndarray,
    synthetic: np.ndarray,
    degree: int = 3,
    coef0: float = 1.0,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
) -> float:
    """KID (Bińkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / F + coef0)^degree.

    Written here because torchmetrics' KID is bound to an Inception network; this is the same
    estimator on any features. Sets no larger than ``subset_size`` are used whole (deterministic);
    otherwise the mean over ``num_subsets`` random subsets. Clamped at 0 like MMD.
    """
    from sklearn.metrics.pairwise import polynomial_kernel

    rng = np.random.default_rng(seed)
    whole = max(len(real), len(synthetic)) <= subset_size
    gamma = 1.0 / real.shape[1]
    values = []
    for _ in range(1 if whole else num_subsets):
        x, y = real, synthetic
        if not whole:
            x = real[rng.choice(len(real), min(len(real), subset_size), replace=False)]
            y = synthetic[rng.choice(len(synthetic), min(len(synthetic), subset_size), replace=False)]
        k_xx = polynomial_kernel(x, degree=degree, gamma=gamma, coef0=coef0)
        k_yy = polynomial_kernel(y, degree=degree, gamma=gamma, coef0=coef0)
        k_xy = polynomial_kernel(x, y, degree=degree, gamma=gamma, coef0=coef0)
        m, n = len(x), len(y)
        values.append(
            (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
            + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
            - 2.0 * k_xy.mean()
        )
    return _finite_nonnegative(float(np.mean(values)))


def precision_recall_density_coverage(real: np.ndarray, synthetic: np.ndarray, nearest_k: int = 5) -> dict:
    """Naeem et al. 2020 via the ``prdc`` package, k nearest neighbours in feature space.

    prdc needs k + 2 <= set size (each point's k-th neighbour, itself excluded), so ``k`` is lowered
    to (smallest set size - 2) for tiny sets; the effective k comes back under ``nearest_k``. With
    fewer than 3 volumes in a set no k works: the four values are None (undefined, not 0), e.g. the
    split-half floor of a 4-volume real set.
    """
    from prdc import compute_prdc

    if min(len(real), len(synthetic)) < 3:
        return {key: None for key in ("precision", "recall", "density", "coverage", "nearest_k")}
    k = int(max(1, min(nearest_k, len(real) - 2, len(synthetic) - 2)))
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        result = compute_prdc(real_features=real, fake_features=synthetic, nearest_k=k)
    out = {key: _finite(float(result[key])) for key in ("precision", "recall", "density", "coverage")}
    out["nearest_k"] = k
    return out


def frechet_distance_of_features(real: np.ndarray, synthetic: np.ndarray) -> float:
    """MONAI ``FIDMetric`` on (N, F) network features, clamped at 0 (sqrtm residue)."""
    from monai.metrics import FIDMetric

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's sqrtm warns on the rank-deficient covariances of small sets
        value = FIDMetric()(
            torch.as_tensor(synthetic, dtype=torch.float64), torch.as_tensor(real, dtype=torch.float64)
        )
    return _finite_nonnegative(float(value))


def fit_ms_ssim_scales(
    shape: Sequence[int], kernel_size: int, weights: Sequence[float]
) -> tuple[int, list[float]]:
    """Kernel size and scale weights that MONAI's 3D MS-SSIM accepts for volumes of ``shape``.

    MONAI requires every side // (len(weights) - 1)^2 > kernel_size - 1. Coarse scales are dropped
    first (remaining weights rescaled to the same total), then the kernel shrinks (odd sizes, >= 3):
    e.g. kernel 7 keeps 5 scales at 128^3, 4 at 64^3 and 3 at 32^3.
    """
    weights = [float(w) for w in weights]
    total = sum(weights)
    smallest = int(min(shape))
    for size in range(int(kernel_size) | 1, 2, -2):
        for count in range(len(weights), 1, -1):
            if smallest // max(1, count - 1) ** 2 > size - 1:
                kept = weights[:count]
                return size, [w * total / sum(kept) for w in kept]
    raise InputFileError("synthetic_dir", f"volumes of shape {list(shape)} are too small for MS-SSIM")


def ms_ssim_pairs(
    volumes: Sequence[np.ndarray],
    kernel_size: int = 7,
    kernel_sigma: float = 1.5,
    weights: Sequence[float] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
    max_pairs: int = 100,
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """MS-SSIM (MONAI ``MultiScaleSSIMMetric``) of pairs of distinct volumes of one set.

    Args:
        volumes: unit-range volumes (X, Y, Z) of one shape.
        max_pairs: all pairs if there are at most this many, else this many random distinct pairs.

    Returns:
        (pairs (P, 2) indices, scores (P,) in [0, 1], the settings used)
    """
    from monai.metrics import MultiScaleSSIMMetric

    n = len(volumes)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    size, fitted = fit_ms_ssim_scales(volumes[0].shape, kernel_size, weights)
    metric = MultiScaleSSIMMetric(
        spatial_dims=3,
        data_range=1.0,
        kernel_size=size,
        kernel_sigma=kernel_sigma,
        weights=fitted,
        reduction="none",
    )
    device = device or torch.device("cpu")
    scores = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            a = torch.as_tensor(np.stack([volumes[i] for i, _ in chunk]))[:, None].to(device)
            b = torch.as_tensor(np.stack([volumes[j] for _, j in chunk]))[:, None].to(device)
            scores.append(metric(a, b).reshape(-1).cpu())
    values = torch.cat(scores).double().numpy()
    if not np.isfinite(values).all():
        raise FloatingPointError("MS-SSIM is not finite")
    return np.asarray(pairs, dtype=int), values, {"kernel_size": size, "weights": fitted, "pairs": len(pairs)}


def pair_mean(pairs: np.ndarray, scores: np.ndarray, index: np.ndarray | None = None) -> float | None:
    """Mean pair score; with ``index`` (a resample or subset of volume indices, repeats allowed),
    each computed pair (i, j) weighs count(i) x count(j) in it. None when no computed pair is in it."""
    if index is None:
        return float(scores.mean())
    counts = np.bincount(index, minlength=int(pairs.max()) + 1 if len(pairs) else 0)
    weight = counts[pairs[:, 0]] * counts[pairs[:, 1]]
    return float((weight * scores).sum() / weight.sum()) if weight.sum() > 0 else None


def ms_ssim_diversity(volumes: Sequence[np.ndarray], **kwargs) -> tuple[float, dict]:
    """Mean MS-SSIM over pairs of distinct volumes of one set (:func:`ms_ssim_pairs` arguments).

    Returns:
        (mean MS-SSIM in [0, 1]: higher = the set is less diverse, and the settings used)
    """
    pairs, scores, used = ms_ssim_pairs(volumes, **kwargs)
    return _finite(float(scores.mean())), used


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"metric is not finite ({value})")
    return value


def _finite_nonnegative(value: float) -> float:
    return max(0.0, _finite(value))
