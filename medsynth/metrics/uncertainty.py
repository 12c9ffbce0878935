"""What a set-level figure is worth: a bootstrap interval over volumes and a real-vs-real floor.

- ``ci``: percentile bootstrap over volumes: real and synthetic volumes are resampled with
  replacement (independently), the metric recomputed on each resample from the cached per-volume
  features / pair scores, and the (1 - level) / 2 and (1 + level) / 2 quantiles reported.
- ``floor``: the same metric between two disjoint halves of the real set (a seeded random
  split; half A plays "real", half B "synthetic"): what real-vs-real scores at half the size.

Written here because scipy's ``bootstrap`` resamples one statistic of aligned samples, while a
set metric is a function of two unaligned sets computed many metrics at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np

SetMetrics = Callable[[np.ndarray, np.ndarray], Mapping[str, float | None]]


def split_halves(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index sets (A, B) of sizes floor(n/2) and n - floor(n/2), seeded."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One torch thread and joblib's sequential backend inside the block (restored after).

    A resample's matrices are tiny ((N, F) with N ~ tens): thread start-up and spinning cost
    ~10x the arithmetic there (prdc asks sklearn for 8 joblib workers per call).
    """
    import joblib
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with joblib.parallel_config(backend="sequential"):
            yield
    finally:
        torch.set_num_threads(threads)


def bootstrap_intervals(
    metrics: SetMetrics, n_real: int, n_synthetic: int, n_resamples: int, level: float, seed: int
) -> dict[str, list[float] | None]:
    """Percentile bootstrap interval of every metric ``metrics(real_index, synthetic_index)`` returns.

    Args:
        metrics: maps (real indices (n_real,), synthetic indices (n_synthetic,)) -> {name: value}.
        n_resamples: bootstrap resamples; level: e.g. 0.95.

    Returns:
        {name: [lo, hi]}; None for a metric with fewer than half of its resampled values finite.
    """
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    with single_threaded():
        for _ in range(int(n_resamples)):
            real = rng.integers(0, n_real, n_real)
            synthetic = rng.integers(0, n_synthetic, n_synthetic)
            for name, value in metrics(real, synthetic).items():
                values.setdefault(name, []).append(np.nan if value is None else float(value))
    tail = (1.0 - float(level)) / 2.0
    out: dict[str, list[float] | None] = {}
    for name, samples in values.items():
        finite = np.asarray(samples)[np.isfinite(samples)]
        if len(finite) < max(2, len(samples) / 2):
            out[name] = None
            continue
        lo, hi = np.quantile(finite, [tail, 1.0 - tail], method="inverted_cdf")  # commutes with ln
        out[name] = [float(lo), float(hi)]
    return out
