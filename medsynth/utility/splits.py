"""Who trains and who is tested in ``medsynth utility``: held-out real subjects, nested real subsets, arms.

- Test set: real subjects only, fixed for the whole run (every arm, size and seed is scored on the
  same subjects, so arms are paired): ``test_dir`` when given, else ``test_fraction`` of
  ``real_dir``'s subjects ordered by a hash of (``split_seed``, subject id). No test subject is
  ever in a training set (:func:`plan_runs` checks it for every run).
- Real training subsets: for seed s, one random order of the training pool; the n-subject subset
  is its first n, so the subsets of a learning curve are nested (the 4 are among the 8).
- Arms: ``real`` (n real), ``synthetic`` (``n_synthetic`` synthetic, no real; one run per seed),
  ``real+synthetic`` (n real + ``synthetic_per_real`` x n synthetic, or every synthetic volume).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from medsynth.errors import ConfigError

ARMS = ("real", "synthetic", "real+synthetic")


@dataclass(frozen=True)
class RunPlan:
    """One training run.

    Attributes:
        arm: one of :data:`ARMS`.
        n_real: real training subjects (0 for ``synthetic``).
        seed: the run's seed (subset order, initial weights, batch order).
        real_ids: the real training subjects.
        synthetic_ids: the synthetic training volumes.
    """

    arm: str
    n_real: int
    seed: int
    real_ids: tuple[str, ...] = field(default=())
    synthetic_ids: tuple[str, ...] = field(default=())

    @property
    def n_synthetic(self) -> int:
        return len(self.synthetic_ids)


def _hash_order(subject_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{subject_id}".encode()).hexdigest()


def held_out_split(subject_ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training pool, test subjects): the first ``fraction`` of subjects by hash order are held out.

    Adding a subject never moves another one between pool and test (same rule as the training DataModule).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError("test_fraction", f"must be between 0 and 1 (exclusive), got {fraction}")
    ordered = sorted(subject_ids, key=lambda sid: _hash_order(sid, seed))
    n_test = max(1, int(round(fraction * len(ordered))))
    if n_test >= len(ordered):
        raise ConfigError("test_fraction", f"leaves no real training subject out of {len(ordered)}")
    test = set(ordered[:n_test])
    return [s for s in subject_ids if s not in test], [s for s in subject_ids if s in test]


def _order(ids: list[str], seed: int, salt: int) -> list[str]:
    rng = np.random.default_rng([seed, salt])
    return [ids[i] for i in rng.permutation(len(ids))]


def plan_runs(cfg, pool: list[str], test: list[str], synthetic: list[str]) -> list[RunPlan]:
    """Every run of the study, in a stable order (arm, n_real, seed).

    Args:
        cfg: the utility config (``arms``, ``n_real``, ``seeds``, ``synthetic_per_real``, ``n_synthetic``).
        pool: real subjects available for training (never the test subjects).
        test: held-out real subjects.
        synthetic: synthetic volume ids (empty when no synthetic set is given).

    Raises:
        ConfigError: an unknown arm, an arm with no data, more real subjects asked than the pool holds.
    """
    arms = [str(a) for a in cfg.arms]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not arms:
        raise ConfigError("arms", f"unknown or no arm {unknown} (choose from {', '.join(ARMS)})")
    sizes = sorted({int(n) for n in cfg.n_real})
    seeds = [int(s) for s in cfg.seeds]
    if not seeds:
        raise ConfigError("seeds", "needs at least one seed")
    leaked = set(pool) & set(test)
    if leaked:
        raise ConfigError("test_dir", f"subjects {sorted(leaked)[:3]} are both held out and in the training pool")
    needs_real = any(a != "synthetic" for a in arms)
    if needs_real and (not sizes or min(sizes) < 1):
        raise ConfigError("n_real", f"arm(s) with real data need n_real values >= 1, got {sizes}")
    if needs_real and max(sizes) > len(pool):
        raise ConfigError(
            "n_real", f"asks for {max(sizes)} real training subjects, the pool holds {len(pool)} (after holding out {len(test)})"
        )
    needs_synthetic = [a for a in arms if "synthetic" in a]
    if needs_synthetic and not synthetic:
        raise ConfigError(
            "synthetic_dir", f"arm {needs_synthetic[0]} has no data: give synthetic_dir=DIR (or arms=[real])"
        )
    n_syn_only = len(synthetic) if cfg.n_synthetic is None else int(cfg.n_synthetic)
    if "synthetic" in arms and not 1 <= n_syn_only <= len(synthetic):
        raise ConfigError("n_synthetic", f"must be 1..{len(synthetic)} (synthetic volumes available), got {n_syn_only}")
    ratio = None if cfg.synthetic_per_real is None else float(cfg.synthetic_per_real)
    if ratio is not None and ratio <= 0:
        raise ConfigError("synthetic_per_real", f"must be > 0 or null, got {ratio}")

    runs: list[RunPlan] = []
    for arm in arms:
        for seed in seeds:
            real_order = _order(pool, seed, 0)
            synthetic_order = _order(synthetic, seed, 1)
            if arm == "synthetic":
                runs.append(RunPlan(arm, 0, seed, (), tuple(synthetic_order[:n_syn_only])))
                continue
            for n in sizes:
                n_syn = 0
                if arm == "real+synthetic":
                    n_syn = len(synthetic) if ratio is None else min(len(synthetic), max(1, round(ratio * n)))
                runs.append(RunPlan(arm, n, seed, tuple(real_order[:n]), tuple(synthetic_order[:n_syn])))
    held_out = set(test)
    for run in runs:
        if held_out & set(run.real_ids):  # impossible by construction; the contract is checked, not assumed
            raise AssertionError(f"held-out subject in training run {run}")
    return sorted(runs, key=lambda r: (ARMS.index(r.arm), r.n_real, r.seed))
