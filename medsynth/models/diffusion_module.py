"""``DiffusionModule``: the Lightning module that trains a 3D DDPM on MONAI's ``DiffusionModelUNet``.

One training step (shapes for a batch of B volumes of (D, H, W) voxels):
    image (B, 1, D, H, W) in [-1, 1] --representation.encode--> x0 (B, C, d, h, w)
    t (B,) in [0, T), noise ~ N(0, I), x_t = alpha_t x0 + sigma_t noise   (medsynth.models.noise: MONAI
        DDPMScheduler or rflow: MONAI RFlowScheduler, alpha = 1 - t/T; t drawn by diffusion.time_sampling)
    loss = mean_b w_b * mean_voxels (net(x_t, t, cond) - target)^2    (target: noise | v | x0 | x0 - noise; w: min-SNR or 1)

Noise, timesteps and condition dropout come from a generator seeded by (seed, global step, rank),
so a resumed run draws exactly what an uninterrupted run would have drawn. An EMA copy of the
network (``self.ema``, torch ``AveragedModel``) is updated after every optimizer step, used for
validation, previews and sampling, and saved in every checkpoint. ``checkpoint["medsynth"]`` holds
what sampling needs (see :mod:`medsynth.models.checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.utilities import grad_norm

from medsynth.errors import ConfigError
from medsynth.models.bundle import (
    ConditioningSpec,
    DiffusionSettings,
    Geometry,
    IntensityMapping,
    SamplingBundle,
)
from medsynth.models.cpu_threads import apply_num_threads
from medsynth.models.ema import build_ema
from medsynth.models.losses import diffusion_loss, min_snr_weight
from medsynth.models.networks import ConditionedUNet, unet_kwargs_from_config
from medsynth.models.noise import NoiseProcess, check_sigma_data
from medsynth.models.paired import (
    LABEL_MODES,
    build_generation_representation,
    build_paired_representation,
    split_condition,
)
from medsynth.models.representation import (
    LEGACY_DETAIL_GAIN,
    LEGACY_WAVELET_SCALING,
    default_representation_name,
)
from medsynth.models.schedules import warmup_cosine

log = logging.getLogger(__name__)

#: version of the ``checkpoint["medsynth"]`` layout
CHECKPOINT_FORMAT = 1


def config_hash(config: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the model-defining config (data, model, diffusion, optim)."""
    relevant = {key: config.get(key) for key in ("data", "model", "diffusion", "optim", "seed")}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_representation_name(name: str, shape: tuple[int, int, int], min_side: int) -> str:
    """``auto`` -> wavelet when every side is >= ``min_side`` (``model.auto_wavelet_min_side``), pixel below;
    other names unchanged."""
    return default_representation_name(shape, min_side) if name == "auto" else name


class DiffusionModule(pl.LightningModule):
    """3D diffusion (DDPM family or rectified flow) training on a pixel or wavelet representation with optional conditioning and EMA.

    Args:
        config: the resolved training config as a plain dict (groups ``model``, ``diffusion``,
            ``optim``, ``trainer``, ``seed``); saved as the checkpoint's hyper-parameters.
        geometry: {"shape": [D, H, W], "spacing": [mm x3], "affine": 4x4 list} of the prepared data.
        conditioning: :class:`ConditioningSpec` fields.
        intensity: :class:`IntensityMapping` fields or None.
        covariate_mean, covariate_std: (K,) training-set statistics of the covariates.
    """

    def __init__(
        self,
        config: dict[str, Any],
        geometry: dict[str, Any],
        conditioning: dict[str, Any] | None = None,
        intensity: dict[str, Any] | None = None,
        covariate_mean: list[float] | None = None,
        covariate_std: list[float] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.config = config
        model_cfg, diff_cfg = config["model"], config["diffusion"]
        self.geometry = geometry
        self.image_shape = tuple(int(s) for s in geometry["shape"])
        self.representation_name = resolve_representation_name(
            model_cfg["representation"], self.image_shape, int(model_cfg["auto_wavelet_min_side"])
        )
        self.label_classes = int(geometry.get("label_classes", 0))  # paired image + label model when > 0
        self.wavelet_scaling = str(model_cfg.get("wavelet_scaling", LEGACY_WAVELET_SCALING))
        self.wavelet_detail_gain = float(model_cfg.get("wavelet_detail_gain", LEGACY_DETAIL_GAIN))
        self.representation = build_paired_representation(
            self.representation_name, self.label_classes, self.wavelet_scaling, self.wavelet_detail_gain
        )
        self.label_mode = str(geometry.get("label_mode", "joint"))
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        # mask-conditioned: the label channels are network inputs only (medsynth.models.paired)
        self.mask_conditioned = self.label_classes > 0 and self.label_mode == "condition"
        channels = self.representation.latent_shape(self.image_shape)[0]
        self.network_kwargs = unet_kwargs_from_config(_AttrDict(model_cfg), channels)
        if self.mask_conditioned:
            self.network_kwargs["out_channels"] = channels // (1 + self.label_classes)
        self.conditioning = ConditioningSpec(**(conditioning or {}))
        self.intensity = intensity
        self.network = ConditionedUNet(
            self.network_kwargs,
            num_classes=self.conditioning.num_classes,
            num_covariates=len(self.conditioning.covariate_keys),
            covariate_mean=covariate_mean,
            covariate_std=covariate_std,
        )
        self.ema = build_ema(
            self.network,
            float(model_cfg["ema_decay"]),
            bool(model_cfg.get("ema_warmup", True)),
            int(model_cfg["ema_warmup_steps"]),
        )
        if model_cfg.get("gradient_checkpointing", False):
            self.network.enable_gradient_checkpointing()
        self.diffusion = DiffusionSettings(
            num_train_timesteps=int(diff_cfg["num_train_timesteps"]),
            schedule=str(diff_cfg["schedule"]),
            beta_start=float(diff_cfg["beta_start"]),
            beta_end=float(diff_cfg["beta_end"]),
            prediction_type=str(diff_cfg["prediction_type"]),
            clip_sample=bool(diff_cfg.get("clip_sample", True)),
            process=str(diff_cfg.get("process", "ddpm")),
            time_sampling=str(diff_cfg.get("time_sampling", "uniform")),
            logit_loc=float(diff_cfg.get("logit_loc", 0.0)),
            logit_scale=float(diff_cfg.get("logit_scale", 1.0)),
            lognormal_mean=float(diff_cfg.get("lognormal_mean", DiffusionSettings.lognormal_mean)),
            lognormal_std=float(diff_cfg.get("lognormal_std", DiffusionSettings.lognormal_std)),
            sigma_data=check_sigma_data(diff_cfg.get("sigma_data", DiffusionSettings.sigma_data)),
        )
        self.noise_process = NoiseProcess(self.diffusion)
        self.loss_kind = str(diff_cfg.get("loss", "mse"))
        gamma = diff_cfg.get("min_snr_gamma")
        self.min_snr_gamma = None if gamma is None else float(gamma)
        if self.diffusion.prediction_type == "edm" and not isinstance(self.diffusion.sigma_data, float):
            # a per-channel sigma_data must fit the diffused channels: one line now, not at the first step
            self.noise_process.check_channels(int(self.network_kwargs["out_channels"]))
            if self.min_snr_gamma is not None:
                raise ConfigError("diffusion.min_snr_gamma", "is not supported with a per-channel sigma_data")
        self.cond_drop_prob = (
            float(model_cfg.get("cond_drop_prob", 0.0)) if self.conditioning.conditional else 0.0
        )
        self.seed = int(config.get("seed", 0))
        self.config_hash = config_hash(config)

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        """One process on the CPU: apply ``trainer.num_threads`` (``auto``: cores minus the cores busy now, see
        :mod:`medsynth.models.cpu_threads`). Multi-process runs keep Lightning's per-process split."""
        if self.trainer.strategy.root_device.type == "cpu" and self.trainer.world_size == 1:
            setting = self.config.get("trainer", {}).get("num_threads", "auto")
            log.info("CPU threads: %d (trainer.num_threads=%s)", apply_num_threads(setting, "cpu"), setting)

    def on_train_start(self) -> None:
        """``flops_per_batch`` for Lightning's ``ThroughputMonitor`` (it then logs ``train/device/flops_per_sec``
        and, on GPUs whose peak it knows, ``train/device/mfu``). Counting costs ~0.3 s of CPU once per fit."""
        batch_size = int(self.config.get("data", {}).get("batch_size", 1))
        self.flops_per_batch = self.training_flops(batch_size)

    def training_flops(self, batch_size: int) -> int:
        """FLOPs of one forward + backward of the network on ``batch_size`` volumes (Lightning's
        ``measure_flops``, i.e. ``torch.utils.flop_counter``: convolutions, matmuls, attention), counted on
        a copy on the meta device: no compute, no memory, the live weights untouched."""
        latent = self.representation.latent_shape(self.image_shape)[1:]
        with torch.device("meta"):
            network = build_network(self.network_kwargs, self.conditioning)
            x = torch.empty((batch_size, int(self.network_kwargs["in_channels"]), *latent))
            timesteps = torch.zeros(batch_size, dtype=torch.long)
        return int(measure_flops(network, lambda: network(x, timesteps), lambda y: y.sum()))

    def _generator(self, *key: int) -> torch.Generator:
        """A generator on this module's device seeded by (seed, *key): reproducible across resumes."""
        seed = int(np.random.SeedSequence([self.seed, *key]).generate_state(1, dtype=np.uint64)[0] >> 1)
        return torch.Generator(device=self.device).manual_seed(seed)

    def _conditions(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        labels = batch.get("class_label") if self.conditioning.num_classes > 0 else None
        covariates = batch.get("covariates") if self.conditioning.covariate_keys else None
        return labels, covariates

    def _loss(
        self, network: torch.nn.Module, batch: dict[str, Any], generator: torch.Generator, train: bool
    ) -> torch.Tensor:
        x0 = self.representation.encode(batch["image"].float())
        condition = None
        if self.mask_conditioned:  # (B, c, ...) image to diffuse, (B, c K, ...) label channels as input
            x0, condition = split_condition(x0, self.label_classes)
        batch_size = x0.shape[0]
        noise = torch.randn(x0.shape, generator=generator, device=self.device, dtype=x0.dtype)
        timesteps = self.noise_process.sample_timesteps(batch_size, generator, self.device)
        drop = None
        if train and self.cond_drop_prob > 0:
            drop = torch.rand(batch_size, generator=generator, device=self.device) < self.cond_drop_prob
        noisy = self.noise_process.add_noise(x0, noise, timesteps)
        labels, covariates = self._conditions(batch)
        if condition is not None:
            noisy = torch.cat([noisy, condition], dim=1)
        prediction = network(
            noisy, timesteps, class_labels=labels, covariates=covariates, drop_condition=drop
        )
        target = self.noise_process.target(x0, noise, timesteps)
        weights = None
        if self.min_snr_gamma is not None:
            weights = min_snr_weight(self.noise_process, timesteps, self.min_snr_gamma)
        return diffusion_loss(prediction, target, self.loss_kind, weights)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        generator = self._generator(0, self.global_step, self.global_rank, batch_idx)
        loss = self._loss(self.network, batch, generator, train=True)
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss of the EMA network with noise/timesteps fixed per (rank, batch): comparable across steps."""
        generator = self._generator(1, self.global_rank, batch_idx)
        loss = self._loss(self.ema.module, batch, generator, train=False)
        self.log(
            "val/loss", loss, prog_bar=True, sync_dist=True, on_epoch=True, batch_size=batch["image"].shape[0]
        )
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Log the gradient norm; skip the update when a gradient is inf/NaN (as AMP's GradScaler
        does): the gradients are dropped, so the optimizer leaves every weight as it was and one
        overflow (bf16 at tiny feature maps) cannot turn the weights into NaN."""
        norms = grad_norm(self.network, norm_type=2)
        total = norms.get("grad_2.0_norm_total")
        if total is None:
            return
        finite = torch.isfinite(torch.as_tensor(total)).to(self.device, torch.float32)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)  # all ranks skip together
        self.log("train/skipped_steps", 1.0 - finite, reduce_fx="sum", sync_dist=False)
        self._steps_seen = getattr(self, "_steps_seen", 0) + 1
        if finite.item() < 1.0:
            for parameter in self.network.parameters():
                parameter.grad = None
            self._steps_skipped = getattr(self, "_steps_skipped", 0) + 1
            if self._steps_skipped == 10 and self._steps_skipped * 2 > self._steps_seen:
                from lightning.pytorch.utilities import rank_zero_warn

                rank_zero_warn(
                    f"gradients were inf/NaN in {self._steps_skipped} of the first {self._steps_seen} steps "
                    "(updates skipped): try trainer.precision=32-true, a larger data.shape or fewer UNet levels"
                )
            return
        self.log("train/grad_norm", total, sync_dist=True)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step the optimizer, then the EMA (here, not in ``on_train_batch_end``: checkpoint callbacks run
        before the module's batch-end hook, and a checkpoint must hold the EMA of the step it records)."""
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.network)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config["optim"]
        optimizer = torch.optim.AdamW(
            self.network.parameters(),
            lr=float(optim["lr"]),
            weight_decay=float(optim["weight_decay"]),
            betas=tuple(float(b) for b in optim["betas"]),
        )
        total = (
            int(self.trainer.max_steps)
            if self.trainer.max_steps and self.trainer.max_steps > 0
            else int(self.trainer.estimated_stepping_batches)
        )
        scheduler = warmup_cosine(
            optimizer,
            int(optim["warmup_steps"]),
            total,
            float(optim["min_lr_ratio"]),
            float(optim["warmup_start_factor"]),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ sampling contract
    def sampling_metadata(self) -> dict[str, Any]:
        """The ``checkpoint["medsynth"]`` section: everything sampling needs besides the weights."""
        return {
            "format": CHECKPOINT_FORMAT,
            "representation": self.representation_name,
            "wavelet_scaling": self.wavelet_scaling,  # absent in older checkpoints: LEGACY_WAVELET_SCALING
            "wavelet_detail_gain": self.wavelet_detail_gain,  # absent in older checkpoints: LEGACY_DETAIL_GAIN
            "diffusion": asdict(self.diffusion),
            "conditioning": asdict(self.conditioning),
            "geometry": {
                "shape": [int(s) for s in self.geometry["shape"]],
                "spacing": [float(s) for s in self.geometry["spacing"]],
                "affine": [[float(v) for v in row] for row in self.geometry["affine"]],
                "fingerprint": self.geometry.get("fingerprint"),  # medsynth.io.fingerprint
                "label_classes": self.label_classes,
                "label_mode": self.label_mode,
            },
            "intensity": self.intensity,
            "network": self.network_kwargs,
            "config_hash": self.config_hash,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["medsynth"] = self.sampling_metadata()

    def sampling_bundle(self, use_ema: bool = True) -> SamplingBundle:
        """A :class:`SamplingBundle` over a copy of the live (or EMA) weights, in eval mode on this device."""
        source = self.ema.module if use_ema else self.network
        network = build_network(self.network_kwargs, self.conditioning)
        network.load_state_dict(source.state_dict())
        network.to(self.device).eval().requires_grad_(False)
        return bundle_from_metadata(
            self.sampling_metadata(), network, checkpoint_path="", checkpoint_sha256="", used_ema=use_ema
        )


def build_network(network_kwargs: dict[str, Any], conditioning: ConditioningSpec) -> ConditionedUNet:
    """A fresh :class:`ConditionedUNet` of the given architecture and conditioning (weights random)."""
    return ConditionedUNet(
        network_kwargs,
        num_classes=conditioning.num_classes,
        num_covariates=len(conditioning.covariate_keys),
    )


def bundle_from_metadata(
    meta: dict[str, Any],
    network: torch.nn.Module,
    checkpoint_path: str,
    checkpoint_sha256: str,
    used_ema: bool,
) -> SamplingBundle:
    """Assemble a :class:`SamplingBundle` from a ``checkpoint["medsynth"]`` section and a loaded network."""
    geometry = meta["geometry"]
    intensity = meta.get("intensity")
    return SamplingBundle(
        network=network,
        representation=build_generation_representation(
            meta["representation"],
            int(geometry.get("label_classes", 0)),
            str(geometry.get("label_mode", "joint")),
            str(meta.get("wavelet_scaling", LEGACY_WAVELET_SCALING)),
            float(meta.get("wavelet_detail_gain", LEGACY_DETAIL_GAIN)),
        ),
        diffusion=DiffusionSettings(**meta["diffusion"]),
        conditioning=ConditioningSpec(**meta["conditioning"]),
        geometry=Geometry(
            shape=tuple(int(s) for s in geometry["shape"]),
            spacing=tuple(float(s) for s in geometry["spacing"]),
            affine=np.asarray(geometry["affine"], dtype=np.float64),
            fingerprint=geometry.get("fingerprint"),
            label_classes=int(geometry.get("label_classes", 0)),
            label_mode=str(geometry.get("label_mode", "joint")),
        ),
        intensity=IntensityMapping(**intensity) if intensity else None,
        checkpoint_path=checkpoint_path,
        checkpoint_sha256=checkpoint_sha256,
        config_hash=str(meta.get("config_hash", "")),
        used_ema=used_ema,
    )


class _AttrDict(dict):
    """Attribute access over a plain dict (so config helpers accept OmegaConf nodes and dicts alike)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(key) from err
