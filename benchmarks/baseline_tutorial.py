"""The baseline: a training step and samplers written the way MONAI's 3d_ddpm tutorial does it.

Plain PyTorch, fp32, pixel space, ``DiffusionInferer``, ``DDPMScheduler`` with 1000 steps
(scaled_linear_beta 0.0005-0.0195), Adam 5e-5; the tutorial's second sampler is
``DDIMScheduler`` (same betas, ``clip_sample=False``) with 250 steps. The network's channels,
attention levels, res-blocks and the batch size are the caller's, so the comparison with medsynth
uses the same UNet. Kept apart from medsynth on purpose: it is what users would otherwise run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler


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


#: the tutorial's DDIM sampler: 250 of the 1000 training timesteps
TUTORIAL_DDIM_STEPS = 250


def tutorial_ddim_scheduler(num_inference_steps: int = TUTORIAL_DDIM_STEPS) -> DDIMScheduler:
    """The tutorial's ``DDIMScheduler`` (same betas as training, ``clip_sample=False``), timesteps set."""
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        schedule="scaled_linear_beta",
        beta_start=0.0005,
        beta_end=0.0195,
        clip_sample=False,
    )
    scheduler.set_timesteps(num_inference_steps=num_inference_steps)
    return scheduler


def tutorial_training_step(model: DiffusionModelUNet, batch: torch.Tensor) -> Callable[[], None]:
    """One tutorial training step as a callable (noise, ``DiffusionInferer`` forward, MSE, backward,
    Adam 5e-5), fp32; the optimizer lives in the closure, so repeated calls keep training."""
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

    return step


def timed(fn: Callable[[], object], n: int, device: torch.device) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn`` (CUDA synchronised around each)."""
    times = []
    for _ in range(n):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def time_training_steps(
    model: DiffusionModelUNet, batch: torch.Tensor, n_steps: int, warmup: int = 1
) -> list[float]:
    """Seconds of each of ``n_steps`` training steps after ``warmup`` untimed ones, tutorial-style, fp32."""
    step = tutorial_training_step(model, batch)
    for _ in range(warmup):
        step()
    return timed(step, n_steps, batch.device)


class TutorialSampler:
    """The tutorial's sampling loop (``inferer.sample``'s body: network call + ``scheduler.step``) at
    batch 1, fp32, walked a few steps at a time so that its steps can be timed interleaved with
    other work. ``scheduler`` is a DDPM or DDIM scheduler with its timesteps set; after the last
    timestep the walk starts again from fresh noise. Every step is one network call plus an
    O(voxels) update, whatever the timestep, so the time of a subset of steps times the number of
    steps is the time of a volume (up to timer noise).
    """

    def __init__(self, model: DiffusionModelUNet, shape: tuple[int, ...], scheduler) -> None:
        self.model = model.eval()
        self.scheduler = scheduler
        self.shape = tuple(shape)
        self.device = next(model.parameters()).device
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.position = 0
        self.image = self._noise()

    def _noise(self) -> torch.Tensor:
        return torch.randn((1, *self.shape), device=self.device)

    @torch.no_grad()
    def step(self) -> None:
        """One sampling step: the network's noise prediction, then the scheduler's update."""
        if self.position == len(self.timesteps):
            self.position, self.image = 0, self._noise()
        t = self.timesteps[self.position]
        output = self.model(self.image, timesteps=torch.tensor((t,), device=self.device))
        self.image, _ = self.scheduler.step(output, t, self.image)
        self.position += 1

    def time_steps(self, n_steps: int) -> list[float]:
        """Seconds of each of the next ``n_steps`` steps."""
        return timed(self.step, n_steps, self.device)

    def time_volume(self) -> float:
        """Seconds of one whole volume from fresh noise through every timestep (``inferer.sample``)."""
        self.position, self.image = 0, self._noise()
        return sum(self.time_steps(len(self.timesteps)))


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
    sampler = TutorialSampler(model, shape, scheduler)
    for _ in range(warmup):
        sampler.step()
    return sampler.time_steps(n_steps)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
