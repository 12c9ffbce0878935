"""Peak memory of one training step, measured in a fresh process so one side's peak cannot hide the other's.

``probe(kind, ...)`` runs in a spawned child (``multiprocessing`` spawn context): it builds the
network, runs two training steps and returns the child's max RSS (MiB) and, on CUDA, the max
allocated memory.
"""

from __future__ import annotations

import multiprocessing
import resource
from typing import Any


def _child(
    kind: str, model_cfg: dict, shape: list[int], batch_size: int, device_name: str, threads: int
) -> dict:
    import torch

    torch.set_num_threads(threads)
    from ablation import Variant, time_train_variant

    device = torch.device(device_name)
    variant = Variant("baseline") if kind == "baseline" else Variant("medsynth", bf16=True, wavelet=True)
    time_train_variant(variant, model_cfg, shape, batch_size, n_steps=1, warmup=1, device=device)
    out = {"max_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set (MiB): ``VmHWM`` of /proc/self/status, which belongs to the
    current address space. (``ru_maxrss`` is no good in a spawned child: Linux carries it over from
    the forking parent across ``exec``, so the child would report the parent's peak.)"""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def probe(
    kind: str, model_cfg: dict, shape: list[int], batch_size: int, device_name: str, threads: int
) -> dict[str, Any]:
    """Peak memory of two ``kind`` (``baseline`` | ``medsynth``: bf16 + wavelet) training steps, in a child process."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_child, (kind, model_cfg, shape, batch_size, device_name, threads))
