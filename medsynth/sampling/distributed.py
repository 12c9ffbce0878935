"""``devices=N``: generate shards of a plan in N processes with Lightning Fabric (``ddp_spawn``).

Rank r takes samples r, r + N, r + 2N, ... of the plan and writes its files itself; since every
sample owns its generator (see ``generate.py``), the voxels equal a one-process run's. CUDA: one
GPU per process (NCCL); CPU: N processes (gloo), each with cpu_count / N threads. The combined
manifest is written afterwards by the launching process from the files' headers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medsynth.errors import ConfigError
from medsynth.models.bundle import SamplingBundle
from medsynth.sampling.plan import GenerationSettings, SampleSpec
from medsynth.sampling.writer import write_samples


def _shard_worker(
    fabric,
    bundle: SamplingBundle,
    specs: list[SampleSpec],
    settings: GenerationSettings,
    out_dir: str,
    batch_size: int,
    progress: bool,
) -> dict[int, float]:
    world, rank = fabric.world_size, fabric.global_rank
    if fabric.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    shard = specs[rank::world]
    seconds = write_samples(
        bundle,
        shard,
        settings,
        out_dir,
        batch_size,
        device=fabric.device,
        progress=progress and rank == 0,
        description=f"sampling rank 0/{world}",
    )
    fabric.barrier()
    return seconds


def write_samples_distributed(
    bundle: SamplingBundle,
    specs: list[SampleSpec],
    settings: GenerationSettings,
    out_dir: str | Path,
    batch_size: int,
    devices: int,
    accelerator: str = "auto",
    progress: bool = True,
) -> None:
    """Run :func:`~medsynth.sampling.writer.write_samples` over ``devices`` processes."""
    from lightning.fabric import Fabric

    if devices < 2:
        raise ConfigError("devices", f"distributed generation needs devices >= 2, got {devices}")
    if accelerator in ("gpu", "cuda") and torch.cuda.device_count() < devices:
        raise ConfigError("devices", f"asks for {devices} GPUs but {torch.cuda.device_count()} are visible")
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.device_count() >= devices else "cpu"
    fabric = Fabric(accelerator=accelerator, devices=devices, strategy="ddp_spawn", precision="32-true")
    fabric.launch(_shard_worker, bundle, specs, settings, str(out_dir), batch_size, progress)
