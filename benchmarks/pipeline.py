"""Benchmarks that run medsynth's own stages end to end on the embedded brain demo data.

- :func:`data_wait_share`: a real ``Trainer.fit`` of ``DiffusionModule`` on ``VolumeDataModule``
  (prepared NIfTI files, MONAI transforms, the data config's cache) with Lightning's
  ``SimpleProfiler``: the share of wall time spent in ``train_dataloader_next`` (waiting for the
  next batch) against ``run_training_batch`` (forward, backward, optimizer, EMA).
- :func:`quality_check`: ``medsynth train experiment=demo`` on the brain demo for a fixed number of
  steps, ``medsynth sample`` with the fast sampler and with DDPM-1000 from the same checkpoint,
  and the squared Fréchet Radiomics Distance d^2 of each set to the training data
  (``medsynth.metrics.radiomics_features.extract_features`` + ``set_metrics.radiomics_frechet_d2``),
  the relative gap on d^2 with a bootstrap interval, and d^2 between two halves of the training data
  (what real vs real scores).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def brain_dataset(work: Path, n: int, shape: Sequence[int], seed: int = 0) -> Path:
    """``medsynth data demo dataset=brain`` + ``medsynth data prepare`` into ``work``; returns the prepared folder."""
    from medsynth.data.cli import main as data_main

    side = int(shape[0])
    spacing = 192.0 / side  # the demo's 192 mm field of view
    raw, prepared = work / f"brain{side}_raw", work / f"brain{side}"
    shape_arg = f"shape=[{','.join(str(int(s)) for s in shape)}]"
    if not (prepared / "preprocessing.json").is_file():
        data_main(["demo", "dataset=brain", f"n={n}", shape_arg, f"seed={seed}", f"out_dir={raw}"])
        data_main(
            [
                "prepare",
                f"input={raw}",
                f"out_dir={prepared}",
                f"spacing=[{spacing},{spacing},{spacing}]",
                shape_arg,
            ]
        )
    return prepared


def data_wait_share(
    root: Path, n_steps: int, overrides: Sequence[str] = (), device_type: str = "cpu"
) -> dict[str, Any]:
    """Share of training wall time spent waiting for data in a real fit (first fetch excluded)."""
    from lightning.pytorch.profilers import SimpleProfiler
    from medsynth_side import benchmark_trainer

    from medsynth.config import compose_stage
    from medsynth.models.diffusion_module import DiffusionModule
    from medsynth.models.precision import resolve_precision
    from medsynth.train import build_datamodule

    cfg = compose_stage("config", [f"data.root={root}", "data.val_fraction=0", *overrides])
    datamodule = build_datamodule(cfg)
    datamodule.describe()
    module = DiffusionModule(config=OmegaConf.to_container(cfg, resolve=True), geometry=datamodule.geometry)
    profiler = SimpleProfiler(dirpath=str(root.parent), filename=f"profile_{root.name}")  # report to a file
    start = time.perf_counter()
    datamodule.setup("fit")  # cache fill (CacheDataset) timed apart from the steps
    cache_seconds = time.perf_counter() - start
    trainer = benchmark_trainer(
        device_type,
        resolve_precision(cfg.trainer.precision, device_type),
        n_steps,
        cfg.trainer.gradient_clip_val,
        profiler=profiler,
    )
    trainer.fit(module, datamodule=datamodule)
    fetch = profiler.recorded_durations["[_TrainingEpochLoop].train_dataloader_next"][1:]
    step = profiler.recorded_durations["run_training_batch"][1:]
    share = sum(fetch) / max(sum(fetch) + sum(step), 1e-12)
    return {
        "share": share,
        "fetch_s_mean": sum(fetch) / max(len(fetch), 1),
        "step_s_mean": sum(step) / max(len(step), 1),
        "steps": len(step),
        "cache": str(cfg.data.cache),
        "num_workers": int(cfg.data.num_workers),
        "cache_fill_s": cache_seconds,
    }


def quality_check(
    work: Path,
    max_steps: int | None,
    num_samples: int,
    fast_sampler: str = "dpmpp",
    n_subjects: int = 48,
    side: int = 32,
) -> dict[str, Any]:
    """Train the brain demo for ``max_steps`` (None: ``experiment=demo``'s ``trainer.max_steps``), sample ``num_samples`` with the fast sampler and with
    DDPM-1000 from the same EMA weights, and compute each set's FRD to the training volumes."""
    from medsynth.config import compose_stage
    from medsynth.metrics.evaluation import radiomics_settings
    from medsynth.metrics.radiomics_features import extract_features
    from medsynth.metrics.set_metrics import frd_family, radiomics_frechet_d2
    from medsynth.metrics.uncertainty import bootstrap_intervals, split_halves
    from medsynth.sampling.cli import main as sample_main
    from medsynth.train import main as train_main

    timings: dict[str, float] = {}
    start = time.perf_counter()
    prepared = brain_dataset(work, n_subjects, [side] * 3)
    timings["data_s"] = time.perf_counter() - start
    run_dir = work / "quality_train"
    if max_steps is None:  # the demo experiment's own budget
        max_steps = int(compose_stage("config", ["experiment=demo"]).trainer.max_steps)
    start = time.perf_counter()
    train_main(
        [
            "experiment=demo",
            f"data.root={prepared}",
            f"trainer.max_steps={max_steps}",
            "callbacks.progress=none",
            "logger=none",
            "callbacks.preview.every_n_steps=0",
            f"callbacks.checkpoint.every_n_steps={max_steps}",  # last.ckpt holds the final step
            f"hydra.run.dir={run_dir}",
        ]
    )
    timings["train_s"] = time.perf_counter() - start
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    sets = {}
    for label, sampler in (("fast", fast_sampler), ("ddpm1000", "ddpm")):
        out = work / f"quality_{label}"
        start = time.perf_counter()
        sample_main(
            [
                f"ckpt={ckpt}",
                f"num_samples={num_samples}",
                f"out_dir={out}",
                f"sampler={sampler}",
                "seed=0",
                f"batch_size={num_samples}",
                "progress=false",
                "contact_sheet.num_samples=4",
            ]
        )
        timings[f"sample_{label}_s"] = time.perf_counter() - start
        sets[label] = sorted(out.glob("sample_*.nii.gz"))
    eval_cfg = compose_stage("evaluate", ["real_dir=.", "synthetic_dir=.", "out_dir=."])
    settings = radiomics_settings(eval_cfg)
    cache = work / "radiomics_cache"
    start = time.perf_counter()
    real = extract_features(sorted(prepared.glob("*.nii.gz")), settings, cache_dir=cache, progress=False)
    tables = {
        label: extract_features(files, settings, cache_dir=cache, progress=False).values
        for label, files in sets.items()
    }
    version = settings.frd_version

    def gap(ri, si) -> dict:
        fast = radiomics_frechet_d2(real.values[ri], tables["fast"][si], version)
        ddpm = radiomics_frechet_d2(real.values[ri], tables["ddpm1000"][si], version)
        return {"gap": (fast - ddpm) / ddpm if ddpm > 0 else None}

    d2 = {label: radiomics_frechet_d2(real.values, table, version) for label, table in tables.items()}
    ci = bootstrap_intervals(gap, len(real.values), num_samples, 200, 0.95, seed=0)["gap"]
    half_a, half_b = split_halves(len(real.values), 0)
    floor = radiomics_frechet_d2(real.values[half_a], real.values[half_b], version)
    timings["frd_s"] = time.perf_counter() - start
    fast_sampler_steps = compose_stage("sample", [f"sampler={fast_sampler}"]).sampler.steps
    return {
        "frd_d2_fast": d2["fast"],
        "frd_d2_ddpm1000": d2["ddpm1000"],
        "frd_fast": frd_family(d2["fast"], version)["frd"],
        "frd_ddpm1000": frd_family(d2["ddpm1000"], version)["frd"],
        "relative_gap_d2": (d2["fast"] - d2["ddpm1000"]) / d2["ddpm1000"],
        "relative_gap_d2_ci": ci,
        "frd_d2_real_halves": floor,
        "fast_sampler": f"{fast_sampler}-{fast_sampler_steps}",
        "num_samples": num_samples,
        "num_real": len(real.values),
        "train_steps": max_steps,
        "checkpoint": str(ckpt),
        **timings,
    }
