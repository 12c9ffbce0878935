"""The denoising network: MONAI's 3D ``DiffusionModelUNet`` with class-label and covariate conditioning.

``ConditionedUNet(x, timesteps, class_labels=None, covariates=None)`` is the callable of the
:class:`~medsynth.models.bundle.SamplingBundle` contract. Conditions and their null values:

- class label: MONAI's class embedding with one extra row, index ``num_classes``, the learned
  null class. ``class_labels=None`` (or a per-sample drop mask) selects it.
- covariates (B, K) float in manifest units: standardised with the training set's mean/std
  (buffers, saved with the weights), embedded by a small MLP and added to the timestep embedding
  like the class embedding; the null covariate is a learned vector. MONAI's UNet has no hook for
  a continuous embedding, so it is added by a forward hook on ``unet.time_embed`` (one line of
  arithmetic rather than a copy of MONAI's 80-line forward).

Unconditional models ignore both arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn
from torch.utils.checkpoint import checkpoint


class ConditionedUNet(nn.Module):
    """MONAI ``DiffusionModelUNet`` (3D) + optional class / covariate conditioning with null condition.

    Args:
        unet_kwargs: ``DiffusionModelUNet`` arguments without ``num_class_embeds`` (stored in the
            checkpoint as ``medsynth.network``).
        num_classes: number of class labels (0: no class conditioning).
        num_covariates: number of continuous covariates K (0: none).
        covariate_mean, covariate_std: (K,) standardisation of the training covariates.
    """

    def __init__(
        self,
        unet_kwargs: dict[str, Any],
        num_classes: int = 0,
        num_covariates: int = 0,
        covariate_mean: Sequence[float] | None = None,
        covariate_std: Sequence[float] | None = None,
    ):
        super().__init__()
        kwargs = dict(unet_kwargs)
        self.num_classes = int(num_classes)
        self.num_covariates = int(num_covariates)
        if self.num_classes > 0:
            kwargs["num_class_embeds"] = self.num_classes + 1  # last row: the null class
        self.unet = DiffusionModelUNet(**kwargs)
        self._covariate_embedding: torch.Tensor | None = None
        if self.num_covariates > 0:
            embed_dim = int(kwargs["channels"][0]) * 4  # MONAI's time-embedding width
            self.covariate_embed = nn.Sequential(
                nn.Linear(self.num_covariates, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
            )
            self.null_covariate = nn.Parameter(torch.zeros(embed_dim))
            mean = torch.as_tensor(
                covariate_mean if covariate_mean is not None else [0.0] * self.num_covariates
            )
            std = torch.as_tensor(covariate_std if covariate_std is not None else [1.0] * self.num_covariates)
            self.register_buffer("covariate_mean", mean.float().reshape(self.num_covariates))
            self.register_buffer("covariate_std", std.float().clamp_min(1e-6).reshape(self.num_covariates))
            self.unet.time_embed.register_forward_hook(self._add_covariate_embedding)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0 or self.num_covariates > 0

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        covariates: torch.Tensor | None = None,
        drop_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, C, d, h, w), timesteps (B,) long, class_labels (B,) long, covariates (B, K) float,
        drop_condition (B,) bool (True: use the null condition for that sample) -> (B, C_out, d, h, w)."""
        batch = x.shape[0]
        labels = None
        if self.num_classes > 0:
            null = torch.full((batch,), self.num_classes, dtype=torch.long, device=x.device)
            if class_labels is None:
                labels = null
            else:
                labels = class_labels.to(device=x.device, dtype=torch.long).reshape(batch)
                if drop_condition is not None:
                    labels = torch.where(drop_condition.to(x.device), null, labels)
        if self.num_covariates > 0:
            null_emb = self.null_covariate.unsqueeze(0).expand(batch, -1)
            if covariates is None:
                emb = null_emb
            else:
                cov = covariates.to(device=x.device, dtype=self.covariate_mean.dtype).reshape(batch, -1)
                emb = self.covariate_embed((cov - self.covariate_mean) / self.covariate_std)
                if drop_condition is not None:
                    emb = torch.where(drop_condition.to(x.device).reshape(batch, 1), null_emb, emb)
            self._covariate_embedding = emb
        try:
            return self.unet(x, timesteps, class_labels=labels)
        finally:
            self._covariate_embedding = None

    def _add_covariate_embedding(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._covariate_embedding is None:
            return output
        return output + self._covariate_embedding.to(output.dtype)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute block activations in backward (less memory, ~30% slower).

        Wraps each down/mid/up block's forward in ``torch.utils.checkpoint``; state-dict keys are
        unchanged. Call it after copying the network (the EMA copy must not share these wrappers).
        """
        blocks = [*self.unet.down_blocks, self.unet.middle_block, *self.unet.up_blocks]
        for block in blocks:
            original = block.forward

            def checkpointed(*args: Any, _original=original, **kwargs: Any) -> Any:
                if torch.is_grad_enabled():
                    return checkpoint(functools.partial(_original, **kwargs), *args, use_reentrant=False)
                return _original(*args, **kwargs)

            block.forward = checkpointed  # instance attribute: nn.Module.__call__ uses it


def unet_kwargs_from_config(model_cfg: Any, in_channels: int) -> dict[str, Any]:
    """``DiffusionModelUNet`` kwargs from the ``model`` config group (3D, out_channels = in_channels)."""
    channels = [int(c) for c in model_cfg.channels]
    attention = [bool(a) for a in model_cfg.attention_levels]
    res_blocks = model_cfg.num_res_blocks
    res_blocks = [int(r) for r in res_blocks] if isinstance(res_blocks, Sequence) else int(res_blocks)
    return {
        "spatial_dims": 3,
        "in_channels": int(in_channels),
        "out_channels": int(in_channels),
        "channels": channels,
        "attention_levels": attention,
        "num_res_blocks": res_blocks,
        "norm_num_groups": int(model_cfg.norm_num_groups),
        "num_head_channels": int(model_cfg.num_head_channels),
        "resblock_updown": bool(model_cfg.get("resblock_updown", False)),
    }
