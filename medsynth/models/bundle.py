"""What sampling needs from a trained model: the contract between training and sampling.

Training (``medsynth.models``) writes Lightning checkpoints; ``load_for_sampling`` in
``medsynth.models.checkpoint`` turns one into a :class:`SamplingBundle`. Sampling
(``medsynth.sampling``) only ever sees this bundle, so it can be tested with a randomly
initialised network and cannot depend on training internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn


class Representation(Protocol):
    """Maps image volumes to the tensors the network diffuses, and back.

    ``encode``: (B, 1, D, H, W) in [-1, 1] -> (B, C, d, h, w); ``decode`` is its inverse.
    ``pixel``: identity (C=1, same size); ``wavelet``: 3D Haar, C=8 sub-bands at half size.
    """

    name: str

    def encode(self, volume: torch.Tensor) -> torch.Tensor: ...

    def decode(self, coefficients: torch.Tensor) -> torch.Tensor: ...

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """(C, d, h, w) of the diffused tensor for an image of (D, H, W) voxels."""
        ...

    def clip_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low, high), each (C,) float64: the range of each diffused channel for volumes in [-1, 1]
        (what ``clip_sample`` clamps x0 to)."""
        ...


@dataclass
class DiffusionSettings:
    """The training noise process (MONAI scheduler arguments; see :mod:`medsynth.models.noise`)."""

    num_train_timesteps: int
    schedule: str  # MONAI schedule name: linear_beta | scaled_linear_beta | cosine (ddpm only)
    beta_start: float
    beta_end: float
    prediction_type: str  # epsilon | v_prediction | sample | flow (x0 - eps) | edm (EDM preconditioning)
    clip_sample: bool = True
    process: str = "ddpm"  # ddpm (variance preserving) | rflow (rectified flow)
    time_sampling: str = "uniform"  # training times: uniform | logit-normal (on t/T) | lognormal (on sigma/alpha) | logsnr (uniform in ln(sigma/alpha))
    logit_loc: float = 0.0  # logit-normal location and scale
    logit_scale: float = 1.0
    lognormal_mean: float = -1.2  # lognormal: ln(sigma/alpha) ~ N(mean, std^2) (EDM's P_mean, P_std)
    lognormal_std: float = 1.2
    sigma_data: float | tuple[float, ...] = 0.1  # EDM's sigma_data (edm only): one, or one per representation channel


@dataclass
class ConditioningSpec:
    """Which conditions the model was trained with (empty: unconditional)."""

    num_classes: int = 0  # 0: no class label
    class_names: list[str] = field(default_factory=list)  # class index -> label value in the manifest
    label_key: str | None = None  # manifest column of the class label
    covariate_keys: list[str] = field(default_factory=list)
    guidance_trained: bool = False  # condition dropout in training -> classifier-free guidance works

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0 or bool(self.covariate_keys)


@dataclass
class Geometry:
    """The preprocessing space of the training data: every exported volume carries it."""

    shape: tuple[int, int, int]  # (D, H, W) voxels = NIfTI voxel axes i, j, k
    spacing: tuple[float, float, float]  # mm per voxel along i, j, k
    affine: np.ndarray  # (4, 4) voxel -> RAS mm
    fingerprint: dict | None = None  # preprocessing fingerprint (medsynth.io.fingerprint); None: older checkpoint
    label_classes: int = 0  # K > 0: paired model, volumes carry 1 + K channels (medsynth.models.paired)
    label_mode: str = "joint"  # joint: labels generated | condition: labels given (masks_dir), image generated

    @property
    def mask_conditioned(self) -> bool:
        return self.label_classes > 0 and self.label_mode == "condition"


@dataclass
class IntensityMapping:
    """How [-1, 1] model intensities map back to source units (e.g. HU): v = low + (x + 1) / 2 * (high - low)."""

    mode: str  # "ct" | "mr" | "none"
    low: float
    high: float
    unit: str = ""

    def to_source(self, x: np.ndarray) -> np.ndarray:
        return self.low + (x + 1.0) * 0.5 * (self.high - self.low)


@dataclass
class SamplingBundle:
    """Everything a sampler needs.

    ``network(x, timesteps, class_labels=None, covariates=None)``: x (B, C, d, h, w), timesteps
    (B,) long, class_labels (B,) long or None, covariates (B, K) float or None -> prediction of
    the same shape as x (``diffusion.prediction_type``). Passing None for a condition the model
    was trained with gives the unconditional (null-condition) branch used by classifier-free
    guidance; the wrapper owns how the null condition is encoded.
    """

    network: nn.Module
    representation: Representation
    diffusion: DiffusionSettings
    conditioning: ConditioningSpec
    geometry: Geometry
    intensity: IntensityMapping | None
    checkpoint_path: str
    checkpoint_sha256: str
    config_hash: str
    used_ema: bool
