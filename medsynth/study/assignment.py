"""Case sampling and per-reader reading orders, all driven by the study's secret.

- :func:`new_study_secret` draws the per-study secret (:mod:`secrets`) at ``study create``; it is
  stored in the database only. :func:`secret_seed` derives every seed from it (HMAC-SHA256), so
  neither the public code, the config nor a reader's name predicts the sampling or an order, while
  the database alone reproduces the study exactly (docs/study.md, "Reproducing a study").
- :func:`sample_balanced` picks ``n_cases`` files, half real and half synthetic (seeded).
- :func:`reading_order` gives each reader their own seeded shuffle of every case plus
  ``round(repeat_fraction * n)`` repeated showings, each placed at least ``min_gap`` positions
  after that case's first showing (DOMAIN.md: ~10% repeats measure intra-reader agreement).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsynth.errors import ConfigError


@dataclass(frozen=True)
class Showing:
    """Position ``position`` of a reading order shows case ``case_index`` (``repeat`` 0 or 1)."""

    position: int
    case_index: int
    repeat: int


SECRET_BYTES = 32


def new_study_secret() -> str:
    """A fresh per-study secret (64 hex characters) from the operating system's CSPRNG."""
    return secrets.token_hex(SECRET_BYTES)


def secret_seed(secret: str, purpose: str) -> int:
    """A 64-bit seed for ``purpose`` (e.g. ``"cases"``, ``"order:<reader>"``) keyed by ``secret``."""
    digest = hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "little")


def order_seed(secret: str, reader_name: str) -> int:
    """The seed of one reader's reading order."""
    return secret_seed(secret, f"order:{reader_name}")


def storage_order(n: int, secret: str) -> list[int]:
    """The order in which a study's ``n`` sampled cases are stored (so row ids carry no truth)."""
    return [int(i) for i in np.random.default_rng(secret_seed(secret, "storage")).permutation(n)]


def reader_seed(seed: int, reader_name: str) -> int:
    """A stable per-reader seed from a public seed and a name (simulated readers' answers only)."""
    digest = hashlib.sha256(f"{seed}:{reader_name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def sample_balanced(
    real: Sequence[str], synthetic: Sequence[str], n_cases: int, seed: int
) -> tuple[list[str], list[str]]:
    """Draw ``n_cases // 2`` real and ``n_cases - n_cases // 2`` synthetic items (seeded, sorted inputs).

    Raises:
        ConfigError: ``n_cases`` < 2 or more cases asked for than either set holds.
    """
    if n_cases < 2:
        raise ConfigError("n_cases", f"must be at least 2, got {n_cases}")
    n_real, n_syn = n_cases // 2, n_cases - n_cases // 2
    if len(real) < n_real:
        raise ConfigError("n_cases", f"needs {n_real} real volumes, real_dir has {len(real)}")
    if len(synthetic) < n_syn:
        raise ConfigError("n_cases", f"needs {n_syn} synthetic volumes, synthetic_dir has {len(synthetic)}")
    rng = np.random.default_rng(seed)
    pick_real = sorted(rng.choice(sorted(real), size=n_real, replace=False).tolist())
    pick_syn = sorted(rng.choice(sorted(synthetic), size=n_syn, replace=False).tolist())
    return pick_real, pick_syn


def reading_order(n_cases: int, repeat_fraction: float, seed: int, min_gap: int = 3) -> list[Showing]:
    """One reader's order: a permutation of ``range(n_cases)`` with repeats inserted later.

    Repeated cases are drawn from the first half of the permutation so that there is room to show
    them again at least ``min_gap`` positions later (fewer if the study is tiny).
    """
    if not 0.0 <= repeat_fraction <= 0.5:
        raise ConfigError("repeat_fraction", f"must be in [0, 0.5], got {repeat_fraction}")
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(n_cases)]
    n_repeats = int(round(repeat_fraction * n_cases))
    candidates = order[: max(1, n_cases // 2)]
    n_repeats = min(n_repeats, len(candidates))
    repeated = [int(i) for i in rng.choice(candidates, size=n_repeats, replace=False)] if n_repeats else []
    showings: list[tuple[int, int]] = [(case, 0) for case in order]
    for case in repeated:
        first = next(i for i, (c, r) in enumerate(showings) if c == case and r == 0)
        gap = min(min_gap, len(showings) - first)
        slot = int(rng.integers(first + gap, len(showings) + 1))
        showings.insert(slot, (case, 1))
    return [Showing(position=i, case_index=c, repeat=r) for i, (c, r) in enumerate(showings)]
