"""medsynth speed benchmark: medsynth's default training step and fast sampler against a MONAI-tutorial baseline.

    python benchmarks/run.py --quick --out b.json      # 64^3 speedups, <= 5 min on 2 CPU cores
    python benchmarks/run.py --out full.json           # + 32^3/128^3, ablation, memory, GFLOP/s, data wait, FRD
    python benchmarks/run.py --smoke --out s.json      # seconds: tiny shapes, every code path (the test suite)

Writes ``--out`` (a JSON list of {name, value, unit, detail}) and the same records as a markdown
table beside it (``.md``), and prints the table. Both sides are measured back to back in one
process; medsynth is timed before and after the baseline and the mean is used, so a change of
machine load during the run hits both sides. On CUDA (``--device auto`` picks it) the same code
runs with cudnn.benchmark, CUDA synchronisation around every timer and ``torch.cuda`` peak memory;
``--compile`` wraps medsynth's network in ``torch.compile``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ablation import Variant, time_denoise_variant, time_train_variant  # noqa: E402
from baseline_tutorial import time_denoising_steps, time_training_steps, tutorial_unet_from_config  # noqa: E402
from machine import (  # noqa: E402
    available_memory_gb,
    count_flops,
    load_average,
    machine_info,
    peak_gflops,
    pick_device,
    torch_threads,
)
from medsynth_side import (  # noqa: E402
    default_thread_settings,
    resolve_threads_once,
    sampler_settings,
    time_sampling,
    time_training,
    training_config,
)
from records import RecordBook  # noqa: E402

#: 1000 DDPM steps: the tutorial's sampler
BASELINE_SAMPLING_STEPS = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="64^3 speedups only (<= 5 min on 2 CPU cores)")
    mode.add_argument(
        "--smoke", action="store_true", help="tiny shapes and step counts: checks every code path"
    )
    parser.add_argument("--out", default="benchmark.json", help="JSON records (the .md table goes beside it)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda | cuda:N")
    parser.add_argument("--model", default=None, help="model config group (default: conf/config.yaml's)")
    parser.add_argument(
        "--sampler", default="dpmpp", help="medsynth's fast sampler (conf/sampler/<name>.yaml)"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=None, help="cube sides (default 64; full: 32 64 128)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile medsynth's network (GPU; slow to compile)"
    )
    parser.add_argument("--no-quality", action="store_true", help="full mode: skip the FRD quality check")
    parser.add_argument("--quality-only", action="store_true", help="run only the FRD quality check")
    parser.add_argument(
        "--quality-steps",
        type=int,
        default=None,
        help="training steps of the quality check (default: experiment=demo's)",
    )
    parser.add_argument(
        "--quality-samples", type=int, default=16, help="volumes per sampler in the quality check"
    )
    parser.add_argument(
        "--workdir", default=None, help="data/checkpoints for data-wait and quality (default: temp)"
    )
    return parser.parse_args(argv)


class Plan:
    """Step counts per mode (warm-up steps are never timed)."""

    def __init__(self, args: argparse.Namespace):
        self.smoke, self.quick = args.smoke, args.quick
        self.full = not (args.smoke or args.quick)
        self.sizes = args.sizes or ([16] if args.smoke else [64] if args.quick else [32, 64, 128])
        self.model_overrides = (
            [f"model={args.model}"] if args.model else (["model=unet_tiny"] if args.smoke else [])
        )
        self.train_steps = 1 if args.smoke else 3  # medsynth, timed, per pass (two passes)
        self.baseline_train_steps = 1 if not self.full else 2
        self.denoise_steps = 1 if args.smoke else 2 if args.quick else 3
        self.sample_repeats = 1
        self.sampler_steps = 2 if args.smoke else None  # None: conf/sampler/<name>.yaml's steps
        # medsynth's thread policy (trainer.num_threads / sample num_threads, default auto), resolved
        # once now; the baseline keeps torch's default thread count, as a tutorial user's script would
        train_setting, sample_setting = default_thread_settings()
        self.train_threads = args.threads or resolve_threads_once(train_setting)
        self.sample_threads = args.threads or resolve_threads_once(sample_setting)
        self.thread_settings = {"train": train_setting, "sample": sample_setting}


def baseline_feasible(model_cfg: dict, shape: list[int], batch_size: int) -> tuple[bool, str]:
    """Whether MONAI's full (non-flash) attention of the baseline fits in memory: at 128^3 pixel space the
    deepest attention level has 32^3 tokens, a (32768 x 32768) float32 matrix per head and sample."""
    levels = len(model_cfg["channels"])
    tokens = 1
    for s in shape:
        tokens *= s // 2 ** (levels - 1)
    heads = max(int(model_cfg["channels"][-1]) // int(model_cfg["num_head_channels"]), 1)
    attention = any(model_cfg["attention_levels"])
    need_gb = (tokens**2 * heads * batch_size * 4 * 3) / 1e9 if attention else 0.0  # scores, softmax, grad
    avail_gb = available_memory_gb()
    if need_gb > 0.5 * avail_gb:
        return (
            False,
            f"baseline attention needs ~{need_gb:.0f} GB ({tokens} tokens), {avail_gb:.0f} GB available",
        )
    return True, ""


def measure_size(book: RecordBook, args, plan: Plan, device: torch.device, side: int) -> dict[str, Any]:
    """train_speedup_<side> and sample_speedup_<side>: medsynth, baseline, medsynth, back to back."""
    shape = [side] * 3
    config = training_config(shape, [*plan.model_overrides, f"trainer.num_threads={plan.train_threads}"])
    model_cfg, batch = config["model"], int(config["data"]["batch_size"])
    model_name = args.model or ("unet_tiny" if args.smoke else "conf/config.yaml default (unet_small)")
    sampler = sampler_settings(args.sampler)
    if plan.sampler_steps:
        sampler["steps"] = plan.sampler_steps
    unet = {
        k: model_cfg[k]
        for k in ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups")
    }
    print(f"== {side}^3: model {model_name} {unet}, batch {batch}, load {load_average()}", flush=True)

    def medsynth_train(warmup: int) -> dict[str, Any]:
        return time_training(
            config, shape, batch, plan.train_steps, warmup, device, compile_network=args.compile
        )

    # the first pass warms up longer: bf16 oneDNN kernels are still being created in steps 2-4
    ms_a = medsynth_train(1 if plan.smoke else 4)
    feasible, reason = baseline_feasible(model_cfg, shape, batch)
    base_train: list[float] = []
    if feasible:
        torch.manual_seed(0)
        net = tutorial_unet_from_config(model_cfg).to(device)
        volume = torch.rand((batch, 1, *shape), device=device) * 2 - 1
        base_train = time_training_steps(net, volume, plan.baseline_train_steps, warmup=1)
    ms_b = medsynth_train(1)
    ms_seconds = ms_a["seconds"] + ms_b["seconds"]
    ms_step = float(np.mean(ms_seconds))
    common = {"shape": shape, "batch": batch, "model": model_name, **unet}
    book.add(
        f"medsynth_train_step_{side}",
        ms_step,
        "s/step",
        precision=ms_a["precision"],
        representation=ms_a["representation"],
        runs=len(ms_seconds),
        seconds=[round(s, 3) for s in ms_seconds],
        compiled=args.compile,
        threads=ms_a["threads"],
        **common,
    )
    book.add(f"medsynth_train_throughput_{side}", batch / ms_step, "volumes/s")
    if base_train:
        base_step = float(np.mean(base_train))
        book.add(
            f"baseline_train_step_{side}",
            base_step,
            "s/step",
            precision="32-true",
            representation="pixel",
            runs=len(base_train),
            threads=torch.get_num_threads(),
            seconds=[round(s, 3) for s in base_train],
            **common,
        )
        book.add(f"baseline_train_throughput_{side}", batch / base_step, "volumes/s")
        book.add(
            f"train_speedup_{side}",
            base_step / ms_step,
            "x",
            how="medsynth volumes/s / baseline volumes/s, same UNet and batch; medsynth timed before and after",
        )
    else:
        book.add(f"train_speedup_{side}", None, "x", skipped=reason)

    module = ms_b["module"]
    samp_a = time_sampling(module, sampler, device, plan.sample_repeats, threads=plan.sample_threads)
    base_denoise: list[float] = []
    if feasible:
        net = tutorial_unet_from_config(model_cfg).to(device)
        base_denoise = time_denoising_steps(net, (1, *shape), plan.denoise_steps, warmup=1)
    samp_b = time_sampling(module, sampler, device, plan.sample_repeats, threads=plan.sample_threads)
    samp_seconds = samp_a["seconds"] + samp_b["seconds"]
    ms_volume = float(np.mean(samp_seconds))
    book.add(
        f"medsynth_sample_volume_{side}",
        ms_volume,
        "s/volume",
        sampler=f"{samp_a['sampler']}-{samp_a['steps']}",
        precision=samp_a["precision"],
        representation=module.representation_name,
        runs=len(samp_seconds),
        threads=samp_a["threads"],
        seconds=[round(s, 3) for s in samp_seconds],
        how="generate_volumes end to end, batch 1",
    )
    if base_denoise:
        per_step = float(np.mean(base_denoise))
        base_volume = per_step * BASELINE_SAMPLING_STEPS
        book.add(
            f"baseline_sample_volume_{side}",
            base_volume,
            "s/volume",
            sampler="ddpm-1000",
            precision="32-true",
            representation="pixel",
            step_s=per_step,
            timed_steps=len(base_denoise),
            threads=torch.get_num_threads(),
            how=f"mean of {len(base_denoise)} timed DDPM steps (after 1 warm-up) x {BASELINE_SAMPLING_STEPS}",
        )
        book.add(
            f"sample_speedup_{side}",
            base_volume / ms_volume,
            "x",
            how="baseline DDPM-1000 fp32 pixel s/volume / medsynth fast-sampler s/volume",
        )
    else:
        book.add(f"sample_speedup_{side}", None, "x", skipped=reason)
    return {
        "config": config,
        "module": module,
        "shape": shape,
        "batch": batch,
        "ms_step": ms_step,
        "base_step": float(np.mean(base_train)) if base_train else None,
        "ms_volume": ms_volume,
        "sampler": sampler,
    }


def measure_flops(book: RecordBook, device: torch.device, size: dict[str, Any]) -> None:
    """Achieved GFLOP/s of each side's training step (FlopCounterMode FLOPs / measured seconds) vs the peak."""
    model_cfg, shape, batch = size["config"]["model"], size["shape"], size["batch"]
    side = shape[0]
    peak16, how16 = peak_gflops(device, torch.bfloat16)
    peak32, how32 = peak_gflops(device, torch.float32)
    book.add("peak_gflops_bf16", peak16, "GFLOP/s", how=how16)
    book.add("peak_gflops_fp32", peak32, "GFLOP/s", how=how32)
    module = size["module"]
    latent = module.representation.latent_shape(tuple(shape))

    def ms_step() -> None:
        x = torch.randn((batch, *latent), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = module.network.to(device)(x, torch.zeros(batch, dtype=torch.long, device=device))
        out.float().pow(2).mean().backward()

    ms_flops = count_flops(ms_step)
    book.add(
        f"medsynth_train_gflops_{side}",
        ms_flops / size["ms_step"] / 1e9,
        "GFLOP/s",
        flops_per_step=ms_flops,
        share_of_bf16_peak=ms_flops / size["ms_step"] / 1e9 / peak16,
    )
    if size["base_step"]:
        net = tutorial_unet_from_config(model_cfg).to(device)

        def base_step() -> None:
            x = torch.randn((batch, 1, *shape), device=device)
            net(x, timesteps=torch.zeros(batch, dtype=torch.long, device=device)).pow(2).mean().backward()

        base_flops = count_flops(base_step)
        book.add(
            f"baseline_train_gflops_{side}",
            base_flops / size["base_step"] / 1e9,
            "GFLOP/s",
            flops_per_step=base_flops,
            share_of_fp32_peak=base_flops / size["base_step"] / 1e9 / peak32,
        )


def measure_memory(book: RecordBook, device: torch.device, size: dict[str, Any]) -> None:
    from memory_probe import probe

    side = size["shape"][0]
    for kind in ("medsynth", "baseline"):
        result = probe(
            kind, size["config"]["model"], size["shape"], size["batch"], str(device), torch.get_num_threads()
        )
        key = "cuda_max_allocated_mb" if "cuda_max_allocated_mb" in result else "max_rss_mb"
        book.add(
            f"{kind}_train_peak_memory_{side}",
            result[key],
            "MiB",
            measure=key,
            how="2 training steps in a fresh process"
            + (" (bf16 + wavelet loop)" if kind == "medsynth" else ""),
            **{k: round(v, 1) for k, v in result.items()},
        )


def measure_ablation(book: RecordBook, device: torch.device, size: dict[str, Any], plan: Plan) -> None:
    """One feature at a time on the tutorial loop, then the Lightning default (already timed)."""
    model_cfg, shape, batch = size["config"]["model"], size["shape"], size["batch"]
    side = shape[0]
    threads = torch.get_num_threads()
    variants = [
        Variant("baseline (fp32, pixel)"),
        Variant("+bf16", bf16=True),
        Variant("+wavelet (fp32)", wavelet=True),
        Variant("+bf16 +wavelet", bf16=True, wavelet=True),
        Variant("+bf16 +wavelet +channels_last_3d", bf16=True, wavelet=True, channels_last=True),
    ]
    policy = plan.train_threads if plan.train_threads != threads else max(threads - 1, 1)
    if policy != threads:
        variants += [
            Variant(f"+bf16 +wavelet, {policy} thread(s)", bf16=True, wavelet=True, threads=policy),
            Variant(f"baseline (fp32, pixel), {policy} thread(s)", threads=policy),
        ]
    if plan.smoke:  # the code path, not the table: two variants
        variants = [variants[0], variants[3]]
    expensive = not plan.smoke
    for v in variants:
        pixel = not v.wavelet
        n_train = 1 if (pixel and expensive) else (1 if plan.smoke else 3)
        n_denoise = 2 if (pixel and expensive) else (1 if plan.smoke else 4)
        train = time_train_variant(v, model_cfg, shape, batch, n_train, 1, device)
        denoise = time_denoise_variant(v, model_cfg, shape, n_denoise, 1, device)
        book.add(
            f"ablation_train_{side}[{v.name}]",
            float(np.mean(train)),
            "s/step",
            seconds=[round(s, 3) for s in train],
            load=load_average(),
        )
        book.add(
            f"ablation_denoise_{side}[{v.name}]",
            float(np.mean(denoise)),
            "s/step",
            seconds=[round(s, 3) for s in denoise],
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = Plan(args)
    device = pick_device(args.device)
    book = RecordBook(args.out)
    started = time.perf_counter()
    mode = "smoke" if plan.smoke else "quick" if plan.quick else "full"
    book.add(
        "machine",
        None,
        "",
        mode=mode,
        **machine_info(device),
        medsynth_threads_train=plan.train_threads,
        medsynth_threads_sample=plan.sample_threads,
        thread_settings=plan.thread_settings,
    )
    if args.quality_only:
        run_quality(book, args)
        return finish(book, args, started)
    sizes = {}
    for side in plan.sizes:
        sizes[side] = measure_size(book, args, plan, device, side)
    main_size = sizes.get(64) or next(iter(sizes.values()))
    if not plan.quick:
        measure_flops(book, device, main_size)
        measure_memory(book, device, main_size)
        measure_ablation(book, device, main_size, plan)
        from pipeline import brain_dataset, data_wait_share

        work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
        side = main_size["shape"][0]
        root = brain_dataset(work, 6 if plan.smoke else 12, [side] * 3)
        for cache in ("memory",) if plan.smoke else ("memory", "none"):
            overrides = [
                *plan.model_overrides,
                f"data.cache={cache}",
                f"trainer.num_threads={plan.train_threads}",
            ]
            with torch_threads(None):
                wait = data_wait_share(root, 3 if plan.smoke else 8, overrides, device.type)
            book.add(f"data_wait_share_{side}[cache={cache}]", wait.pop("share"), "fraction", **wait)
        if plan.full and not args.no_quality:
            run_quality(book, args)
    return finish(book, args, started)


def run_quality(book: RecordBook, args: argparse.Namespace) -> None:
    """FRD of the fast sampler vs DDPM-1000 from one brain-demo checkpoint trained for --quality-steps."""
    from pipeline import quality_check

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
    quality = quality_check(work, args.quality_steps, args.quality_samples, args.sampler)
    book.add("frd_d2_fast", quality.pop("frd_d2_fast"), "d^2", sampler=quality["fast_sampler"])
    book.add("frd_d2_ddpm1000", quality.pop("frd_d2_ddpm1000"), "d^2", sampler="ddpm-1000")
    book.add("frd_d2_real_halves", quality.pop("frd_d2_real_halves"), "d^2", what="two halves of the training set")
    book.add(
        "frd_relative_gap_d2",
        quality.pop("relative_gap_d2"),
        "fraction",
        target="<= 0.10 on d^2 (fast vs DDPM-1000, same checkpoint)",
        **quality,
    )


def finish(book: RecordBook, args: argparse.Namespace, started: float) -> int:
    book.add("benchmark_wall_time", time.perf_counter() - started, "s", load_average_end=load_average())
    json_path, md_path = book.write(args.out)
    print()
    print(book.markdown())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
