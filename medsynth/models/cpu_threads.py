"""CPU thread policy: how many intra-op threads torch uses (``trainer.num_threads`` / sample ``num_threads``).

``auto`` = the CPU cores this process may run on minus the cores other work keeps busy (rounded),
at least 1. On an idle machine that is every core; on a shared or oversubscribed one fewer threads
avoid OpenMP threads spin-waiting for a descheduled sibling. Measured on a 2-core CPU under a load
of ~5 (benchmarks/README.md): one thread made a bf16 64^3 wavelet training step 2.5x faster and a
denoising step 4x faster than two.

"Busy" is measured now, over ``BUSY_WINDOW_S`` of ``/proc/stat`` (Linux), not read from the 1-minute
load average: that average lags by minutes, so right after ``make demo`` built its virtual environment
(load average 1.1 on an idle 2-core machine) it made training pick 1 thread. The load average is the
fallback where ``/proc/stat`` is missing.
Hand-written: a short heuristic that neither torch nor Lightning offers.
"""

from __future__ import annotations

import os
import time

import torch

BUSY_WINDOW_S = 0.5
"""Seconds over which ``busy_cores`` samples ``/proc/stat``."""


def available_cores() -> int:
    """Cores in this process's CPU affinity mask (``os.cpu_count()`` where affinity is unavailable)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times(stat_path: str) -> tuple[int, int]:
    """(busy, total) jiffies summed over all CPUs, from the first line of ``/proc/stat``."""
    with open(stat_path) as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def busy_cores(window_s: float = BUSY_WINDOW_S, stat_path: str = "/proc/stat") -> float:
    """Cores busy over the next ``window_s`` seconds (this process sleeps meanwhile, so it is not counted).

    Machine-wide CPU time from ``stat_path`` times ``os.cpu_count()``; where it cannot be read, the
    1-minute load average; 0 where neither exists.
    """
    try:
        busy0, total0 = _cpu_times(stat_path)
        time.sleep(window_s)
        busy1, total1 = _cpu_times(stat_path)
        if total1 > total0:
            return (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def resolve_num_threads(setting: int | str | None) -> int | None:
    """``auto`` -> cores minus round(busy cores), >= 1; ``null``/``default`` -> None (torch's own); N -> N."""
    if setting is None or str(setting) in ("default", "none", "null"):
        return None
    if str(setting) == "auto":
        cores = available_cores()
        return max(1, min(cores, cores - round(busy_cores())))
    threads = int(setting)
    if threads < 1:
        raise ValueError(f"num_threads must be >= 1, 'auto' or null, got {setting!r}")
    return threads


def apply_num_threads(setting: int | str | None, device_type: str) -> int:
    """Set torch's intra-op threads for work on ``device_type`` (CPU only); returns the count in use."""
    if device_type == "cpu":
        threads = resolve_num_threads(setting)
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
    return torch.get_num_threads()
