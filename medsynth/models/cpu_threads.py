"""CPU thread policy: how many intra-op threads torch uses (``trainer.num_threads`` / sample ``num_threads``).

``auto`` = the CPU cores this process may run on minus the machine's current 1-minute load
average (rounded down), at least 1. On an idle machine that is every core; on a shared or
oversubscribed one fewer threads avoid OpenMP threads spin-waiting for a descheduled sibling.
Measured on a 2-core CPU under a load of ~5 (benchmarks/README.md): one thread made a bf16
64^3 wavelet training step 2.5x faster and a denoising step 4x faster than two.
Hand-written: a four-line heuristic that neither torch nor Lightning offers.
"""

from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores in this process's CPU affinity mask (``os.cpu_count()`` where affinity is unavailable)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_num_threads(setting: int | str | None) -> int | None:
    """``auto`` -> cores minus floor(1-min load), >= 1; ``null``/``default`` -> None (torch's own choice); N -> N."""
    if setting is None or str(setting) in ("default", "none", "null"):
        return None
    if str(setting) == "auto":
        cores = available_cores()
        try:
            busy = int(os.getloadavg()[0])
        except (AttributeError, OSError):
            busy = 0
        return max(1, min(cores, cores - busy))
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
