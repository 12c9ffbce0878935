"""Ablation: the baseline's training step and denoising step with one speed feature added at a time.

Each variant is the tutorial loop of :mod:`baseline_tutorial` (same UNet, same batch) with:
``bf16`` (``torch.autocast`` bfloat16, or float16 on CUDA when bf16 is missing), ``wavelet``
(the network diffuses medsynth's ``WaveletRepresentation``: 8 sub-bands at half size),
``channels_last`` (``torch.channels_last_3d`` weights and inputs) and ``threads`` (``torch.set_num_threads``).
The medsynth default itself is timed through Lightning in :mod:`medsynth_side`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from baseline_tutorial import tutorial_scheduler, tutorial_unet_from_config
from machine import synchronize, torch_threads

from medsynth.models.representation import WaveletRepresentation


@dataclass(frozen=True)
class Variant:
    name: str
    bf16: bool = False
    wavelet: bool = False
    channels_last: bool = False
    threads: int | None = None


def autocast_context(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _network(variant: Variant, model_cfg: dict, device: torch.device) -> torch.nn.Module:
    channels = 8 if variant.wavelet else 1
    net = tutorial_unet_from_config(model_cfg, channels).to(device)
    if variant.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    return net


def _inputs(variant: Variant, volume: torch.Tensor) -> torch.Tensor:
    x = WaveletRepresentation().encode(volume) if variant.wavelet else volume
    return x.contiguous(memory_format=torch.channels_last_3d) if variant.channels_last else x


def time_train_variant(
    variant: Variant,
    model_cfg: dict,
    shape: Sequence[int],
    batch_size: int,
    n_steps: int,
    warmup: int,
    device: torch.device,
) -> list[float]:
    """Seconds of each timed training step (noise, forward, MSE, backward, Adam) of ``variant``."""
    with torch_threads(variant.threads):
        net = _network(variant, model_cfg, device)
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-5)
        scheduler = tutorial_scheduler()
        volume = torch.rand((batch_size, 1, *shape), device=device) * 2 - 1
        times = []
        for i in range(warmup + n_steps):
            synchronize(device)
            start = time.perf_counter()
            x0 = _inputs(variant, volume)
            noise = torch.randn_like(x0)
            t = torch.randint(0, 1000, (batch_size,), device=device)
            noisy = scheduler.add_noise(x0, noise, t)
            optimizer.zero_grad(set_to_none=True)
            with autocast_context(device, variant.bf16):
                prediction = net(noisy, timesteps=t)
            loss = torch.nn.functional.mse_loss(prediction.float(), noise.float())
            loss.backward()
            optimizer.step()
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return times


@torch.inference_mode()
def time_denoise_variant(
    variant: Variant, model_cfg: dict, shape: Sequence[int], n_steps: int, warmup: int, device: torch.device
) -> list[float]:
    """Seconds of each timed denoising network call + DDPM update at batch 1 for ``variant``."""
    with torch_threads(variant.threads):
        net = _network(variant, model_cfg, device).eval()
        scheduler = tutorial_scheduler()
        scheduler.set_timesteps(1000)
        x = _inputs(variant, torch.randn((1, 1, *shape), device=device))
        times = []
        for i, t in enumerate(list(scheduler.timesteps)[: warmup + n_steps]):
            synchronize(device)
            start = time.perf_counter()
            with autocast_context(device, variant.bf16):
                out = net(x, timesteps=torch.tensor((int(t),), device=device)).float()
            x, _ = scheduler.step(out, t, x)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return times
