"""Bootstrap confidence intervals (scipy.stats.bootstrap), JSON-safe numbers and quiet calls."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class BootstrapSettings:
    """``n_resamples`` draws, two-sided ``confidence_level``, scipy ``method`` (percentile | basic |
    BCa), ``seed`` for reproducible intervals."""

    n_resamples: int = 2000
    confidence_level: float = 0.95
    method: str = "percentile"
    seed: int = 0


def finite_or_none(value: object) -> float | None:
    """``float(value)`` when finite, else ``None`` (summary.json never holds NaN or inf)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def quietly(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` with warnings and floating-point errors silenced (undefined statistics
    become NaN, which :func:`finite_or_none` turns into ``None`` with a note elsewhere)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)


def bootstrap_ci(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., float | np.ndarray],
    settings: BootstrapSettings,
    paired: bool = False,
    vectorized: bool = False,
) -> list[float] | None:
    """``[low, high]`` bootstrap interval of ``statistic(*samples)``, or ``None`` when undefined.

    ``paired=True`` resamples the samples' rows together (correlations); ``paired=False``
    resamples each sample on its own (stratified, e.g. synthetic and real scores for an AUC).
    """
    if settings.n_resamples <= 0 or min(len(s) for s in samples) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = stats.bootstrap(
                tuple(np.asarray(s, dtype=float) for s in samples),
                statistic,
                n_resamples=settings.n_resamples,
                confidence_level=settings.confidence_level,
                method=settings.method,
                paired=paired,
                vectorized=vectorized,
                rng=np.random.default_rng(settings.seed),
            )
        except (ValueError, FloatingPointError, ZeroDivisionError):
            return None
    low, high = (
        finite_or_none(result.confidence_interval.low),
        finite_or_none(result.confidence_interval.high),
    )
    if (low is None or high is None) and settings.method == "percentile":
        # some resamples are degenerate (e.g. a constant resample for a rank correlation on few
        # cases): take the percentile interval over the resamples where the statistic is defined
        draws = np.asarray(result.bootstrap_distribution, dtype=float)
        defined = draws[np.isfinite(draws)]
        if defined.size >= max(2, draws.size // 2):
            tail = 50.0 * (1.0 - settings.confidence_level)
            low, high = (float(v) for v in np.percentile(defined, [tail, 100.0 - tail]))
    return None if low is None or high is None else [low, high]
