"""The diffusion training objective: per-sample loss and min-SNR weighting.

``min_snr_weight`` follows Hang et al. 2023 ("Efficient Diffusion Training via Min-SNR Weighting
Strategy"): the x0 loss is weighted by min(SNR(t), gamma), SNR(t) = alpha_t^2 / sigma_t^2, and
carried over to the network's own target by the factor that links the two losses
(:meth:`~medsynth.models.noise.NoiseProcess.x0_loss_scale`): min(SNR, gamma) / SNR for epsilon,
min(SNR, gamma) / (SNR + 1) for v, min(SNR, gamma) for x0, min(SNR, gamma) sigma^2 for rflow's
x0 - eps. Hand-written: a two-line formula that MONAI does not ship.
"""

from __future__ import annotations

import torch

from medsynth.models.noise import PREDICTION_TYPES, SCHEDULES, NoiseProcess

__all__ = ["LOSSES", "PREDICTION_TYPES", "SCHEDULES", "diffusion_loss", "min_snr_weight"]

LOSSES = ("mse", "l1")


def min_snr_weight(process: NoiseProcess, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weight (B,) float32 of min-SNR-gamma for ``process``'s prediction type."""
    return process.snr(timesteps).clamp(max=gamma) * process.x0_loss_scale(timesteps)


def diffusion_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    kind: str = "mse",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over voxels per sample (mse or l1), optionally weighted per sample, then mean over the batch (scalar)."""
    diff = prediction.float() - target.float()
    per_voxel = diff.pow(2) if kind == "mse" else diff.abs()
    per_sample = per_voxel.flatten(1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()
