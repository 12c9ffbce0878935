"""Devices and precisions, for every stage: ``auto`` resolved once, here.

``precision: auto`` is the fastest mixed precision the device runs well:

CUDA with bf16 -> ``bf16-mixed``; older CUDA -> ``16-mixed`` (Lightning adds a gradient scaler);
x86 CPUs with AVX512-BF16 or AMX -> ``bf16-mixed`` (about 2x faster training here, DOMAIN.md);
anything else -> ``32-true``.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from medsynth.errors import ConfigError

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


def uses_cuda(target: str | torch.device) -> bool:
    """Whether a Lightning ``accelerator`` setting or a torch device ends up on CUDA."""
    if isinstance(target, torch.device):
        return target.type == "cuda"
    accelerator = str(target).lower()
    if accelerator in ("gpu", "cuda") or accelerator.startswith("cuda:"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` or ``auto``: the first CUDA device if there is one, else the CPU; a name otherwise.

    Raises :class:`ConfigError` naming ``device`` for a malformed name (e.g. ``device=tpu``).
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError("device", " ".join(str(err).split())) from None


#: spellings accepted for the three precisions medsynth picks between -> Lightning's names
PRECISION_ALIASES = {
    "32": "32-true",
    "fp32": "32-true",
    "32-true": "32-true",
    "bf16": "bf16-mixed",
    "bf16-mixed": "bf16-mixed",
    "16": "16-mixed",
    "fp16": "16-mixed",
    "16-mixed": "16-mixed",
}


def resolve_precision(precision: str | int, target: str | torch.device) -> str:
    """``auto`` -> the fastest mixed precision ``target`` (accelerator name or device) runs well,
    as a Lightning precision string; known aliases (``32``, ``bf16``, ``fp16`` ...) -> Lightning's
    name; any other value passes through unchanged (Lightning and the config schema check it)."""
    if str(precision) != "auto":
        return PRECISION_ALIASES.get(str(precision), str(precision))
    if uses_cuda(target):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    target_name = target.type if isinstance(target, torch.device) else str(target).lower()
    if target_name in ("cpu", "auto") and cpu_supports_bf16():
        return "bf16-mixed"
    return "32-true"
