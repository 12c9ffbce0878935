"""Learning-rate schedule: linear warm-up then cosine decay, with torch's built-in schedulers."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float, start_factor: float
) -> LRScheduler:
    """LR ramps from ``lr * start_factor`` (``optim.warmup_start_factor``) to lr over ``warmup_steps`` optimizer steps, then follows a cosine to
    ``lr * min_lr_ratio`` at ``total_steps`` (stepped once per optimizer step)."""
    warmup_steps = max(int(warmup_steps), 0)
    decay_steps = max(int(total_steps) - warmup_steps, 1)
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(optimizer, T_max=decay_steps, eta_min=base_lr * float(min_lr_ratio))
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=float(start_factor), end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
