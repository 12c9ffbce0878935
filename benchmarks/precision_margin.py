"""How far a synthetic set is from precision > 0: the k-NN ball ratio in evaluate's feature space.

PRDC precision (Naeem et al. 2020) counts synthetic volumes that fall inside some real volume's
k-nearest-neighbour ball. For each synthetic volume this prints min over real r of
dist(s, r) / radius_k(r) in `medsynth evaluate`'s space (frd-score radiomics standardised by the
real set, |z| clipped at `radiomics.z_clip`, k = `prdc.nearest_k`): precision > 0 exactly when the
smallest ratio is below 1, so the ratio shows progress where precision stays at 0. Features come
from evaluate's radiomics cache (extracted once per file).

    .venv/bin/python benchmarks/precision_margin.py REAL_DIR SYN_DIR [SYN_DIR ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def ball_ratios(real: np.ndarray, synthetic: np.ndarray, k: int) -> np.ndarray:
    """(N_syn,) min over real of distance / the real point's k-NN radius, with prdc's own functions
    (the radii and distances its precision compares), k lowered for tiny sets as evaluate does."""
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    k = int(max(1, min(k, len(real) - 2)))
    radius = compute_nearest_neighbour_distances(real, k)
    return (compute_pairwise_distance(synthetic, real) / radius[None]).min(axis=1)


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from medsynth.metrics.evaluation import featurise
    from medsynth.metrics.set_metrics import FeatureSpace
    from medsynth.metrics.volume_folder import list_volume_files

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("real_dir", type=Path)
    p.add_argument("synthetic_dirs", type=Path, nargs="+")
    args = p.parse_args(argv)
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "evaluate.yaml")
    cfg.progress = False
    real = featurise(list_volume_files(args.real_dir, "real_dir"), cfg, "real")
    print("| synthetic set | n | min ratio | median ratio | precision (ratio < 1) |")
    print("|---|---|---|---|---|")
    for folder in args.synthetic_dirs:
        synthetic = featurise(list_volume_files(folder, "synthetic_dir"), cfg, "synthetic")
        space = FeatureSpace.standardise(real.values, synthetic.values, real.names, float(cfg.radiomics.z_clip))
        ratios = ball_ratios(space.real, space.synthetic, int(cfg.prdc.nearest_k))
        print(f"| {folder} | {len(ratios)} | {ratios.min():.2f} | {np.median(ratios):.2f} | {np.mean(ratios < 1):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
