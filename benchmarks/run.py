"""medsynth speed benchmark: medsynth's default training step and fast sampler against a MONAI-tutorial baseline.

    python benchmarks/run.py --quick --out b.json      # 64^3 speedups at 1 and 2 threads, 10 min on 2 idle cores (37 under load)
    python benchmarks/run.py --out full.json           # + 32^3 (DDPM-1000 end to end)/128^3, ablation, memory, data wait, FRD
    python benchmarks/run.py --smoke --out s.json      # seconds: tiny shapes, every code path (the test suite)

medsynth's volume is timed with the default sampler and with ``--few-step`` (dpmpp, 7 steps, eta 1: the fewest
evaluations the quality benchmark measured within 10% of DDPM-1000's d^2), each against DDPM-1000 and DDIM-250.

Writes ``--out`` (a JSON list of {name, value, unit, detail}) and the same records as a markdown
table beside it (``.md``), and prints the table.

Fairness: both sides run in this one process (same environment, same ``OMP_*`` settings) at every
thread count of ``--thread-counts`` (default 1 and all cores), set with ``torch.set_num_threads``,
in interleaved rounds (medsynth, baseline at 1 thread, then at 2, then the next round: a change of
machine load hits both sides). Each figure is the median of >= 5 timed repetitions (``--rounds``)
with min and max; warm-up steps come first and are never timed. Speedups are given at each
thread count and as the ratio of each side's best. On CUDA (``--device auto`` picks it) the same
code runs with cudnn.benchmark, CUDA synchronisation around every timer and ``torch.cuda`` peak
memory; ``--compile`` wraps medsynth's network in ``torch.compile``.
"""

from __future__ import annotations

import argparse
import os
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
from baseline_tutorial import (  # noqa: E402
    TUTORIAL_DDIM_STEPS,
    TutorialSampler,
    timed,
    tutorial_ddim_scheduler,
    tutorial_scheduler,
    tutorial_training_step,
    tutorial_unet_from_config,
)
from fair import Task, best_threads, interleave, speedup  # noqa: E402
from machine import (  # noqa: E402
    available_memory_gb,
    count_flops,
    load_average,
    machine_info,
    matmul_seconds,
    peak_gflops,
    pick_device,
    torch_threads,
)
from medsynth_side import (  # noqa: E402
    build_module,
    default_thread_settings,
    sampler_settings,
    time_sampling,
    time_training,
    training_config,
)
from records import RecordBook  # noqa: E402

#: 1000 DDPM steps: the tutorial's sampler
BASELINE_SAMPLING_STEPS = 1000
#: the few-step sampler timed beside the default: DPM-Solver++(2M) SDE at 7 network evaluations, the fewest measured
#: within 10% of DDPM-1000's d^2 on both 32^3 models of the quality benchmark, two sample seeds each (7: 3.4-5.6%
#: above; 8: 0.7-4.5%; 6: 11-16%; docs/sampling.md)
FEW_STEP = "dpmpp:7:1.0"
FEW_STEP_QUALITY = (
    "d^2 within 10% of DDPM-1000 from the same checkpoint on the 32^3 brain models of the quality benchmark "
    "(benchmarks/README.md, docs/sampling.md); timing only here (untrained weights)"
)


#: medsynth's volume tasks and the suffix of their records (``medsynth_sample_volume<suffix>_<side>``, ...)
VOLUME_TASKS = {"medsynth_volume": "", "medsynth_volume_fewstep": "_fewstep"}


def few_step_spec(spec: str) -> tuple[str, int, float] | None:
    """``--few-step``: ``NAME:STEPS:ETA`` -> (name, steps, eta), with NAME in conf/sampler/; ``none`` -> None."""
    if spec.lower() == "none":
        return None
    parts = spec.split(":")
    try:
        name, steps, eta = parts[0], int(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        name = ""
    if len(parts) != 3 or not (Path(__file__).resolve().parents[1] / "conf" / "sampler" / f"{name}.yaml").is_file():
        raise argparse.ArgumentTypeError(
            f"{spec!r}: expected NAME:STEPS:ETA with NAME in conf/sampler/ (e.g. {FEW_STEP}) or none"
        )
    return name, steps, eta


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="64^3 speedups, FLOP/s and the step profile only")
    mode.add_argument(
        "--smoke", action="store_true", help="tiny shapes and step counts: checks every code path"
    )
    parser.add_argument("--out", default="benchmark.json", help="JSON records (the .md table goes beside it)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda | cuda:N")
    parser.add_argument("--model", default=None, help="model config group (default: conf/config.yaml's)")
    parser.add_argument(
        "--sampler", default=None, help="medsynth's sampler (conf/sampler/<name>.yaml; default: conf/sample.yaml's)"
    )
    parser.add_argument(
        "--few-step",
        type=few_step_spec,
        default=FEW_STEP,
        help="a second medsynth sampler timed beside the default, NAME:STEPS:ETA (default %(default)s: measured "
        "within 10%% of DDPM-1000's d^2, docs/sampling.md); 'none': skip",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=None, help="cube sides (default 64; full: 32 64 128)"
    )
    parser.add_argument(
        "--thread-counts",
        type=int,
        nargs="+",
        default=None,
        help="torch.set_num_threads for both sides, each timed (default: 1 and all cores)",
    )
    parser.add_argument("--threads", type=int, default=None, help="one thread count for both sides (= --thread-counts N)")
    parser.add_argument("--rounds", type=int, default=None, help="timed interleaved rounds (default 5; smoke 2)")
    parser.add_argument(
        "--ddpm-end-to-end",
        action="store_true",
        help="also time one whole DDPM-1000 volume of the baseline at the smallest size (full mode: always)",
    )
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
    """Repetition counts per mode (warm-up steps are never timed)."""

    def __init__(self, args: argparse.Namespace):
        self.smoke, self.quick = args.smoke, args.quick
        self.full = not (args.smoke or args.quick)
        self.sizes = args.sizes or ([16] if args.smoke else [64] if args.quick else [32, 64, 128])
        self.model_overrides = (
            [f"model={args.model}"] if args.model else (["model=unet_tiny"] if args.smoke else [])
        )
        cores = os.cpu_count() or 1
        counts = args.thread_counts or ([args.threads] if args.threads else sorted({1, cores}))
        self.thread_counts = [int(n) for n in dict.fromkeys(counts)]
        self.rounds = args.rounds or (2 if args.smoke else 5)
        self.medsynth_warmup = 1 if args.smoke else 4  # first fit: bf16 oneDNN kernels are built in steps 2-4
        self.train_steps = 1 if args.smoke else 2  # medsynth, timed per round (after 1 untimed step per fit)
        self.ddpm_steps = 2 if args.smoke else 4  # baseline DDPM steps per round: >= 20 over 5 rounds
        self.ddim_steps = 1  # baseline DDIM steps per round
        self.sampler_steps = 2 if args.smoke else None  # None: conf/sampler/<name>.yaml's steps
        self.ddpm_end_to_end = self.full or args.ddpm_end_to_end
        # medsynth's own thread policy (trainer.num_threads / sample num_threads, default auto) is what
        # a user gets; here it is replaced by the benchmark's thread counts, the same for both sides
        self.thread_settings = dict(zip(("train", "sample"), default_thread_settings(), strict=True))


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


#: peak matmul size per device type (2 n^3 FLOPs)
PEAK_N = {"cuda": 4096, "cpu": 2048}


def measure_size(book: RecordBook, args, plan: Plan, device: torch.device, side: int) -> dict[str, Any]:
    """Interleaved rounds at every thread count: medsynth's training step and volume, the baseline's
    training step, DDPM and DDIM steps, and the bf16 matmul peak; then the records."""
    shape = [side] * 3
    # trainer.num_threads=null: the benchmark sets the thread count (torch.set_num_threads) for both sides
    config = training_config(shape, [*plan.model_overrides, "trainer.num_threads=null"])
    model_cfg, batch = config["model"], int(config["data"]["batch_size"])
    model_name = args.model or ("unet_tiny" if args.smoke else "conf/config.yaml default (unet_small)")
    sampler = sampler_settings(args.sampler)
    if plan.sampler_steps:
        sampler["steps"] = plan.sampler_steps
    volumes = {"medsynth_volume": sampler}
    if args.few_step:
        name, steps, eta = args.few_step
        volumes["medsynth_volume_fewstep"] = sampler_settings(name) | {"steps": steps, "eta": eta}
    unet = {
        k: model_cfg[k]
        for k in ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups")
    }
    print(f"== {side}^3: model {model_name} {unet}, batch {batch}, load {load_average()}", flush=True)
    feasible, reason = baseline_feasible(model_cfg, shape, batch)

    module = build_module(config, shape)
    if args.compile:
        module.network = torch.compile(module.network)
    info: dict[str, Any] = {}

    def ms_train(warmup: int) -> list[float]:
        result = time_training(config, shape, batch, plan.train_steps, warmup, device, module=module)
        info.update(precision=result["precision"], representation=result["representation"])
        return result["seconds"]

    def ms_volume(warm: bool, task: str) -> list[float]:
        settings = volumes[task]
        result = time_sampling(module, settings, device, 1, threads=torch.get_num_threads(), warmup=warm)
        eta = f"-eta{settings['eta']:g}" if settings.get("eta") else ""
        info.update({"sample_precision": result["precision"], task: f"{result['sampler']}-{result['steps']}{eta}"})
        return result["seconds"]

    n = PEAK_N.get(device.type, 2048)
    tasks = [
        Task("medsynth_train", lambda _: ms_train(1), lambda _: ms_train(plan.medsynth_warmup)),
        *(
            Task(task, lambda _, task=task: ms_volume(False, task), lambda _, task=task: ms_volume(True, task))
            for task in volumes
        ),
        Task("peak_bf16_matmul", lambda _: [matmul_seconds(device, torch.bfloat16, n)]),
    ]
    if feasible:
        torch.manual_seed(0)
        train_net = tutorial_unet_from_config(model_cfg).to(device)
        volume = torch.rand((batch, 1, *shape), device=device) * 2 - 1
        base_step = tutorial_training_step(train_net, volume)
        sample_net = tutorial_unet_from_config(model_cfg).to(device)
        ddpm = tutorial_scheduler()
        ddpm.set_timesteps(num_inference_steps=BASELINE_SAMPLING_STEPS)
        ddpm_walk = TutorialSampler(sample_net, (1, *shape), ddpm)
        ddim_walk = TutorialSampler(sample_net, (1, *shape), tutorial_ddim_scheduler())
        first = plan.thread_counts[0]

        def once(fn):  # one untimed warm-up call, at the first thread count only (the same weights after)
            return lambda threads: fn() if threads == first else None

        tasks += [
            Task("baseline_train", lambda _: timed(base_step, 1, device), once(base_step)),
            Task("baseline_ddpm_step", lambda _: ddpm_walk.time_steps(plan.ddpm_steps), once(ddpm_walk.step)),
            Task("baseline_ddim_step", lambda _: ddim_walk.time_steps(plan.ddim_steps)),
        ]
    started = time.perf_counter()
    def save_progress(done: dict) -> None:  # an interrupted run keeps its complete rounds
        book.replace(
            f"rounds_done_{side}",
            len(next(iter(done.values())).rounds),
            "rounds",
            series={f"{task}[threads={n}]": entry.summary() for (task, n), entry in done.items()},
        )

    series = interleave(tasks, plan.thread_counts, plan.rounds, on_round=save_progress)
    common = {"shape": shape, "batch": batch, "model": model_name, **unet}
    fairness = {
        "thread_counts": plan.thread_counts,
        "rounds": plan.rounds,
        "order": "interleaved: per round, per thread count: " + ", ".join(t.name for t in tasks),
        "phase_wall_s": round(time.perf_counter() - started, 1),
    }
    record_size(book, plan, series, side, common, fairness, info, feasible, reason)
    flops = module.training_flops(batch)  # forward + backward, FlopCounterMode on the meta device
    record_efficiency(book, plan, series, side, flops, n)
    end_to_end = None
    if feasible and plan.ddpm_end_to_end and side == min(plan.sizes):
        threads = best_threads(series, "baseline_ddpm_step", plan.thread_counts)
        with torch_threads(threads):
            load_start = load_average()
            end_to_end = ddpm_walk.time_volume()
        extrapolated = float(np.median(series[("baseline_ddpm_step", threads)].values)) * BASELINE_SAMPLING_STEPS
        book.add(
            f"baseline_ddpm1000_end_to_end_{side}",
            end_to_end,
            "s/volume",
            threads=threads,
            load=[load_start, load_average()],
            extrapolated_from_steps=extrapolated,
            how="one whole DDPM-1000 volume (1000 network calls + updates), timed end to end",
        )
    return {
        "config": config,
        "module": module,
        "shape": shape,
        "batch": batch,
        "series": series,
        "flops": flops,
        "sampler": sampler,
        "feasible": feasible,
        "base_train": series.get(("baseline_train", best_threads(series, "baseline_train", plan.thread_counts)))
        if feasible
        else None,
    }


def record_size(book, plan, series, side, common, fairness, info, feasible, reason) -> None:
    """Per thread count and at each side's best: steps, volumes, speedups (median [min-max])."""
    counts = plan.thread_counts

    def add_series(name: str, task: str, threads: int, unit: str, scale: float = 1.0, **detail: Any) -> None:
        summary = series[(task, threads)].summary(scale)
        book.add(name, summary.pop("median"), unit, threads=threads, **summary, **detail)

    ms_detail = {"precision": info.get("precision"), "representation": info.get("representation")}
    volumes = {task: suffix for task, suffix in VOLUME_TASKS.items() if (task, counts[0]) in series}
    sample_detail = {
        task: {
            "sampler": info.get(task),
            "precision": info.get("sample_precision"),
            "how": "generate_volumes end to end (noise, solver, decode), batch 1",
        }
        | ({"quality": FEW_STEP_QUALITY} if suffix else {})
        for task, suffix in volumes.items()
    }
    ddpm_how = (
        f"median DDPM step (network call + O(voxels) scheduler update) x {BASELINE_SAMPLING_STEPS}: "
        "extrapolated, every step is the same network call"
    )
    ddim_how = f"median DDIM step x {TUTORIAL_DDIM_STEPS}: extrapolated, as DDPM"
    for threads in counts:
        tag = f"[threads={threads}]"
        add_series(f"medsynth_train_step_{side}{tag}", "medsynth_train", threads, "s/step", **ms_detail, **common)
        for task, suffix in volumes.items():
            add_series(f"medsynth_sample_volume{suffix}_{side}{tag}", task, threads, "s/volume", **sample_detail[task])
        if not feasible:
            continue
        add_series(f"baseline_train_step_{side}{tag}", "baseline_train", threads, "s/step", precision="32-true")
        add_series(f"baseline_ddpm_step_{side}{tag}", "baseline_ddpm_step", threads, "s/step")
        add_series(f"baseline_ddim_step_{side}{tag}", "baseline_ddim_step", threads, "s/step")
        add_speedups(book, f"{side}{tag}", series, volumes, threads, threads, fairness)
    best = {name: best_threads(series, name, counts) for name in ("medsynth_train", *volumes)}
    add_series(f"medsynth_train_step_{side}", "medsynth_train", best["medsynth_train"], "s/step", **ms_detail, **common)
    book.add(f"medsynth_train_throughput_{side}", common["batch"] / float(np.median(series[("medsynth_train", best["medsynth_train"])].values)), "volumes/s")
    for task, suffix in volumes.items():
        add_series(f"medsynth_sample_volume{suffix}_{side}", task, best[task], "s/volume", **sample_detail[task])
    if not feasible:
        for name in speedup_pairs(volumes):
            book.add(f"{name}_{side}", None, "x", skipped=reason)
        return
    for name in ("baseline_train", "baseline_ddpm_step", "baseline_ddim_step"):
        best[name] = best_threads(series, name, counts)
    add_series(f"baseline_train_step_{side}", "baseline_train", best["baseline_train"], "s/step", precision="32-true", representation="pixel")
    add_series(
        f"baseline_sample_volume_{side}",
        "baseline_ddpm_step",
        best["baseline_ddpm_step"],
        "s/volume",
        BASELINE_SAMPLING_STEPS,
        sampler=f"ddpm-{BASELINE_SAMPLING_STEPS}",
        how=ddpm_how,
    )
    add_series(
        f"baseline_ddim250_volume_{side}",
        "baseline_ddim_step",
        best["baseline_ddim_step"],
        "s/volume",
        TUTORIAL_DDIM_STEPS,
        sampler=f"ddim-{TUTORIAL_DDIM_STEPS}",
        how=ddim_how,
    )
    add_speedups(book, str(side), series, volumes, None, None, fairness, best)


def speedup_pairs(volumes: dict[str, str]) -> dict[str, tuple[str, str, float]]:
    """Speedup name -> (baseline task, medsynth task, baseline scale): training, and for each medsynth volume
    task (``volumes``: task -> record suffix) DDPM-1000 (``sample_speedup<suffix>``) and DDIM-250
    (``sample_speedup_ddim250<suffix>``)."""
    pairs = {"train_speedup": ("baseline_train", "medsynth_train", 1.0)}
    for task, suffix in volumes.items():
        pairs[f"sample_speedup{suffix}"] = ("baseline_ddpm_step", task, float(BASELINE_SAMPLING_STEPS))
        pairs[f"sample_speedup_ddim250{suffix}"] = ("baseline_ddim_step", task, float(TUTORIAL_DDIM_STEPS))
    return pairs


def add_speedups(book, suffix, series, volumes, base_threads, ms_threads, fairness, best=None) -> None:
    """The :func:`speedup_pairs` at one thread count (``base_threads`` = ``ms_threads``) or of each side's
    best (``best``)."""
    pairs = speedup_pairs(volumes)
    for name, (base_task, ms_task, scale) in pairs.items():
        bt = best[base_task] if best else base_threads
        mt = best[ms_task] if best else ms_threads
        ratio = speedup(series[(base_task, bt)], series[(ms_task, mt)], baseline_scale=scale)
        times = f" x {scale:.0f}" if scale != 1 else ""
        book.add(
            f"{name}_{suffix}",
            ratio.pop("value"),
            "x",
            baseline_threads=bt,
            medsynth_threads=mt,
            how=f"median {base_task}{times} / median {ms_task}; "
            + ("each side at its best thread count" if best else "both sides at the same thread count"),
            **ratio,
            **fairness,
        )


def record_efficiency(book, plan, series, side, flops: int, n: int) -> None:
    """Achieved GFLOP/s of medsynth's training step (FLOPs / median s/step) against the bf16 matmul
    peak measured in the same rounds at the same thread count (best of all its timings)."""
    for threads in plan.thread_counts:
        peak_s = min(series[("peak_bf16_matmul", threads)].values)
        peak = 2.0 * n**3 / peak_s / 1e9
        book.add(
            f"peak_gflops_bf16[threads={threads}]",
            peak,
            "GFLOP/s",
            how=f"{n}x{n} bf16 matmul, best of 4 per round, best over {plan.rounds} rounds",
            load_by_round=series[("peak_bf16_matmul", threads)].loads,
        )
        step = float(np.median(series[("medsynth_train", threads)].values))
        achieved = flops / step / 1e9
        book.add(
            f"medsynth_train_gflops_{side}[threads={threads}]",
            achieved,
            "GFLOP/s",
            flops_per_step=flops,
            median_step_s=step,
            share_of_bf16_peak=achieved / peak,
            how="FlopCounterMode FLOPs of one forward+backward / median Lightning step (optimizer, EMA, logging included)",
        )
    best = best_threads(series, "medsynth_train", plan.thread_counts)
    record = book.get(f"medsynth_train_gflops_{side}[threads={best}]")
    book.add(f"medsynth_train_gflops_{side}", record.value, "GFLOP/s", threads=best, **record.detail)


def measure_baseline_flops(book: RecordBook, device: torch.device, size: dict[str, Any], plan: Plan) -> None:
    """Achieved GFLOP/s of the baseline's fp32 training step (FlopCounterMode FLOPs / median s/step at its
    best thread count) against an fp32 matmul peak measured now at that thread count."""
    if not size["feasible"]:
        return
    model_cfg, shape, batch = size["config"]["model"], size["shape"], size["batch"]
    threads = best_threads(size["series"], "baseline_train", plan.thread_counts)
    step_s = float(np.median(size["series"][("baseline_train", threads)].values))
    net = tutorial_unet_from_config(model_cfg).to(device)

    def base_step() -> None:
        x = torch.randn((batch, 1, *shape), device=device)
        net(x, timesteps=torch.zeros(batch, dtype=torch.long, device=device)).pow(2).mean().backward()

    flops = count_flops(base_step)
    with torch_threads(threads):
        peak32, how32 = peak_gflops(device, torch.float32)
    book.add("peak_gflops_fp32", peak32, "GFLOP/s", how=how32, threads=threads, load=load_average())
    book.add(
        f"baseline_train_gflops_{shape[0]}",
        flops / step_s / 1e9,
        "GFLOP/s",
        threads=threads,
        flops_per_step=flops,
        share_of_fp32_peak=flops / step_s / 1e9 / peak32,
    )


def measure_profile(book: RecordBook, device: torch.device, size: dict[str, Any], plan: Plan) -> None:
    """torch.profiler of one medsynth training step at its best thread count: top ops and kinds of work."""
    from step_profile import profile_markdown, profile_training_step

    side = size["shape"][0]
    threads = best_threads(size["series"], "medsynth_train", plan.thread_counts)
    load_start = load_average()
    with torch_threads(threads):
        profile = profile_training_step(
            size["config"], size["shape"], size["batch"], device, warmup=1 if plan.smoke else 3
        )
    book.add(
        f"profile_train_step_{side}",
        profile["total_ms"] / 1e3,
        "s self CPU",
        threads=threads,
        load=[load_start, load_average()],
        **profile,
    )
    book.extra_markdown.append(profile_markdown(profile))


def measure_memory(book: RecordBook, device: torch.device, size: dict[str, Any], plan: Plan) -> None:
    from memory_probe import probe

    side = size["shape"][0]
    for kind in ("medsynth", "baseline"):
        if kind == "baseline" and not size["feasible"]:
            continue
        result = probe(
            kind, size["config"]["model"], size["shape"], size["batch"], str(device), max(plan.thread_counts)
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
    threads = max(plan.thread_counts)
    variants = [
        Variant(f"baseline (fp32, pixel), {threads} thread(s)", threads=threads),
        Variant("+bf16", bf16=True, threads=threads),
        Variant("+wavelet (fp32)", wavelet=True, threads=threads),
        Variant("+bf16 +wavelet", bf16=True, wavelet=True, threads=threads),
        Variant("+bf16 +wavelet +channels_last_3d", bf16=True, wavelet=True, channels_last=True, threads=threads),
    ]
    fewest = min(plan.thread_counts)
    if fewest != threads:
        variants += [
            Variant(f"+bf16 +wavelet, {fewest} thread(s)", bf16=True, wavelet=True, threads=fewest),
            Variant(f"baseline (fp32, pixel), {fewest} thread(s)", threads=fewest),
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
        thread_counts=plan.thread_counts,
        rounds=plan.rounds,
        medsynth_thread_settings=plan.thread_settings,
        omp_env={k: v for k, v in os.environ.items() if k.startswith(("OMP_", "KMP_", "MKL_", "GOMP_"))},
    )
    if args.quality_only:
        run_quality(book, args)
        return finish(book, args, started)
    sizes = {}
    for side in plan.sizes:
        sizes[side] = measure_size(book, args, plan, device, side)
    main_size = sizes.get(64) or next(iter(sizes.values()))
    measure_profile(book, device, main_size, plan)
    if not plan.quick:
        measure_baseline_flops(book, device, main_size, plan)
        measure_memory(book, device, main_size, plan)
        measure_ablation(book, device, main_size, plan)
        from pipeline import brain_dataset, data_wait_share

        work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
        side = main_size["shape"][0]
        root = brain_dataset(work, 6 if plan.smoke else 12, [side] * 3)
        threads = best_threads(main_size["series"], "medsynth_train", plan.thread_counts)
        for cache in ("memory",) if plan.smoke else ("memory", "none"):
            overrides = [*plan.model_overrides, f"data.cache={cache}", f"trainer.num_threads={threads}"]
            with torch_threads(None):
                wait = data_wait_share(root, 3 if plan.smoke else 8, overrides, device.type)
            book.add(f"data_wait_share_{side}[cache={cache}]", wait.pop("share"), "fraction", threads=threads, **wait)
        if plan.full and not args.no_quality:
            run_quality(book, args)
    return finish(book, args, started)


def run_quality(book: RecordBook, args: argparse.Namespace) -> None:
    """FRD of the fast sampler vs DDPM-1000 from one brain-demo checkpoint trained for --quality-steps."""
    from pipeline import quality_check

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="medsynth-bench-"))
    fast = args.sampler or sampler_settings()["name"]  # conf/sample.yaml's default
    quality = quality_check(work, args.quality_steps, args.quality_samples, fast)
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
