"""The baseline: a training step and a sampler written the way MONAI's 3d_ddpm tutorial does it.

Plain PyTorch, fp32, pixel space, ``DiffusionInferer``, ``DDPMScheduler`` with 1000 steps
(scaled_linear_beta 0.0005-0.0195), Adam 5e-5. The network's channels, attention levels,
res-blocks and the batch size are the caller's, so the comparison with medsynth uses the same
UNet. Kept apart from medsynth on purpose: it is what users would otherwise run.
"""

from __future__ import annotations

import time

import torch
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler


def tutorial_unet(
    in_channels: int,
    channels,
    attention_levels,
    num_res_blocks: int,
    num_head_channels,
    norm_num_groups: int | None = None,
) -> DiffusionModelUNet:
    """MONAI's 3D ``DiffusionModelUNet`` (in = out channels); ``norm_num_groups`` defaults to min(32, min(channels))."""
    return DiffusionModelUNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=in_channels,
        channels=tuple(channels),
        attention_levels=tuple(attention_levels),
        num_res_blocks=num_res_blocks,
        num_head_channels=num_head_channels,
        norm_num_groups=int(norm_num_groups or min(32, min(channels))),
    )


def tutorial_unet_from_config(model_cfg, in_channels: int = 1) -> DiffusionModelUNet:
    """:func:`tutorial_unet` with the widths of a medsynth ``model`` config group (dict-like)."""
    return tutorial_unet(
        in_channels,
        model_cfg["channels"],
        model_cfg["attention_levels"],
        model_cfg["num_res_blocks"],
        model_cfg["num_head_channels"],
        norm_num_groups=model_cfg["norm_num_groups"],
    )


def tutorial_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195
    )


def time_training_steps(
    model: DiffusionModelUNet, batch: torch.Tensor, n_steps: int, warmup: int = 1
) -> list[float]:
    """Seconds of each of ``n_steps`` training steps after ``warmup`` untimed ones, tutorial-style, fp32."""
    scheduler = tutorial_scheduler()
    inferer = DiffusionInferer(scheduler)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        noise = torch.randn_like(batch)
        timesteps = torch.randint(
            0, inferer.scheduler.num_train_timesteps, (batch.shape[0],), device=batch.device
        ).long()
        prediction = inferer(inputs=batch, diffusion_model=model, noise=noise, timesteps=timesteps)
        loss = torch.nn.functional.mse_loss(prediction.float(), noise.float())
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(n_steps):
        _synchronize(batch.device)
        start = time.perf_counter()
        step()
        _synchronize(batch.device)
        times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def time_denoising_steps(
    model: DiffusionModelUNet, shape: tuple[int, ...], n_steps: int, warmup: int = 1
) -> list[float]:
    """Seconds of each of ``n_steps`` DDPM denoising steps at batch 1 (the tutorial's ``inferer.sample``
    loop body: network call + ``scheduler.step``), fp32, after ``warmup`` untimed steps.

    A 1000-step volume costs 1000x this: the network call dominates and every DDPM step is the same
    network call plus an O(voxels) update, so timing a subset of steps and multiplying is exact up
    to timer noise.
    """
    scheduler = tutorial_scheduler()
    scheduler.set_timesteps(num_inference_steps=1000)
    model.eval()
    device = next(model.parameters()).device
    image = torch.randn((1, *shape), device=device)
    timesteps = list(scheduler.timesteps)
    for t in timesteps[:warmup]:
        output = model(image, timesteps=torch.tensor((int(t),), device=device))
        image, _ = scheduler.step(output, t, image)
    times = []
    for t in timesteps[warmup : warmup + n_steps]:
        _synchronize(device)
        start = time.perf_counter()
        output = model(image, timesteps=torch.tensor((int(t),), device=device))
        image, _ = scheduler.step(output, t, image)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
