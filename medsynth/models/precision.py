"""``trainer.precision: auto``: the fastest mixed precision the device runs well.

CUDA with bf16 -> ``bf16-mixed``; older CUDA -> ``16-mixed`` (Lightning adds a gradient scaler);
x86 CPUs with AVX512-BF16 or AMX -> ``bf16-mixed`` (about 2x faster training here, DOMAIN.md);
anything else -> ``32-true``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_supports_bf16() -> bool:
    """True on Linux x86 CPUs that advertise AVX512-BF16 or AMX-BF16 in /proc/cpuinfo."""
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in BF16_CPU_FLAGS)
    return False


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning's ``accelerator`` setting ends up on CUDA."""
    accelerator = str(accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """Turn ``auto`` into a Lightning precision string; any other value passes through unchanged."""
    if str(precision) != "auto":
        return str(precision)
    if uses_cuda(accelerator):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    if str(accelerator).lower() in ("cpu", "auto") and cpu_supports_bf16():
        return "bf16-mixed"
    return "32-true"
