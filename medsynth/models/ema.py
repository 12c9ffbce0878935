"""Exponential moving average of the network weights, with torch's ``AveragedModel``.

The EMA lives inside the LightningModule (attribute ``ema``), so it is saved in every checkpoint
under the ``ema.module.`` prefix, restored on resume and moved across devices with the module.
Its parameters do not require gradients, so DDP ignores them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

#: state-dict prefix of the EMA copy of the network inside DiffusionModule
EMA_PREFIX = "ema.module."
#: state-dict prefix of the live network inside DiffusionModule
NETWORK_PREFIX = "network."


class WarmupEMA:
    """``multi_avg_fn`` for ``AveragedModel``: ema <- d * ema + (1 - d) * w, d = min(decay, (1 + n) / (k + n)).

    ``n`` is the number of updates so far (``AveragedModel.n_averaged``), so early in training the
    average follows the weights closely (the usual EMA warm-up of DDPM/diffusers) and the first
    update copies them. A class rather than a closure so the model stays picklable.
    """

    def __init__(self, decay: float, warmup: bool, warmup_steps: int):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.warmup_steps = int(warmup_steps)

    def current_decay(self, num_averaged: int) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + num_averaged) / (self.warmup_steps + num_averaged))

    @torch.no_grad()
    def __call__(
        self, ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: torch.Tensor
    ) -> None:
        decay = self.current_decay(int(num_averaged))
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def build_ema(network: nn.Module, decay: float, warmup: bool, warmup_steps: int) -> AveragedModel:
    """An EMA copy of ``network`` (parameters and buffers), frozen for autograd; ``warmup_steps`` is k
    of the warm-up (``model.ema_warmup_steps``)."""
    ema = AveragedModel(network, multi_avg_fn=WarmupEMA(decay, warmup, warmup_steps), use_buffers=True)
    ema.requires_grad_(False)
    return ema
