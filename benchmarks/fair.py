"""Fair timing: both sides at the same thread counts, interleaved, summarised as medians with min and max.

A *task* is one thing to time (medsynth's training step, the baseline's DDPM step, ...). Timed
rounds go ``for round: for threads in thread_counts: for task: run``, i.e. A1 B1 A2 B2 A1 B1 ...,
so a change of machine load during the run hits every task and thread count alike. Every block
runs under ``torch.set_num_threads(threads)`` in this one process (same environment, same
``OMP_*`` settings for both sides) and records the load average at its start and end. Warm-up
calls come before the first round and are never timed.

Small by hand: a round-robin loop, medians and per-round ratios (``statistics`` does the maths).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from machine import load_average, torch_threads


@dataclass
class Task:
    """``run(threads)`` returns the seconds of each timed repetition of one block; ``warmup(threads)``
    (optional) runs untimed before the first round, once per thread count."""

    name: str
    run: Callable[[int], list[float]]
    warmup: Callable[[int], None] | None = None


@dataclass
class Series:
    """The timed repetitions of one task at one thread count, grouped by round."""

    rounds: list[list[float]] = field(default_factory=list)
    loads: list[list[Any]] = field(default_factory=list)  # [load at block start, load at block end]

    @property
    def values(self) -> list[float]:
        return [s for block in self.rounds for s in block]

    def round_medians(self) -> list[float]:
        return [statistics.median(block) for block in self.rounds]

    def summary(self, scale: float = 1.0) -> dict[str, Any]:
        """Median, min and max over every timed repetition (times ``scale``) and the raw seconds."""
        return summarize(self.values, scale) | {
            "seconds_by_round": [[round(s, 4) for s in block] for block in self.rounds],
            "load_by_round": self.loads,
        }


def summarize(values: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """{median, min, max, runs} of ``values`` x ``scale``."""
    scaled = [v * scale for v in values]
    return {"median": statistics.median(scaled), "min": min(scaled), "max": max(scaled), "runs": len(scaled)}


def interleave(
    tasks: Sequence[Task],
    thread_counts: Sequence[int],
    rounds: int,
    log: Callable[[str], None] = print,
    on_round: Callable[[dict[tuple[str, int], Series]], None] | None = None,
) -> dict[tuple[str, int], Series]:
    """Warm up every task at every thread count, then run ``rounds`` timed rounds, interleaved;
    ``on_round(series)`` after each round (to save what was measured so far)."""
    for threads in thread_counts:
        for task in tasks:
            if task.warmup is not None:
                with torch_threads(threads):
                    task.warmup(threads)
    series: dict[tuple[str, int], Series] = {(t.name, n): Series() for t in tasks for n in thread_counts}
    for r in range(rounds):
        for threads in thread_counts:
            for task in tasks:
                start_load = load_average()
                with torch_threads(threads):
                    seconds = task.run(threads)
                entry = series[(task.name, threads)]
                entry.rounds.append(list(seconds))
                entry.loads.append([start_load, load_average()])
                shown = ", ".join(f"{s:.3g}" for s in seconds)
                log(f"  round {r + 1}/{rounds}, {threads} thread(s), {task.name}: {shown} s (load {start_load})")
        if on_round is not None:
            on_round(series)
    return series


def best_threads(series: dict[tuple[str, int], Series], name: str, thread_counts: Sequence[int]) -> int:
    """The thread count at which task ``name`` has the lowest median."""
    return min(thread_counts, key=lambda n: statistics.median(series[(name, n)].values))


def speedup(
    baseline: Series, medsynth: Series, baseline_scale: float = 1.0, medsynth_scale: float = 1.0
) -> dict[str, Any]:
    """baseline / medsynth: the ratio of the two medians (the figure), and the spread of the same
    ratio taken round by round (round medians; both sides of a round ran back to back)."""
    value = statistics.median(baseline.values) * baseline_scale / (
        statistics.median(medsynth.values) * medsynth_scale
    )
    per_round = [
        b * baseline_scale / (m * medsynth_scale)
        for b, m in zip(baseline.round_medians(), medsynth.round_medians(), strict=True)
    ]
    return {"value": value, "per_round": [round(x, 2) for x in per_round], **_spread(per_round)}


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"round_median": statistics.median(values), "round_min": min(values), "round_max": max(values)}
