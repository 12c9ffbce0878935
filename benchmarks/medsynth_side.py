"""medsynth's side of the comparison: its default training step and its default fast sampler.

Training runs the real ``DiffusionModule`` inside a real Lightning ``Trainer`` built from the
composed ``conf/config.yaml`` (default representation, ``trainer.precision: auto`` through
``medsynth.models.precision.resolve_precision``, AdamW + warm-up/cosine schedule, gradient
clipping, EMA update in ``optimizer_step``); only the data source is an in-memory list of
volumes, as the baseline's is. Sampling calls ``medsynth.sampling.generate.generate_volumes``
end to end (noise, sampler loop with autocast, wavelet decode) with the sampler settings of
``conf/sampler/<name>.yaml``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from machine import torch_threads
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from medsynth.config import compose_stage
from medsynth.models.cpu_threads import resolve_num_threads
from medsynth.models.diffusion_module import DiffusionModule
from medsynth.models.precision import resolve_precision


def training_config(shape: Sequence[int], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved training config (plain dict) for data of ``shape`` with optional Hydra overrides."""
    cfg = compose_stage("config", [f"data.shape=[{','.join(str(int(s)) for s in shape)}]", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def default_thread_settings() -> tuple[Any, Any]:
    """(``trainer.num_threads``, sample ``num_threads``) of the default configs."""
    train = compose_stage("config").trainer.get("num_threads")
    sample = compose_stage("sample").get("num_threads")
    return train, sample


def resolve_threads_once(setting: Any) -> int:
    """The thread count a fresh medsynth process would pick now (``auto`` reads the load average, so
    it is resolved once at the start of the benchmark, before this process adds load of its own)."""
    return resolve_num_threads(setting) or torch.get_num_threads()


def benchmark_trainer(
    device_type: str, precision: str, max_steps: int, gradient_clip_val: float, **extra: Any
) -> pl.Trainer:
    """A one-device Lightning Trainer for timing: no logger, checkpoints, progress bar or validation."""
    return pl.Trainer(
        accelerator="gpu" if device_type == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=max_steps,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=gradient_clip_val,
        **extra,
    )


def build_module(config: dict[str, Any], shape: Sequence[int]) -> DiffusionModule:
    """A ``DiffusionModule`` for (D, H, W) volumes at 1 mm with an identity affine (geometry only matters for export)."""
    geometry = {"shape": [int(s) for s in shape], "spacing": [1.0, 1.0, 1.0], "affine": np.eye(4).tolist()}
    return DiffusionModule(config=config, geometry=geometry)


class StepTimer(Callback):
    """Wall time of each training batch, from one batch start to the next (data fetch, forward,
    backward, clipping, optimizer, EMA and Lightning's hooks all included)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.end: float | None = None
        self.threads = torch.get_num_threads()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.starts.append(time.perf_counter())
        self.threads = torch.get_num_threads()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.end = time.perf_counter()

    def step_seconds(self) -> list[float]:
        marks = [*self.starts[1:], self.end] if self.end is not None else self.starts[1:]
        return [b - a for a, b in zip(self.starts, marks, strict=False)]


def random_volumes(n: int, shape: Sequence[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` smooth random volumes (1, D, H, W) in [-1, 1] as DataModule-style dicts."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        coarse = torch.rand((1, 1, *(max(int(s) // 4, 1) for s in shape)), generator=generator)
        volume = torch.nn.functional.interpolate(coarse, size=tuple(int(s) for s in shape), mode="trilinear")
        out.append({"image": (volume[0] * 2 - 1).contiguous()})
    return out


def time_training(
    config: dict[str, Any],
    shape: Sequence[int],
    batch_size: int,
    n_steps: int,
    warmup: int,
    device: torch.device,
    compile_network: bool = False,
    module: DiffusionModule | None = None,
) -> dict[str, Any]:
    """Seconds per medsynth training step (mean of ``n_steps`` after ``warmup``) through ``Trainer.fit``.

    ``module``: go on training this module (a new ``Trainer.fit``: new optimizer, the same weights
    and EMA) instead of building one from ``config``.
    Returns {"seconds": [...], "mean": s, "precision": str, "representation": str, "module": module}.
    """
    if module is None:
        module = build_module(config, shape)
        if compile_network:
            module.network = torch.compile(module.network)
    precision = resolve_precision(config["trainer"]["precision"], device.type)
    timer = StepTimer()
    total = warmup + n_steps
    data = DataLoader(
        random_volumes(max(batch_size * total, batch_size), shape), batch_size=batch_size, shuffle=False
    )
    trainer = benchmark_trainer(
        device.type,
        precision,
        total,
        config["trainer"]["gradient_clip_val"],
        benchmark=device.type == "cuda",
        callbacks=[timer],
    )
    with torch_threads(None):  # DiffusionModule.setup applies trainer.num_threads; restore it afterwards
        trainer.fit(module, train_dataloaders=data)
    seconds = timer.step_seconds()[warmup:]
    return {
        "seconds": seconds,
        "mean": float(np.mean(seconds)),
        "precision": precision,
        "representation": module.representation_name,
        "module": module,
        "threads": timer.threads,
    }


def sampler_settings(name: str | None = None) -> dict[str, Any]:
    """``conf/sampler/<name>.yaml`` as a dict (name, steps, eta, grid); ``None``: the default sampler of
    ``conf/sample.yaml`` (what ``medsynth sample`` runs without a ``sampler=`` override)."""
    cfg = compose_stage("sample", [f"sampler={name}"] if name else [])
    return OmegaConf.to_container(cfg.sampler, resolve=True)  # type: ignore[return-value]


def time_sampling(
    module: DiffusionModule,
    sampler: dict[str, Any],
    device: torch.device,
    repeats: int,
    precision: str = "auto",
    threads: int | None = None,
    warmup: bool = True,
) -> dict[str, Any]:
    """Seconds to generate one volume end to end with ``generate_volumes`` (after a 2-step warm-up
    call unless ``warmup`` is false), with ``threads`` CPU threads as ``medsynth sample`` sets them
    (``num_threads``)."""
    from medsynth.sampling.generate import generate_volumes, sampling_precision

    bundle = module.sampling_bundle(use_ema=True)
    bundle.network.to(device)
    common = {
        "sampler": sampler["name"],
        "eta": float(sampler.get("eta") or 0.0),
        "grid": sampler.get("grid"),
        "batch_size": 1,
        "device": device,
        "precision": precision,
    }
    seconds = []
    with torch_threads(threads if device.type == "cpu" else None):
        if warmup:  # kernels, oneDNN primitives
            generate_volumes(bundle, seeds=[12345], steps=2, **common)
        for r in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            volume = generate_volumes(bundle, seeds=[r], steps=sampler["steps"], **common)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
        used_threads = torch.get_num_threads()
    assert volume.shape[2:] == tuple(module.image_shape)
    return {
        "seconds": seconds,
        "median": float(np.median(seconds)),
        "precision": sampling_precision(precision, device),
        "steps": sampler["steps"],
        "sampler": sampler["name"],
        "threads": used_threads,
    }
