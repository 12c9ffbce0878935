"""A training budget in CPU seconds: the process's user + system time, all threads.

The quality benchmark (``benchmarks/quality.py``) gives each arm a budget of B minutes "on 2 idle
cores", i.e. at most ``2 * 60 * B`` CPU seconds of the training process, counted from the process
start (imports and data loading included). Sharing the machine with other jobs then slows the wall
clock but does not change what a run learns. Threads that spin while waiting would be charged as
work, so both arms run with ``OMP_WAIT_POLICY=PASSIVE``.

:class:`CpuBudget` stops a Lightning run when the budget is spent and saves snapshot checkpoints when
given CPU times are crossed; :class:`CpuClock` is the same bookkeeping for a plain PyTorch loop.
Written by hand: Lightning's ``max_time`` is wall-clock time and no library callback measures CPU time.
"""

from __future__ import annotations

import csv
import os
import resource
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process, all its threads (``getrusage(RUSAGE_SELF)``)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


class CpuClock:
    """CPU budget, snapshot times and a per-step log (CSV: step, cpu_s, wall_s, load1) for one run.

    ``budget_s`` and ``snapshots_s`` are CPU seconds since the process started; :meth:`tick` is called
    after each optimizer step and returns ``(snapshot_due, spent)``: the snapshot CPU times crossed at
    this step (each reported once) and whether the budget is spent.
    """

    def __init__(self, budget_s: float, snapshots_s: list[float] | None = None, log_path: str | Path | None = None):
        self.budget_s = float(budget_s)
        self.pending = sorted(float(s) for s in (snapshots_s or []))
        self.log_path = Path(log_path) if log_path else None
        self.wall_start = time.time()
        self._rows: list[tuple[int, float, float, float]] = []
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(["step", "cpu_s", "wall_s", "load1"])

    def tick(self, step: int) -> tuple[list[float], bool]:
        cpu = process_cpu_seconds()
        row = (int(step), round(cpu, 3), round(time.time() - self.wall_start, 3), load_average()[0])
        if self.log_path is not None:
            with self.log_path.open("a", newline="") as handle:
                csv.writer(handle).writerow(row)
        due = [s for s in self.pending if cpu >= s]
        self.pending = [s for s in self.pending if cpu < s]
        return due, cpu >= self.budget_s


class CpuBudget(Callback):
    """Stop training once the process has used ``budget_s`` CPU seconds; save ``out_dir/cpu_<S>s.ckpt``
    when each of ``snapshots_s`` is crossed (the full Lightning checkpoint, EMA weights included).

    Add it to a ``medsynth train`` run as a Hydra callback entry, e.g.
    ``+callbacks.cpu_budget._target_=cpu_budget.CpuBudget +callbacks.cpu_budget.budget_s=1200``
    with ``benchmarks/`` on ``PYTHONPATH``.
    """

    def __init__(
        self,
        budget_s: float,
        snapshots_s: list[float] | None = None,
        out_dir: str | Path | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.clock = CpuClock(budget_s, snapshots_s, log_path)
        self.out_dir = Path(out_dir) if out_dir else None
        self.stopped_by_budget = False

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        due, spent = self.clock.tick(trainer.global_step)
        if self.out_dir is not None:
            for s in due:
                trainer.save_checkpoint(str(self.out_dir / f"cpu_{int(s)}s.ckpt"))
        if spent:
            self.stopped_by_budget = True
            trainer.should_stop = True
