"""The machine under test: device choice and setup, load average, peak memory, FLOP counts and a peak estimate.

Device-agnostic: ``--device auto`` picks CUDA when present (then ``cudnn.benchmark`` is on and
peak memory is ``torch.cuda.max_memory_allocated``), else the CPU (peak memory is the process's
max RSS from ``resource.getrusage``, which never goes down, so it is the peak of the whole run
up to that point).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def pick_device(name: str) -> torch.device:
    """``auto``: CUDA if available, else CPU. Turns on ``cudnn.benchmark`` on CUDA."""
    device = torch.device(
        "cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name)
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "load_average": load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def available_memory_gb() -> float:
    """MemAvailable from /proc/meminfo in GB (infinity where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("inf")


def matmul_seconds(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 4) -> float:
    """Best of ``repeats`` timed ``n x n @ n x n`` matmuls (2 n^3 FLOPs each) on the current threads."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_gflops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """A rough machine peak in GFLOP/s for ``dtype`` and how it was estimated.

    CUDA: a large measured matmul (the practical peak). CPU: also a measured matmul on the current
    threads (2048^2 x 2048, best of 4), which is what oneDNN reaches on this core count: a theoretical
    cores x GHz x FLOP/cycle figure needs a clock we cannot read reliably in a VM.
    """
    n = 4096 if device.type == "cuda" else 2048
    best = matmul_seconds(device, dtype, n)
    return 2.0 * n**3 / best / 1e9, f"measured {n}x{n} {str(dtype).replace('torch.', '')} matmul, best of 4"


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward if it does both) with ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory so far: CUDA max allocated on a GPU, else the process's max RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024.0, "max_rss"


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


class torch_threads:
    """Context manager: ``torch.set_num_threads(n)`` inside, the previous count restored after."""

    def __init__(self, n: int | None):
        self.n = n
        self.previous = torch.get_num_threads()

    def __enter__(self) -> None:
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.previous)
