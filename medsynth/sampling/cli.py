"""``medsynth sample ckpt=RUN|FILE num_samples=N out_dir=DIR [key=value ...]``: a synthetic NIfTI dataset.

Order of work: compose the config, load the checkpoint, fix the plan (files, seeds, labels),
check every setting and any files already in ``out_dir``; only then create files. Finished
samples are skipped on a rerun (their header carries the settings key), ``overwrite=true``
regenerates them. Outputs: ``sample_NNNNN.nii.gz``, ``manifest.csv``, ``datalist.json``,
``preprocessing.json`` (the checkpoint's preprocessing fingerprint, for ``intensity=model``) and
``figures/contact_sheet.png`` (figures stay out of the volume folder, so tools that glob it for
images, such as frd-score, see only the volumes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from medsynth.config import compose_stage, format_defaults, require
from medsynth.errors import ConfigError, InputFileError
from medsynth.io.atomic import atomic_write_text, remove_stale_temporaries
from medsynth.io.fingerprint import PREPROCESSING_FILE
from medsynth.io.run_dir import BEST_QUALITY_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT, checkpoint_of_run
from medsynth.io.slurm_array import array_role, check_task_records, shard, write_task_record
from medsynth.models.bundle import SamplingBundle
from medsynth.models.precision import resolve_device
from medsynth.sampling.contact_sheet import write_contact_sheet
from medsynth.sampling.export import check_export_settings, read_settings_key
from medsynth.sampling.generate import sampling_precision, validate_conditions
from medsynth.sampling.manifest import manifest_rows, write_datalist, write_manifest
from medsynth.sampling.plan import GenerationSettings, SampleSpec, build_plan
from medsynth.sampling.samplers import build_sampler

DESCRIPTION = """\
medsynth sample: generate synthetic 3D volumes from a trained checkpoint.

  medsynth sample ckpt=RUN|FILE num_samples=N out_dir=DIR [sampler=dpmpp3m|dpmpp|heun|pndm|ddim|euler|ddpm] [steps=K] [eta=E] [grid=auto|uniform|logsnr|karras]
                  [seed=S] [guidance_scale=G] [label=V | labels={V:COUNT,...}] [devices=N] ...
  medsynth sample ckpt=RUN|FILE masks_dir=DIR out_dir=DIR ...   (mask-conditioned model: one image per label map)

ckpt=RUN (a `medsynth train` run folder) samples RUN/checkpoints/best_quality.ckpt, the weights whose
samples scored best during training, or RUN/checkpoints/last.ckpt when there is none (a line says
which and why); ckpt=FILE samples that checkpoint file.

Writes DIR/sample_00000.nii.gz ... (the training data's affine and spacing), DIR/manifest.csv
(seed, sampler, steps, label/covariates, checkpoint sha256, seconds per volume), DIR/datalist.json
(MONAI/Decathlon datalist), DIR/preprocessing.json (the training data's preprocessing fingerprint,
intensity=model only) and DIR/figures/contact_sheet.png. Sample i depends only on (seed, i) and the
settings; a rerun skips finished files (overwrite=true redoes them).

Default config (conf/sample.yaml; override any key with key=value):
"""


def resolve_checkpoint(ckpt: str) -> Path:
    """The checkpoint file ``ckpt=`` names: the file itself, or for a run folder its
    ``best_quality.ckpt`` (else ``last.ckpt``), announced in one line. InputFileError when neither is there."""
    path = Path(ckpt).expanduser()
    if not path.is_dir():
        return path
    chosen = checkpoint_of_run(path)
    if chosen is None:
        raise InputFileError(
            path,
            f"is a folder without {CHECKPOINT_DIR}/{BEST_QUALITY_CHECKPOINT} or {CHECKPOINT_DIR}/{LAST_CHECKPOINT} "
            "(ckpt= takes a medsynth train run folder or a .ckpt file)",
        )
    file, reason = chosen
    print(f"medsynth sample: ckpt={ckpt} is a run folder: using {file}, {reason}{quality_note(file)}", flush=True)
    return file


def quality_note(path: Path) -> str:
    """`` (quality/frd_d2 = 1.23 at step 800, best of steps scored up to 1200)`` from the checkpoint's
    ``quality`` record (written by the training quality callback); empty when it has none."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: load_bundle names the problem in one line
        return ""
    record = checkpoint.get("quality") if isinstance(checkpoint, dict) else None
    if not isinstance(record, dict) or record.get("best") is None:
        return f" (step {checkpoint.get('global_step')})" if isinstance(checkpoint, dict) else ""
    return (
        f" ({record.get('monitor')} = {float(record['best']):.6g} at step {record.get('best_step')}, "
        f"{record.get('reference', 'reference set')}; scored up to step {record.get('last_step')})"
    )


def load_bundle(ckpt: str, use_ema: bool) -> SamplingBundle:
    """The checkpoint as a SamplingBundle (InputFileError for a missing or foreign file)."""
    path = Path(ckpt)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found" if not path.exists() else "not a file")
    from medsynth.models.checkpoint import load_for_sampling

    return load_for_sampling(str(path), use_ema=use_ema, map_location="cpu")


def target_device(cfg: DictConfig) -> torch.device:
    """Device whose precision support decides ``precision=auto`` (and that runs a one-process job)."""
    devices = int(cfg.devices)
    if devices > 1:
        accelerator = str(cfg.accelerator)
        cuda = accelerator in ("cuda", "gpu") or (
            accelerator == "auto" and torch.cuda.device_count() >= devices
        )
        return torch.device("cuda" if cuda else "cpu")
    device = str(cfg.device)
    resolved = resolve_device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"'{device}' asked for but CUDA is not available here (use device=cpu)")
    return resolved


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def prepare(cfg: DictConfig, bundle: SamplingBundle) -> tuple[GenerationSettings, list[SampleSpec]]:
    """Validate every setting against the checkpoint and fix the plan (raises MedsynthError)."""
    device = target_device(cfg)
    sampler_name = str(cfg.sampler.name)
    grid = cfg.get("grid", cfg.sampler.get("grid"))
    solver = build_sampler(sampler_name, bundle.diffusion, cfg.steps, float(cfg.eta), grid)
    check_export_settings(str(cfg.intensity), str(cfg.dtype), bundle.intensity)
    if int(cfg.batch_size) < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {cfg.batch_size}")
    if int(cfg.devices) < 1:
        raise ConfigError("devices", f"must be >= 1, got {cfg.devices}")
    settings = GenerationSettings(
        sampler=sampler_name,
        steps=solver.num_steps,
        eta=solver.eta if solver.spec.uses_eta else (1.0 if sampler_name == "ddpm" else 0.0),
        grid=solver.grid_kind,
        guidance_scale=float(cfg.guidance_scale),
        precision=sampling_precision(str(cfg.precision), device),
        intensity=str(cfg.intensity),
        dtype=str(cfg.dtype),
        base_seed=int(cfg.seed),
    )
    specs, covariates = build_plan(
        bundle,
        settings,
        num_samples=cfg.num_samples,
        label=_plain(cfg.label),
        labels=_plain(cfg.labels),
        covariates=_plain(cfg.covariates),
        masks_dir=cfg.get("masks_dir"),
    )
    labels = [s.label_index for s in specs] if specs and specs[0].label_index is not None else None
    validate_conditions(bundle, len(specs), settings.guidance_scale, labels, covariates)
    return settings, specs


def pending(specs: list[SampleSpec], out_dir: Path, overwrite: bool) -> list[SampleSpec]:
    """Samples still to make; raises ConfigError if out_dir holds a file made with other settings."""
    if overwrite:
        return list(specs)
    todo = []
    for spec in specs:
        path = out_dir / spec.file
        if not path.exists():
            todo.append(spec)
            continue
        found = read_settings_key(path)
        if found is None or found[0] != spec.key:
            raise ConfigError(
                "out_dir",
                f"{path} was not made with these settings (or by medsynth); pass overwrite=true or use another out_dir",
            )
    return todo


def write_fingerprint(out_dir: Path, bundle: SamplingBundle, settings: GenerationSettings) -> Path | None:
    """``out_dir/preprocessing.json`` with the checkpoint's fingerprint when the volumes are in the
    model's space (``intensity=model``); otherwise (source units, or a checkpoint older than the
    fingerprint) any stale record is removed, so evaluate and study refuse the folder."""
    path = out_dir / PREPROCESSING_FILE
    fingerprint = bundle.geometry.fingerprint
    if settings.intensity != "model" or not fingerprint:
        path.unlink(missing_ok=True)
        return None
    record = {
        "fingerprint": fingerprint,
        "written_by": "medsynth sample",
        "checkpoint": bundle.checkpoint_path,
        "checkpoint_sha256": bundle.checkpoint_sha256,
    }
    return atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def run_sampling(cfg: DictConfig) -> dict[str, Any]:
    """The whole stage; returns a summary {out_dir, generated, skipped, seconds, manifest}."""
    ckpt = str(resolve_checkpoint(str(require(cfg, "ckpt"))))
    out_dir = Path(str(require(cfg, "out_dir")))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(out_dir, "out_dir exists and is not a folder")
    role = array_role(cfg)  # a SLURM array task, its finishing step, or None
    bundle = load_bundle(ckpt, bool(cfg.use_ema))
    settings, specs = prepare(cfg, bundle)
    todo = pending(specs, out_dir, bool(cfg.overwrite))
    if role is not None and role.finishing:
        check_task_records(out_dir, "sample", role, [s.file for s in specs])
        todo = []
    elif role is not None:
        todo = shard(todo, role) if bool(cfg.overwrite) else [s for s in shard(specs, role) if s in todo]

    # nothing has been written up to here
    out_dir.mkdir(parents=True, exist_ok=True)
    if role is None or role.finishing:  # never while other array tasks are writing
        remove_stale_temporaries(out_dir)
    start = time.perf_counter()
    if todo:
        if int(cfg.devices) > 1:
            from medsynth.sampling.distributed import write_samples_distributed

            write_samples_distributed(
                bundle,
                todo,
                settings,
                out_dir,
                int(cfg.batch_size),
                devices=int(cfg.devices),
                accelerator=str(cfg.accelerator),
                progress=bool(cfg.progress),
            )
        else:
            from medsynth.models.cpu_threads import apply_num_threads
            from medsynth.sampling.writer import write_samples

            apply_num_threads(cfg.get("num_threads", "auto"), target_device(cfg).type)
            write_samples(
                bundle,
                todo,
                settings,
                out_dir,
                int(cfg.batch_size),
                device=target_device(cfg),
                progress=bool(cfg.progress),
            )
    elapsed = time.perf_counter() - start
    if role is not None and not role.finishing:
        mine = shard(specs, role)
        for spec in mine:
            found = read_settings_key(out_dir / spec.file)
            if found is None or found[0] != spec.key:
                raise InputFileError(out_dir / spec.file, "missing or altered after generation")
        record = write_task_record(out_dir, "sample", role, [s.file for s in mine])
        return {
            "out_dir": str(out_dir),
            "generated": len(todo),
            "skipped": len(mine) - len(todo),
            "seconds": elapsed,
            "manifest": str(record),
        }

    seconds: dict[int, float] = {}
    for spec in specs:
        found = read_settings_key(out_dir / spec.file)
        if found is None or found[0] != spec.key:
            raise InputFileError(out_dir / spec.file, "missing or altered after generation")
        seconds[spec.index] = found[1]
    rows = manifest_rows(bundle, settings, specs, seconds)
    manifest = write_manifest(out_dir, rows)
    write_datalist(out_dir, bundle, rows)
    write_fingerprint(out_dir, bundle, settings)
    sheet_n = int(OmegaConf.select(cfg, "contact_sheet.num_samples", default=0) or 0)
    if sheet_n > 0:
        write_contact_sheet(
            [out_dir / s.file for s in specs[:sheet_n]],
            out_dir / "figures" / "contact_sheet.png",
            title=f"{Path(ckpt).name}: {settings.sampler}, {settings.steps} steps, seed {settings.base_seed}",
        )
    return {
        "out_dir": str(out_dir),
        "generated": len(todo),
        "skipped": len(specs) - len(todo),
        "seconds": elapsed,
        "manifest": str(manifest),
    }


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help", "help") for arg in argv):
        print(DESCRIPTION + format_defaults("sample"))
        return 0
    cfg = compose_stage("sample", argv)
    summary = run_sampling(cfg)
    rate = (
        summary["generated"] / summary["seconds"] if summary["seconds"] > 0 and summary["generated"] else 0.0
    )
    print(
        f"medsynth sample: {summary['generated']} generated, {summary['skipped']} already there "
        f"({rate:.2f} volumes/s) -> {summary['out_dir']} "
        + (
            "(manifest.csv, datalist.json, figures/)"
            if summary["manifest"].endswith("manifest.csv")
            else f"(array task record {Path(summary['manifest']).name}; array.finish=true writes the manifest)"
        )
    )
    return 0
