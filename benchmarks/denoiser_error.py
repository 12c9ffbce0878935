"""Where a trained model's denoiser falls short: x0 error per diffused channel against the noise level.

For a `medsynth train` run, the training volumes (its own `config_resolved.yaml`, no augmentation
beyond the loader's) are encoded, noised at a few training timesteps with a fixed seed, and the
checkpoint's network (EMA weights) is asked for x0. The table gives the RMS error of x0 per band of
the image channels (channel order of the representation: low band, then the 7 Haar detail bands)
beside each band's own SD, the error of predicting 0.

With ``--heldout DIR`` (a folder prepared with the same ``medsynth data prepare`` settings, subjects
the run never saw) the same noise is applied to as many held-out volumes and the table adds the
mean-squared x0 error over every image band, training and held-out, and the gap (held-out / training
- 1). A gap that grows with the training steps at mid noise is the denoiser learning its training
subjects rather than the population: the samples then get worse while the loss still falls.
Augmentation is off for both sets (flips and affines would make the training volumes new).

Reading it: at low noise (s = sigma/alpha small) a good denoiser's error is about s or less; an
error near the band's SD means the network does not use its input there (x0 prediction without a
skip: smooth samples), and one above the band's SD at mid noise means the noise in c_skip x is not
cancelled (epsilon / v / flow / edm: noisy samples).

    .venv/bin/python benchmarks/denoiser_error.py RUN [--ckpt last.ckpt] [--timesteps 5 50 200 400 950]
        [--heldout PREPARED_DIR] [--out e.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def _coefficients(cfg, representation, max_batches: int, root: Path | None = None) -> torch.Tensor:
    """Encoded volumes of the run's training subjects (or of the prepared folder ``root``), unaugmented."""
    from medsynth.train import build_datamodule

    cfg = cfg.copy()
    cfg.data.flip_prob, cfg.data.affine_prob = 0.0, 0.0
    if root is not None:
        cfg.data.root, cfg.data.manifest, cfg.data.val_fraction = str(root), None, 0.0
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    coefficients = []
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i >= max_batches:
            break
        coefficients.append(representation.encode(batch["image"].float()))
    return torch.cat(coefficients)


def _x0_errors(bundle, process, x0: torch.Tensor, timesteps: list[int], seed: int) -> list[torch.Tensor]:
    """Per timestep: the squared x0 error of the EMA network, (N, C, ...) float64 (one fixed noise draw)."""
    generator = torch.Generator().manual_seed(seed)
    errors = []
    for t in timesteps:
        ts = torch.full((x0.shape[0],), int(t))
        noisy = process.add_noise(x0, torch.randn(x0.shape, generator=generator), ts)
        with torch.no_grad():
            out = bundle.network(noisy, ts).double()
        alpha, sigma = process.scales(ts, noisy.double())
        estimate, _ = process.denoised(out, noisy.double(), alpha, sigma)
        errors.append((estimate - x0.double()).pow(2))
    return errors


def denoiser_error(
    run: Path, ckpt: str, timesteps: list[int], seed: int = 0, max_batches: int = 4, heldout: Path | None = None
) -> dict:
    """{"band_sd": [...], "rows": [{"t", "s", "rms": [...], ["mse_train", "mse_heldout"]}]} (image channels)."""
    from omegaconf import OmegaConf

    from medsynth.models.checkpoint import load_for_sampling
    from medsynth.models.noise import NoiseProcess

    cfg = OmegaConf.load(run / "config_resolved.yaml")
    bundle = load_for_sampling(run / "checkpoints" / ckpt)
    representation = bundle.representation
    process = NoiseProcess(bundle.diffusion)
    x0 = _coefficients(cfg, representation, max_batches)
    image_channels = int(representation.latent_shape(bundle.geometry.shape)[0]) // (1 + bundle.geometry.label_classes)
    errors = _x0_errors(bundle, process, x0, timesteps, seed)
    held_errors = None
    if heldout is not None:
        held = _coefficients(cfg, representation, max_batches, heldout)[: x0.shape[0]]
        held_errors = _x0_errors(bundle, process, held, timesteps, seed)
    rows = []
    for i, t in enumerate(timesteps):
        alpha, sigma = process.scales(torch.tensor([int(t)]), x0.double())
        rms = errors[i].mean(dim=(0, 2, 3, 4)).sqrt()[:image_channels]
        row = {"t": int(t), "s": float(sigma.flatten()[0] / alpha.flatten()[0]), "rms": rms.tolist()}
        if held_errors is not None:
            row["mse_train"] = float(errors[i][:, :image_channels].mean())
            row["mse_heldout"] = float(held_errors[i][:, :image_channels].mean())
        rows.append(row)
    band_sd = x0[:, :image_channels].double().std(dim=(0, 2, 3, 4)).tolist()
    result = {"run": str(run), "ckpt": ckpt, "volumes": int(x0.shape[0]), "band_sd": band_sd, "rows": rows}
    if held_errors is not None:
        result["heldout"] = str(heldout)
    return result


def table(result: dict) -> str:
    bands = len(result["band_sd"])
    gap = "heldout" in result
    extra = " MSE train | MSE held-out | gap |" if gap else ""
    lines = [
        "| t | sigma/alpha | " + " | ".join(f"ch {c}" for c in range(bands)) + " |" + extra,
        "|---|---|" + "---|" * bands + ("---|---|---|" if gap else ""),
        "| band SD | | " + " | ".join(f"{v:.3f}" for v in result["band_sd"]) + " |" + (" | | |" if gap else ""),
    ]
    for row in result["rows"]:
        line = f"| {row['t']} | {row['s']:.3f} | " + " | ".join(f"{v:.3f}" for v in row["rms"]) + " |"
        if gap:
            ratio = row["mse_heldout"] / row["mse_train"] - 1.0
            line += f" {row['mse_train']:.3e} | {row['mse_heldout']:.3e} | {ratio:+.0%} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a `medsynth train` run folder (config_resolved.yaml, checkpoints/)")
    p.add_argument("--ckpt", default="last.ckpt", help="checkpoint file name under checkpoints/")
    p.add_argument("--timesteps", type=int, nargs="+", default=[5, 20, 50, 100, 200, 400, 700, 950])
    p.add_argument("--batches", type=int, default=4, help="training batches to score")
    p.add_argument("--heldout", type=Path, help="a prepared folder of unseen subjects: adds the generalisation gap")
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    args = p.parse_args(argv)
    if args.heldout is not None and not (args.heldout / "preprocessing.json").is_file():
        print(f"denoiser_error: {args.heldout}: no preprocessing.json (not a prepared folder)", file=sys.stderr)
        return 2
    for name in ("config_resolved.yaml", f"checkpoints/{args.ckpt}"):
        if not (args.run / name).is_file():
            print(f"denoiser_error: {args.run / name}: missing (not a medsynth train run?)", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    result = denoiser_error(args.run, args.ckpt, args.timesteps, max_batches=args.batches, heldout=args.heldout)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
