"""Where medsynth's training step spends its time: ``torch.profiler`` over one real Lightning step.

The step is the one :func:`medsynth_side.time_training` times (``DiffusionModule`` inside
``Trainer.fit``): ``warmup`` untimed steps, one profiler warm-up step, then one recorded step
(``torch.profiler.schedule``). Ops are ranked by self CPU time (time in the op itself, not in
the ops it calls; an intra-op parallel region counts once, as wall time on the calling thread)
and sorted into kinds of work, so the note can say what holds the step back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from medsynth_side import benchmark_trainer, build_module, random_volumes
from torch.utils.data import DataLoader

from medsynth.models.precision import resolve_precision

#: (kind, substrings of the op name), first match wins; checked on the lower-cased name
OP_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("outside aten ops (Python, Lightning hooks)", ("profilerstep",)),
    ("autograd engine overhead", ("autograd::engine",)),
    ("conv3d", ("convolution", "mkldnn_conv", "conv3d", "conv_depthwise")),
    ("group norm", ("group_norm",)),
    ("attention", ("bmm", "softmax", "scaled_dot_product", "attention")),
    ("matmul / linear", ("addmm", "aten::mm", "linear", "matmul")),
    ("optimizer / EMA / grad norm", ("_foreach", "adam", "lerp", "addcdiv", "addcmul", "clip_grad")),
    (
        "data movement / memory",
        ("copy", "to_copy", "contiguous", "clone", "cat", "empty", "zero_", "fill_", "pad", "stack")
        + ("expand", "permute", "transpose", "upsample", "reshape", "view", "slice", "select"),
    ),
    ("random numbers", ("normal_", "uniform_", "randn", "randint", "random_")),
    ("reduction", ("sum", "mean", "norm", "amax", "max", "isfinite")),
    (
        "elementwise",
        ("add", "mul", "silu", "sigmoid", "sub", "div", "sqrt", "pow", "exp", "neg", "where", "rsub", "mse")
        + ("threshold", "clamp", "sin", "cos", "log"),
    ),
)


def op_kind(name: str) -> str:
    """The kind of work an op name stands for (``OP_KINDS``), ``other`` when none matches."""
    low = name.lower()
    for kind, keys in OP_KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


class _ProfilerStepper(Callback):
    def __init__(self, profiler: torch.profiler.profile) -> None:
        self.profiler = profiler

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.profiler.step()


def profile_training_step(
    config: dict[str, Any], shape: Sequence[int], batch_size: int, device: torch.device, warmup: int = 3, top: int = 15
) -> dict[str, Any]:
    """Profile one medsynth training step; returns {"total_ms", "top": [...], "by_kind": {...}}.

    ``top`` rows: {op, kind, self_ms, share (of the step's total self CPU time), calls}; ``by_kind``:
    the share of each kind of work. The caller sets the thread count.
    """
    module = build_module(config, shape)
    precision = resolve_precision(config["trainer"]["precision"], device.type)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    profiler = torch.profiler.profile(
        activities=activities,
        record_shapes=True,
        schedule=torch.profiler.schedule(skip_first=warmup, wait=0, warmup=1, active=1, repeat=1),
    )
    total_steps = warmup + 2
    data = DataLoader(random_volumes(batch_size * total_steps, shape), batch_size=batch_size, shuffle=False)
    trainer = benchmark_trainer(
        device.type,
        precision,
        total_steps,
        config["trainer"]["gradient_clip_val"],
        callbacks=[_ProfilerStepper(profiler)],
    )
    threads = torch.get_num_threads()
    with profiler:
        trainer.fit(module, train_dataloaders=data)
    torch.set_num_threads(threads)  # DiffusionModule.setup applied trainer.num_threads
    events = profiler.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events) or 1.0
    by_kind: dict[str, float] = {}
    for e in events:
        kind = op_kind(e.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + e.self_cpu_time_total / total_us
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "total_ms": total_us / 1e3,
        "precision": precision,
        "top": [
            {
                "op": e.key,
                "kind": op_kind(e.key),
                "self_ms": round(e.self_cpu_time_total / 1e3, 2),
                "share": round(e.self_cpu_time_total / total_us, 4),
                "calls": int(e.count),
            }
            for e in ranked
        ],
        "by_kind": {k: round(v, 4) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
    }


def profile_markdown(profile: dict[str, Any]) -> str:
    """The profile as two markdown tables: top ops, and shares by kind of work."""
    lines = [
        f"Training step profile: {profile['total_ms']:.0f} ms self CPU time in total ({profile['precision']})",
        "",
        "| op | kind | self ms | share | calls |",
        "|---|---|---:|---:|---:|",
    ]
    for row in profile["top"]:
        lines.append(
            f"| {row['op']} | {row['kind']} | {row['self_ms']:.1f} | {100 * row['share']:.1f}% | {row['calls']} |"
        )
    lines += ["", "| kind of work | share of self CPU time |", "|---|---:|"]
    lines += [f"| {kind} | {100 * share:.1f}% |" for kind, share in profile["by_kind"].items()]
    return "\n".join(lines) + "\n"
