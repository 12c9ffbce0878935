"""The ``medsynth evaluate`` pipeline: real set vs synthetic set -> metrics.json, per_image.csv,
nearest_neighbours.csv, figures/*.png (every file written atomically, all at the end)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from medsynth import __version__
from medsynth.config import require
from medsynth.errors import ConfigError
from medsynth.io.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from medsynth.metrics import per_image, set_metrics
from medsynth.metrics.radiomics_features import RadiomicsSettings, default_cache_dir, extract_features
from medsynth.metrics.volume_folder import case_ids, list_volume_files, load_volumes, robust_unit_range

#: set-level keys every metrics.json holds (fid3d/kid3d are added when a feature extractor is set)
SET_KEYS = (
    "frd", "mmd", "ms_ssim_real", "ms_ssim_synthetic", "precision", "recall", "density", "coverage", "kid",
)  # fmt: skip


@dataclass
class EvaluationResult:
    """What ``evaluate`` computed: ``metrics`` (the metrics.json dict), ``per_image`` (DataFrame),
    ``nearest_neighbours`` (DataFrame of names), ``notes`` (lines for the user), ``files`` written."""

    metrics: dict
    per_image: pd.DataFrame
    nearest_neighbours: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError("device", str(err)) from None


def on_grid(volumes: Sequence[np.ndarray], shape: Sequence[int]) -> tuple[list[np.ndarray], int]:
    """Volumes resampled (trilinear) to ``shape`` where they differ; returns (volumes, how many changed)."""
    shape = tuple(int(s) for s in shape)
    out, changed = [], 0
    for volume in volumes:
        if volume.shape != shape:
            tensor = torch.as_tensor(volume)[None, None]
            volume = torch.nn.functional.interpolate(tensor, size=shape, mode="trilinear").numpy()[0, 0]
            changed += 1
        out.append(np.ascontiguousarray(volume, dtype=np.float32))
    return out, changed


def radiomics_settings(cfg: DictConfig) -> RadiomicsSettings:
    r = cfg.radiomics
    return RadiomicsSettings(
        frd_version=str(r.frd_version),
        mask=str(r.mask),
        resampled_spacing=None
        if r.resampled_spacing is None
        else tuple(float(s) for s in r.resampled_spacing),
        bin_width=None if r.bin_width is None else float(r.bin_width),
        image_types=None if r.image_types is None else tuple(str(t) for t in r.image_types),
    )


def evaluate(cfg: DictConfig) -> EvaluationResult:
    """Run every metric of ``conf/evaluate.yaml`` and write the outputs to ``cfg.out_dir``."""
    started = time.perf_counter()
    real_files = list_volume_files(require(cfg, "real_dir"), "real_dir")
    synthetic_files = list_volume_files(require(cfg, "synthetic_dir"), "synthetic_dir")
    out_dir = Path(str(require(cfg, "out_dir"))).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out_dir", f"{out_dir} exists and is not a folder")
    train_files = list_volume_files(cfg.train_dir, "train_dir", minimum=1) if cfg.train_dir else None
    device = resolve_device(str(cfg.device))
    notes: list[str] = []
    settings = radiomics_settings(cfg)

    # 1. read and check every volume before any work (one clear line on the first bad file)
    real_raw = load_volumes(real_files)
    synthetic_raw = load_volumes(synthetic_files)
    train_raw = load_volumes(train_files) if train_files else None

    # 2. radiomics features (cached by file hash + settings), FRD and the feature-space metrics
    cache_dir = Path(str(cfg.radiomics.cache_dir)) if cfg.radiomics.cache_dir else default_cache_dir()
    extract = dict(cache_dir=cache_dir, num_workers=int(cfg.num_workers), progress=bool(cfg.progress))
    real_table = extract_features(real_files, settings, description="radiomics (real)", **extract)
    synthetic_table = extract_features(
        synthetic_files, settings, description="radiomics (synthetic)", **extract
    )
    if real_table.names != synthetic_table.names:
        raise ConfigError("radiomics", "real and synthetic volumes gave different radiomics feature names")
    frd = set_metrics.frechet_radiomics_distance(
        real_table.values, synthetic_table.values, settings.frd_version
    )
    space = set_metrics.FeatureSpace.standardise(
        real_table.values, synthetic_table.values, real_table.names, z_clip=float(cfg.radiomics.z_clip)
    )
    mmd = set_metrics.maximum_mean_discrepancy(space.real, space.synthetic)
    kid = set_metrics.kernel_inception_distance(
        space.real, space.synthetic, seed=int(cfg.seed), **_kid_args(cfg)
    )
    prdc = set_metrics.precision_recall_density_coverage(space.real, space.synthetic, int(cfg.prdc.nearest_k))

    # 3. image-space metrics on one grid (the first synthetic volume's), intensities mapped to [0, 1]
    grid = synthetic_raw[0].shape
    pct = list(cfg.intensity.percentiles)
    real_unit, moved_real = on_grid([robust_unit_range(v, pct) for v in real_raw], grid)
    synthetic_unit, moved_syn = on_grid([robust_unit_range(v, pct) for v in synthetic_raw], grid)
    ms_args = dict(
        kernel_size=int(cfg.ms_ssim.kernel_size),
        weights=list(cfg.ms_ssim.weights),
        max_pairs=int(cfg.ms_ssim.max_pairs),
        batch_size=int(cfg.ms_ssim.batch_size),
        seed=int(cfg.seed),
        device=device,
        kernel_sigma=float(cfg.ms_ssim.kernel_sigma),
    )
    ms_ssim_real, ms_real_used = set_metrics.ms_ssim_diversity(real_unit, **ms_args)
    ms_ssim_synthetic, ms_syn_used = set_metrics.ms_ssim_diversity(synthetic_unit, **ms_args)

    # 4. per image
    names = case_ids(synthetic_files)
    bins = int(cfg.per_image.histogram_bins)
    real_histogram = np.mean([per_image.intensity_histogram(v, bins) for v in real_unit], axis=0)
    real_similarity, real_index = per_image.nearest_neighbour_correlation(synthetic_unit, real_unit)
    table = pd.DataFrame(
        {
            "case_id": names,
            "feature_distance": per_image.feature_distance_to_real(space.synthetic),
            "nn_real_feature_distance": per_image.nearest_real_feature_distance(space.synthetic, space.real),
            "nn_real_similarity": real_similarity,
            "histogram_distance": [per_image.histogram_distance(v, real_histogram) for v in synthetic_unit],
            "slice_consistency": [per_image.slice_consistency(v) for v in synthetic_unit],
        }
    )
    neighbours = pd.DataFrame({"case_id": names, "nearest_real": [real_files[i].name for i in real_index]})
    memorisation: dict = {}
    if train_raw is not None:
        train_unit, _ = on_grid([robust_unit_range(v, pct) for v in train_raw], grid)
        train_similarity, train_index = per_image.nearest_neighbour_correlation(synthetic_unit, train_unit)
        threshold = per_image.memorisation_threshold(
            train_unit,
            distance_ratio=float(cfg.per_image.memorisation_distance_ratio),
            min_similarity=float(cfg.per_image.memorisation_min_similarity),
        )
        table["train_nn_similarity"] = train_similarity
        table["memorised"] = (train_similarity > threshold).astype(int)
        neighbours["nearest_train"] = [train_files[i].name for i in train_index]
        memorisation = {"threshold": threshold, "n_train": len(train_files)}
        flagged = int(table["memorised"].sum())
        if flagged:
            notes.append(
                f"memorisation: {flagged} synthetic volume(s) correlate > {threshold:.4f} with a training scan"
            )

    # 5. optional network features
    network_metrics, extractor_note = _network_metrics(cfg, real_raw, synthetic_raw, device)
    if extractor_note:
        notes.append(extractor_note)

    metrics: dict = {
        "frd": frd,
        "mmd": mmd,
        "ms_ssim_real": ms_ssim_real,
        "ms_ssim_synthetic": ms_ssim_synthetic,
        "precision": prdc["precision"],
        "recall": prdc["recall"],
        "density": prdc["density"],
        "coverage": prdc["coverage"],
        "kid": kid,
        **network_metrics,
        "n_real": len(real_files),
        "n_synthetic": len(synthetic_files),
    }
    if memorisation:
        metrics["n_train"] = memorisation["n_train"]
        metrics["n_memorised"] = int(table["memorised"].sum())
    metrics["settings"] = {
        "medsynth_version": __version__,
        "radiomics": {**settings.as_dict(), "cache_dir": str(cache_dir)},
        "frd_transform": "ln(1 + d^2)" if settings.frd_version == "v1" else "d^2",
        "n_features": len(real_table.names),
        "n_features_standardised": len(space.names),
        "z_clip": float(cfg.radiomics.z_clip),
        "prdc_nearest_k": prdc["nearest_k"],
        "kid": _kid_args(cfg),
        "ms_ssim_real": ms_real_used,
        "ms_ssim_synthetic": ms_syn_used,
        "intensity_percentiles": [float(p) for p in pct],
        "grid": [int(s) for s in grid],
        "resampled_to_grid": moved_real + moved_syn,
        "memorisation_threshold": memorisation.get("threshold"),
        "feature_extractor": extractor_note or OmegaConf.to_container(cfg.feature_extractor),
        "seed": int(cfg.seed),
        "seconds": round(time.perf_counter() - started, 2),
    }
    _check_finite(metrics)
    result = EvaluationResult(metrics=metrics, per_image=table, nearest_neighbours=neighbours, notes=notes)
    if train_raw is not None:
        pairs = ("train", "train_nn_similarity", train_unit, train_index, [f.name for f in train_files])
    else:
        pairs = ("real", "nn_real_similarity", real_unit, real_index, [f.name for f in real_files])
    _write(result, out_dir, cfg, space, synthetic_unit, pairs)
    return result


def _kid_args(cfg: DictConfig) -> dict:
    k = cfg.kid
    return {
        "degree": int(k.degree),
        "coef0": float(k.coef0),
        "subset_size": int(k.subset_size),
        "num_subsets": int(k.num_subsets),
    }


def _network_metrics(cfg, real_raw, synthetic_raw, device) -> tuple[dict, str | None]:
    weights = cfg.feature_extractor.weights
    if not weights:
        return {}, "fid3d/kid3d skipped: no feature_extractor.weights (a local MedicalNet .pth) was given"
    from medsynth.metrics.feature_extractor import build_medicalnet_resnet, resnet_features

    network = build_medicalnet_resnet(str(cfg.feature_extractor.arch), str(weights)).to(device)
    shape = cfg.feature_extractor.input_shape
    shape = None if shape is None else [int(s) for s in shape]
    if shape is None and len({v.shape for v in [*real_raw, *synthetic_raw]}) > 1:
        shape = list(synthetic_raw[0].shape)  # one batch shape for the network
    args = dict(input_shape=shape, batch_size=int(cfg.feature_extractor.batch_size), device=device)
    real = resnet_features(network, real_raw, **args)
    synthetic = resnet_features(network, synthetic_raw, **args)
    return {
        "fid3d": set_metrics.frechet_distance_of_features(real, synthetic),
        "kid3d": set_metrics.kernel_inception_distance(real, synthetic, seed=int(cfg.seed), **_kid_args(cfg)),
    }, None


def _check_finite(value, key: str = "metrics") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise FloatingPointError(f"{key} is not finite ({value})")


def _write(result, out_dir, cfg, space, synthetic_unit, pairs) -> None:
    from medsynth.metrics import figures

    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    written = []
    if cfg.figures:
        fig_dir = out_dir / "figures"
        fig_dir.mkdir(exist_ok=True)
        remove_stale_temporaries(fig_dir)
        written.append(figures.pca_embedding(space.real, space.synthetic, fig_dir / "pca_embedding.png"))
        written.append(
            figures.distance_histogram(
                per_image.feature_distance_to_real(space.real),
                result.per_image["feature_distance"].to_numpy(),
                fig_dir / "feature_distance_histogram.png",
            )
        )
        if int(cfg.per_image.nn_pairs_in_figure) > 0:
            written.append(_pairs_figure(result, cfg, pairs, synthetic_unit, fig_dir))
    table_path = out_dir / "per_image.csv"
    with atomic_path(table_path) as tmp:
        result.per_image.to_csv(tmp, index=False, float_format="%.6g")
    neighbours_path = out_dir / "nearest_neighbours.csv"
    with atomic_path(neighbours_path) as tmp:
        result.nearest_neighbours.to_csv(tmp, index=False)
    metrics_path = atomic_write_text(
        out_dir / "metrics.json", json.dumps(result.metrics, indent=2, allow_nan=False) + "\n"
    )
    result.files = [metrics_path, table_path, neighbours_path, *written]


def _pairs_figure(result, cfg, pairs, synthetic_unit, fig_dir: Path) -> Path:
    """The synthetic volumes closest to a training scan (or, without train_dir, to a real scan)."""
    from medsynth.metrics import figures

    label, column, reference, index, reference_names = pairs
    table = result.per_image
    order = np.argsort(-table[column].to_numpy())[: int(cfg.per_image.nn_pairs_in_figure)]
    return figures.nearest_neighbour_pairs(
        [synthetic_unit[i] for i in order],
        [reference[index[i]] for i in order],
        [f"{table['case_id'][i]} (r={table[column][i]:.3f})" for i in order],
        [f"nearest {label}: {reference_names[index[i]]}" for i in order],
        fig_dir / "nearest_neighbours.png",
    )
