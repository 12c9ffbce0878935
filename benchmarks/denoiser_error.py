"""Where a trained model's denoiser falls short: x0 error per diffused channel against the noise level.

For a `medsynth train` run, the training volumes (its own `config_resolved.yaml`, no augmentation
beyond the loader's) are encoded, noised at a few training timesteps with a fixed seed, and the
checkpoint's network (EMA weights) is asked for x0. The table gives the RMS error of x0 per band of
the image channels (channel order of the representation: low band, then the 7 Haar detail bands)
beside each band's own SD, the error of predicting 0.

Reading it: at low noise (s = sigma/alpha small) a good denoiser's error is about s or less; an
error near the band's SD means the network does not use its input there (x0 prediction without a
skip: smooth samples), and one above the band's SD at mid noise means the noise in c_skip x is not
cancelled (epsilon / v / flow / edm: noisy samples).

    .venv/bin/python benchmarks/denoiser_error.py RUN [--ckpt last.ckpt] [--timesteps 5 50 200 400 950] [--out e.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def denoiser_error(run: Path, ckpt: str, timesteps: list[int], seed: int = 0, max_batches: int = 4) -> dict:
    """{"band_sd": [...], "rows": [{"t", "s", "rms": [...]}]} over the image channels of the run's model."""
    from omegaconf import OmegaConf

    from medsynth.models.checkpoint import load_for_sampling
    from medsynth.models.noise import NoiseProcess
    from medsynth.train import build_datamodule

    cfg = OmegaConf.load(run / "config_resolved.yaml")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    bundle = load_for_sampling(run / "checkpoints" / ckpt)
    representation = bundle.representation
    process = NoiseProcess(bundle.diffusion)
    coefficients = []
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i >= max_batches:
            break
        coefficients.append(representation.encode(batch["image"].float()))
    x0 = torch.cat(coefficients)
    image_channels = int(representation.latent_shape(bundle.geometry.shape)[0]) // (1 + bundle.geometry.label_classes)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for t in timesteps:
        ts = torch.full((x0.shape[0],), int(t))
        noisy = process.add_noise(x0, torch.randn(x0.shape, generator=generator), ts)
        with torch.no_grad():
            out = bundle.network(noisy, ts).double()
        alpha, sigma = process.scales(ts, noisy.double())
        estimate, _ = process.denoised(out, noisy.double(), alpha, sigma)
        rms = (estimate - x0.double()).pow(2).mean(dim=(0, 2, 3, 4)).sqrt()[:image_channels]
        rows.append({"t": int(t), "s": float(sigma.flatten()[0] / alpha.flatten()[0]), "rms": rms.tolist()})
    band_sd = x0[:, :image_channels].double().std(dim=(0, 2, 3, 4)).tolist()
    return {"run": str(run), "ckpt": ckpt, "volumes": int(x0.shape[0]), "band_sd": band_sd, "rows": rows}


def table(result: dict) -> str:
    bands = len(result["band_sd"])
    lines = [
        "| t | sigma/alpha | " + " | ".join(f"ch {c}" for c in range(bands)) + " |",
        "|---|---|" + "---|" * bands,
        "| band SD | | " + " | ".join(f"{v:.3f}" for v in result["band_sd"]) + " |",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['t']} | {row['s']:.3f} | " + " | ".join(f"{v:.3f}" for v in row["rms"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a `medsynth train` run folder (config_resolved.yaml, checkpoints/)")
    p.add_argument("--ckpt", default="last.ckpt", help="checkpoint file name under checkpoints/")
    p.add_argument("--timesteps", type=int, nargs="+", default=[5, 20, 50, 100, 200, 400, 700, 950])
    p.add_argument("--batches", type=int, default=4, help="training batches to score")
    p.add_argument("--out", type=Path, help="also write the result as JSON")
    args = p.parse_args(argv)
    for name in ("config_resolved.yaml", f"checkpoints/{args.ckpt}"):
        if not (args.run / name).is_file():
            print(f"denoiser_error: {args.run / name}: missing (not a medsynth train run?)", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    result = denoiser_error(args.run, args.ckpt, args.timesteps, max_batches=args.batches)
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
