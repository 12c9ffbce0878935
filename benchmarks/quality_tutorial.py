"""The tutorial arm of the quality benchmark: MONAI's 3d_ddpm tutorial configuration under a CPU budget.

The configuration of Project-MONAI/tutorials ``generation/3d_ddpm/3d_ddpm_tutorial.ipynb``:
``DiffusionModelUNet`` channels [256, 256, 512], attention on the last level with one 512-channel
head (``num_head_channels`` [0, 0, 512]), 2 res-blocks, ``DDPMScheduler`` 1000 steps
scaled_linear_beta 0.0005-0.0195, epsilon MSE through ``DiffusionInferer``, Adam 5e-5 at a constant
rate, batch 16, fp32, pixel space; sampling with ``inferer.sample`` (DDPM-1000; the tutorial also
shows DDIM). The network, scheduler and batch are the tutorial's; the data are the benchmark's
prepared training set in medsynth's [-1, 1] (the tutorial scales its BraTS crops to [0, 1]).

Run as its own process so its CPU time is its own::

    python benchmarks/quality_tutorial.py train TRAIN_DIR OUT_DIR --budget-s 3600 --snapshots-s 1200
    python benchmarks/quality_tutorial.py sample OUT_DIR/final.pt SAMPLES_DIR --reference TRAIN_DIR \\
        --n 8 --sampler ddim --steps 250

``train`` writes ``snap_<S>s.pt`` at each snapshot CPU time, ``final.pt`` when the budget is spent and
``cpu_log.csv`` (step, CPU s, wall s, load); ``sample`` writes ``sample_<i>.nii.gz`` plus the training
set's ``preprocessing.json`` (the fingerprint ``medsynth evaluate`` checks) and ``timing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_tutorial import tutorial_scheduler, tutorial_unet  # noqa: E402
from cpu_budget import CpuClock, load_average, process_cpu_seconds  # noqa: E402

#: the tutorial's network (3d_ddpm_tutorial.ipynb)
TUTORIAL_NET = {
    "channels": [256, 256, 512],
    "attention_levels": [False, False, True],
    "num_res_blocks": 2,
    "num_head_channels": [0, 0, 512],
}
TUTORIAL_BATCH = 16
TUTORIAL_LR = 5e-5


def load_prepared(folder: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """The volumes of a ``medsynth data prepare`` folder as (N, 1, X, Y, Z) float32 in [-1, 1], and the
    affine of the first one (the samples are written on it)."""
    import nibabel as nib

    files = sorted(p for p in Path(folder).iterdir() if p.name.endswith((".nii", ".nii.gz")))
    if not files:
        raise SystemExit(f"{folder}: no .nii/.nii.gz volumes")
    images = [nib.load(str(f)) for f in files]
    data = np.stack([np.asarray(img.dataobj, dtype=np.float32) for img in images])
    return torch.from_numpy(data)[:, None], images[0].affine


def build_network(net: dict | None = None, norm_num_groups: int = 32) -> torch.nn.Module:
    net = net or TUTORIAL_NET
    return tutorial_unet(
        1, net["channels"], net["attention_levels"], net["num_res_blocks"], net["num_head_channels"], norm_num_groups
    )


def train(
    train_dir: str,
    out_dir: str,
    budget_s: float,
    snapshots_s: list[float],
    batch_size: int = TUTORIAL_BATCH,
    threads: int = 2,
    seed: int = 0,
    max_steps: int | None = None,
    net: dict | None = None,
) -> dict:
    """The tutorial's training loop until ``budget_s`` CPU seconds of this process (or ``max_steps``)."""
    from monai.inferers import DiffusionInferer

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = CpuClock(budget_s, snapshots_s, out / "cpu_log.csv")
    data, _ = load_prepared(train_dir)
    model = build_network(net, norm_num_groups=32 if net is None else min(32, min(net["channels"])))
    inferer = DiffusionInferer(tutorial_scheduler())
    optimizer = torch.optim.Adam(model.parameters(), lr=TUTORIAL_LR)
    generator = torch.Generator().manual_seed(seed)
    step, losses = 0, []
    model.train()
    done = False

    def stop_now(signum: int, frame: object) -> None:  # SIGTERM/SIGINT: keep what was trained (stopped.pt)
        _save(out / "stopped.pt", model, step, losses, net)
        raise SystemExit(f"stopped by signal {signum} at step {step}; state in {out / 'stopped.pt'}")

    signal.signal(signal.SIGTERM, stop_now)
    while not done:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), batch_size):  # the tutorial's DataLoader: shuffled, last batch kept
            images = data[order[start : start + batch_size]]
            optimizer.zero_grad(set_to_none=True)
            noise = torch.randn_like(images)
            timesteps = torch.randint(0, inferer.scheduler.num_train_timesteps, (images.shape[0],)).long()
            prediction = inferer(inputs=images, diffusion_model=model, noise=noise, timesteps=timesteps)
            loss = torch.nn.functional.mse_loss(prediction.float(), noise.float())
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            due, spent = clock.tick(step)
            for s in due:
                _save(out / f"snap_{int(s)}s.pt", model, step, losses, net)
            if spent or (max_steps is not None and step >= max_steps):
                done = True
                break
    summary = {
        "steps": step,
        "cpu_s": process_cpu_seconds(),
        "wall_s": time.time() - clock.wall_start,
        "load_end": load_average(),
        "batch_size": batch_size,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "last_loss_mean_20": float(np.mean(losses[-20:])) if losses else None,
    }
    _save(out / "final.pt", model, step, losses, net)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _save(path: Path, model: torch.nn.Module, step: int, losses: list[float], net: dict | None) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {"state_dict": model.state_dict(), "step": step, "cpu_s": process_cpu_seconds(), "losses": losses, "net": net},
        tmp,
    )
    tmp.replace(path)


@torch.no_grad()
def sample(
    ckpt: str,
    out_dir: str,
    reference_dir: str,
    n: int,
    sampler: str = "ddpm",
    steps: int = 1000,
    batch_size: int = 8,
    threads: int = 2,
    seed: int = 0,
) -> dict:
    """``n`` volumes with the tutorial's sampler (``inferer.sample``: DDPM over all 1000 steps, or DDIM
    over ``steps``), written as NIfTI in [-1, 1] beside the reference set's ``preprocessing.json``."""
    import nibabel as nib
    from monai.inferers import DiffusionInferer
    from monai.networks.schedulers import DDIMScheduler

    torch.set_num_threads(threads)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    net = state.get("net")
    model = build_network(net, norm_num_groups=32 if net is None else min(32, min(net["channels"])))
    model.load_state_dict(state["state_dict"])
    model.eval()
    if sampler == "ddpm":
        scheduler = tutorial_scheduler()
        scheduler.set_timesteps(num_inference_steps=1000)
        steps = 1000
    elif sampler == "ddim":
        scheduler = DDIMScheduler(
            num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195
        )
        scheduler.set_timesteps(num_inference_steps=steps)
    else:
        raise SystemExit(f"--sampler: {sampler!r} is not ddpm or ddim")
    inferer = DiffusionInferer(scheduler)
    data, affine = load_prepared(reference_dir)
    shape = tuple(data.shape[1:])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(reference_dir) / "preprocessing.json", out / "preprocessing.json")
    generator = torch.Generator().manual_seed(seed)
    start_cpu, start_wall = process_cpu_seconds(), time.time()
    for first in range(0, n, batch_size):
        count = min(batch_size, n - first)
        noise = torch.randn((count, *shape), generator=generator)
        images = inferer.sample(input_noise=noise, diffusion_model=model, scheduler=scheduler, verbose=False)
        for i in range(count):
            array = images[i, 0].clamp(-1, 1).numpy().astype(np.float32)
            nib.save(nib.Nifti1Image(array, affine), str(out / f"sample_{first + i:05d}.nii.gz"))
    timing = {
        "n": n,
        "sampler": sampler,
        "steps": steps,
        "batch_size": batch_size,
        "threads": threads,
        "train_step": state.get("step"),
        "cpu_s": process_cpu_seconds() - start_cpu,
        "wall_s": time.time() - start_wall,
        "load": load_average(),
    }
    timing["cpu_s_per_volume"] = timing["cpu_s"] / max(n, 1)
    (out / "timing.json").write_text(json.dumps(timing, indent=2))
    return timing


@torch.no_grad()
def time_sampling_step(batch_size: int, threads: int = 2, repeats: int = 3, net: dict | None = None) -> float:
    """CPU seconds of one network call of the tutorial UNet on a (batch, 1, 32, 32, 32) input (median)."""
    torch.set_num_threads(threads)
    model = build_network(net).eval()
    x = torch.randn(batch_size, 1, 32, 32, 32)
    t = torch.full((batch_size,), 500, dtype=torch.long)
    model(x, timesteps=t)
    times = []
    for _ in range(repeats):
        start = process_cpu_seconds()
        model(x, timesteps=t)
        times.append(process_cpu_seconds() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train under a CPU budget")
    p.add_argument("train_dir")
    p.add_argument("out_dir")
    p.add_argument("--budget-s", type=float, required=True, help="CPU seconds of this process (2 x 60 x minutes)")
    p.add_argument("--snapshots-s", type=float, nargs="*", default=[], help="CPU seconds at which to save snap_<S>s.pt")
    p.add_argument("--batch-size", type=int, default=TUTORIAL_BATCH)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--tiny", action="store_true", help="a [8, 8, 16] network (smoke tests only)")
    s = sub.add_parser("sample", help="sample a checkpoint written by train")
    s.add_argument("ckpt")
    s.add_argument("out_dir")
    s.add_argument("--reference", required=True, help="the prepared training folder (affine, preprocessing.json)")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("time", help="CPU seconds of one network call (sampling) at a batch size")
    t.add_argument("--batch-size", type=int, default=1)
    t.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "train":
        net = TINY_NET if args.tiny else None
        summary = train(
            args.train_dir, args.out_dir, args.budget_s, args.snapshots_s, args.batch_size, args.threads,
            max_steps=args.max_steps, net=net,
        )
        print(json.dumps(summary))
    elif args.command == "sample":
        timing = sample(
            args.ckpt, args.out_dir, args.reference, args.n, args.sampler, args.steps, args.batch_size,
            args.threads, args.seed,
        )
        print(json.dumps(timing))
    else:
        seconds = time_sampling_step(args.batch_size, args.threads)
        print(json.dumps({"batch_size": args.batch_size, "cpu_s_per_call": seconds, "load": load_average()}))
    return 0


#: a tiny network of the same layout, for smoke tests only
TINY_NET = {"channels": [8, 8, 16], "attention_levels": [False, False, True], "num_res_blocks": 1, "num_head_channels": [0, 0, 16]}

if __name__ == "__main__":
    raise SystemExit(main())
