"""The ``medsynth evaluate`` pipeline: real set vs synthetic set -> metrics.json, per_image.csv,
nearest_neighbours.csv, feature_shifts.csv, figures/*.png (every file written atomically, all at the end)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from medsynth import __version__
from medsynth.config import require
from medsynth.data.prepare import prepare_like
from medsynth.errors import ConfigError, InputFileError
from medsynth.io.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from medsynth.io.fingerprint import (
    PREPROCESSING_FILE,
    FingerprintError,
    read_fingerprint,
    require_same_fingerprint,
)
from medsynth.io.metrics_schema import SCHEMA, MetricEntry
from medsynth.metrics import feature_shifts, per_image, set_metrics
from medsynth.metrics.radiomics_features import RadiomicsSettings, default_cache_dir, extract_features
from medsynth.metrics.uncertainty import bootstrap_intervals, split_halves
from medsynth.metrics.volume_folder import case_ids, list_volume_files, load_volumes, model_to_unit
from medsynth.models.precision import resolve_device

#: set-level metrics every metrics.json holds (fid3d/kid3d are added when a feature extractor is set)
SET_KEYS = (
    "frd", "frd_paper", "frd_d2", "mmd", "kid", "precision", "recall", "density", "coverage",
    "ms_ssim_real", "ms_ssim_synthetic",
)  # fmt: skip
#: direction of each metric: "lower" | "higher" | ("target", value or the metric whose value is the target)
DIRECTIONS: dict[str, str | tuple[str, float | str]] = {
    "frd": "lower", "frd_paper": "lower", "frd_d2": "lower", "mmd": "lower", "kid": "lower",
    "fid3d": "lower", "kid3d": "lower", "precision": "higher", "recall": "higher", "coverage": "higher",
    "density": ("target", 1.0), "ms_ssim_real": ("target", "ms_ssim_real"),
    "ms_ssim_synthetic": ("target", "ms_ssim_real"),
}  # fmt: skip


@dataclass
class EvaluationResult:
    """What ``evaluate`` computed: ``metrics`` (the metrics.json dict), ``per_image`` (DataFrame),
    ``nearest_neighbours`` (DataFrame of names), ``feature_shifts`` (DataFrame, see
    :mod:`medsynth.metrics.feature_shifts`), ``notes`` (lines for the user), ``files`` written."""

    metrics: dict
    per_image: pd.DataFrame
    nearest_neighbours: pd.DataFrame
    feature_shifts: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


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


@dataclass
class EvaluationSets:
    """The folders evaluated (after ``prepare_inputs``), their files and the shared fingerprint."""

    real_files: list[Path]
    synthetic_files: list[Path]
    train_files: list[Path] | None
    fingerprint: dict
    prepared: dict[str, str] = field(default_factory=dict)


def resolve_inputs(cfg: DictConfig, out_dir: Path) -> EvaluationSets:
    """Check that real, synthetic (and train) sets share one preprocessing fingerprint.

    The synthetic set is the reference (``medsynth sample`` writes the model's fingerprint). With
    ``prepare_inputs=true`` a real or train folder *without* a fingerprint (raw scans) is first
    prepared with the reference fingerprint into ``out_dir/prepared_inputs/<set>`` (reruns reuse
    it); a folder with a *different* fingerprint is always refused.

    Raises:
        FingerprintError / ConfigError: one line naming the set and the field or reason.
    """
    synthetic_dir = Path(str(require(cfg, "synthetic_dir"))).expanduser()
    folders = {"synthetic_dir": synthetic_dir, "real_dir": Path(str(require(cfg, "real_dir"))).expanduser()}
    if cfg.train_dir:
        folders["train_dir"] = Path(str(cfg.train_dir)).expanduser()
    files = {
        key: list_volume_files(folder, key, minimum=1 if key == "train_dir" else 3)
        for key, folder in folders.items()
    }
    reference = read_fingerprint(synthetic_dir, "synthetic_dir")
    if reference is None:
        raise FingerprintError(
            f"synthetic_dir: {synthetic_dir} has no {PREPROCESSING_FILE} (no preprocessing fingerprint: "
            "write it with medsynth sample intensity=model, or prepare the folder with medsynth data prepare)"
        )
    prepared: dict[str, str] = {}
    hint = "" if cfg.prepare_inputs else " (prepare_inputs=true prepares raw scans like synthetic_dir)"
    for key in [k for k in folders if k != "synthetic_dir"]:
        if cfg.prepare_inputs and read_fingerprint(folders[key], key) is None:
            target = out_dir / "prepared_inputs" / key.removesuffix("_dir")
            workers, progress = int(cfg.num_workers), bool(cfg.progress)
            folders[key] = prepare_like(folders[key], target, reference, workers, progress)
            files[key] = list_volume_files(folders[key], key, minimum=1)
            prepared[key] = str(folders[key])
        require_same_fingerprint({"synthetic_dir": synthetic_dir, key: folders[key]}, hint=hint)
    return EvaluationSets(
        real_files=files["real_dir"],
        synthetic_files=files["synthetic_dir"],
        train_files=files.get("train_dir"),
        fingerprint=reference,
        prepared=prepared,
    )


def load_set(files: Sequence[Path], fingerprint: dict) -> list[np.ndarray]:
    """Checked volumes (X, Y, Z) float32 of one set; each must have the fingerprint's grid shape."""
    shape = [int(s) for s in fingerprint["shape"]]
    volumes = load_volumes(files)
    for path, volume in zip(files, volumes, strict=True):
        if list(volume.shape) != shape:
            raise InputFileError(
                path, f"shape {list(volume.shape)} differs from the set's preprocessing fingerprint {shape}"
            )
    return volumes


def featurise(files: Sequence[Path], cfg: DictConfig, description: str):
    """Radiomics features of one set, one file at a time (cached by file hash and settings)."""
    settings = radiomics_settings(cfg)
    cache_dir = Path(str(cfg.radiomics.cache_dir)) if cfg.radiomics.cache_dir else default_cache_dir()
    return extract_features(
        files,
        settings,
        cache_dir=cache_dir,
        num_workers=int(cfg.num_workers),
        progress=bool(cfg.progress),
        description=description,
    )


def feature_metric_values(
    real: np.ndarray, synthetic: np.ndarray, names: Sequence[str], cfg: DictConfig, exact: bool = False
) -> dict[str, float | None]:
    """frd, frd_paper, frd_d2, mmd, kid, precision, recall, density, coverage from raw radiomics
    features (N_real, F), (N_syn, F) (``exact``: FRD via frd-score's own sqrtm, as its API)."""
    version = str(cfg.radiomics.frd_version)
    values: dict[str, float | None] = set_metrics.frd_family(
        set_metrics.radiomics_frechet_d2(real, synthetic, version, exact=exact), version
    )
    space = set_metrics.FeatureSpace.standardise(real, synthetic, names, z_clip=float(cfg.radiomics.z_clip))
    values["mmd"] = set_metrics.maximum_mean_discrepancy(space.real, space.synthetic)
    values["kid"] = set_metrics.kernel_inception_distance(
        space.real, space.synthetic, seed=int(cfg.seed), **_kid_args(cfg)
    )
    prdc = set_metrics.precision_recall_density_coverage(space.real, space.synthetic, int(cfg.prdc.nearest_k))
    values |= {key: prdc[key] for key in ("precision", "recall", "density", "coverage")}
    return values


def network_metric_values(
    real: np.ndarray, synthetic: np.ndarray, cfg: DictConfig, exact: bool = False
) -> dict:
    """fid3d (MONAI FIDMetric when ``exact``, else the equivalent sample form) and kid3d."""
    fid = (
        set_metrics.frechet_distance_of_features(real, synthetic)
        if exact
        else set_metrics.frechet_distance_from_samples(real, synthetic)
    )
    kid = set_metrics.kernel_inception_distance(real, synthetic, seed=int(cfg.seed), **_kid_args(cfg))
    return {"fid3d": fid, "kid3d": kid}


def set_metric_entries(
    real_table, synthetic_table, real_pairs, synthetic_pairs, network, cfg: DictConfig
) -> tuple[dict[str, MetricEntry], dict]:
    """Every set-level metric with its direction, target, bootstrap CI and split-half floor.

    Args:
        real_table, synthetic_table: radiomics :class:`FeatureTable` of each set.
        real_pairs, synthetic_pairs: (pairs (P, 2), MS-SSIM scores (P,)) within each set.
        network: (real (N, C), synthetic (M, C)) 3D-ResNet features, or None.

    Returns:
        ({name: MetricEntry}, record of how CI and floor were computed)
    """
    names = real_table.names
    real, synthetic = real_table.values, synthetic_table.values

    def values(ri: np.ndarray | None, si: np.ndarray | None, exact: bool = False) -> dict:
        r = real if ri is None else real[ri]
        s = synthetic if si is None else synthetic[si]
        out = feature_metric_values(r, s, names, cfg, exact=exact)
        out["ms_ssim_real"] = set_metrics.pair_mean(*real_pairs, ri)
        out["ms_ssim_synthetic"] = set_metrics.pair_mean(*synthetic_pairs, si)
        if network is not None:
            net_real = network[0] if ri is None else network[0][ri]
            net_synthetic = network[1] if si is None else network[1][si]
            out |= network_metric_values(net_real, net_synthetic, cfg, exact)
        return out

    point = values(None, None, exact=bool(cfg.radiomics.frd_exact))
    ci = bootstrap_intervals(
        values, len(real), len(synthetic), int(cfg.ci.n_resamples), float(cfg.ci.level), int(cfg.seed)
    )
    half_a, half_b = split_halves(len(real), int(cfg.seed))
    floor: dict[str, float | None] = {}
    if min(len(half_a), len(half_b)) >= 2:
        floor = feature_metric_values(real[half_a], real[half_b], names, cfg)
        floor["ms_ssim_real"] = set_metrics.pair_mean(*real_pairs, half_a)
        floor["ms_ssim_synthetic"] = set_metrics.pair_mean(*real_pairs, half_b)
        if network is not None:
            floor |= network_metric_values(network[0][half_a], network[0][half_b], cfg)
    entries = {}
    for name, value in point.items():
        direction = DIRECTIONS[name]
        better, target = (direction, None) if isinstance(direction, str) else direction
        if isinstance(target, str):
            target = point[target]
        entries[name] = MetricEntry(
            value=None if value is None else float(value),
            better=better,
            target=None if target is None else float(target),
            ci=None if ci.get(name) is None else tuple(ci[name]),
            floor=floor.get(name),
        )
    record = {
        "ci": {"method": "percentile bootstrap over volumes (real and synthetic resampled)",
               "n_resamples": int(cfg.ci.n_resamples), "level": float(cfg.ci.level)},
        "floor": {"method": "same metric between two disjoint random halves of the real set",
                  "sizes": [len(half_a), len(half_b)]},
    }  # fmt: skip
    return entries, record


def evaluate(cfg: DictConfig) -> EvaluationResult:
    """Run every metric of ``conf/evaluate.yaml`` and write the outputs to ``cfg.out_dir``."""
    started = time.perf_counter()
    out_dir = Path(str(require(cfg, "out_dir"))).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out_dir", f"{out_dir} exists and is not a folder")
    settings = radiomics_settings(cfg)
    device = resolve_device(str(cfg.device))
    notes: list[str] = []

    # 1. one preprocessing space for every set (or refuse), then read and check every volume
    sets = resolve_inputs(cfg, out_dir)
    real_files, synthetic_files, train_files = sets.real_files, sets.synthetic_files, sets.train_files
    real_raw = load_set(real_files, sets.fingerprint)
    synthetic_raw = load_set(synthetic_files, sets.fingerprint)
    train_raw = load_set(train_files, sets.fingerprint) if train_files else None

    # 2. per-file features: radiomics (cached by file hash + settings), optional network features
    real_table = featurise(real_files, cfg, "radiomics (real)")
    synthetic_table = featurise(synthetic_files, cfg, "radiomics (synthetic)")
    if real_table.names != synthetic_table.names:
        raise ConfigError("radiomics", "real and synthetic volumes gave different radiomics feature names")
    network, extractor_note = _network_features(cfg, real_raw, synthetic_raw, device)
    if extractor_note:
        notes.append(extractor_note)

    # 3. image space: the model's intensity range mapped to [0, 1], one foreground mask for all
    low, high = float(cfg.intensity.low), float(cfg.intensity.high)
    real_unit = [model_to_unit(v, low, high) for v in real_raw]
    synthetic_unit = [model_to_unit(v, low, high) for v in synthetic_raw]
    mask = per_image.shared_foreground_mask(
        real_unit, float(cfg.per_image.foreground_threshold), float(cfg.per_image.mask_min_fraction)
    )
    ms_args = dict(
        kernel_size=int(cfg.ms_ssim.kernel_size),
        weights=list(cfg.ms_ssim.weights),
        max_pairs=int(cfg.ms_ssim.max_pairs),
        batch_size=int(cfg.ms_ssim.batch_size),
        seed=int(cfg.seed),
        device=device,
        kernel_sigma=float(cfg.ms_ssim.kernel_sigma),
    )
    real_pairs = set_metrics.ms_ssim_pairs(real_unit, **ms_args)
    synthetic_pairs = set_metrics.ms_ssim_pairs(synthetic_unit, **ms_args)

    # 4. set level: value, direction, target, bootstrap CI, real-vs-real floor
    entries, uncertainty = set_metric_entries(
        real_table, synthetic_table, real_pairs[:2], synthetic_pairs[:2], network, cfg
    )
    shifts = feature_shifts.feature_shifts(real_table.values, synthetic_table.values, real_table.names)
    notes.append(feature_shifts.summary_line(shifts))
    space = set_metrics.FeatureSpace.standardise(
        real_table.values, synthetic_table.values, real_table.names, z_clip=float(cfg.radiomics.z_clip)
    )

    # 5. per image, inside the shared mask
    names = case_ids(synthetic_files)
    bins = int(cfg.per_image.histogram_bins)
    real_histogram = np.mean([per_image.intensity_histogram(v, bins, mask) for v in real_unit], axis=0)
    real_similarity, real_index = per_image.nearest_neighbour_correlation(
        synthetic_unit, real_unit, mask=mask
    )
    table = pd.DataFrame(
        {
            "case_id": names,
            "feature_distance": per_image.feature_distance_to_real(space.synthetic),
            "nn_real_feature_distance": per_image.nearest_real_feature_distance(space.synthetic, space.real),
            "nn_real_similarity": real_similarity,
            "histogram_distance": [
                per_image.histogram_distance(v, real_histogram, mask) for v in synthetic_unit
            ],
            "slice_consistency": [per_image.slice_consistency(v, mask) for v in synthetic_unit],
        }
    )
    neighbours = pd.DataFrame({"case_id": names, "nearest_real": [real_files[i].name for i in real_index]})
    memorisation: dict = {}
    train_unit: list[np.ndarray] = []
    if train_raw is not None:
        m = cfg.memorisation
        train_unit = [model_to_unit(v, low, high) for v in train_raw]
        shift = None if m.max_shift is None else int(m.max_shift)
        threshold, memorisation = per_image.memorisation_threshold(
            train_unit,
            quantile=float(m.quantile),
            distance_ratio=float(m.distance_ratio),
            min_similarity=float(m.min_similarity),
            mask=mask,
            max_shift=shift,
        )
        train_similarity, train_index = per_image.nearest_neighbour_correlation(
            synthetic_unit, train_unit, mask=mask, max_shift=shift
        )
        table["train_nn_similarity"] = train_similarity
        table["nearest_train"] = [train_files[i].name for i in train_index]
        table["memorised"] = (train_similarity > threshold).astype(int)
        neighbours["nearest_train"] = table["nearest_train"]
        memorisation |= {"threshold": threshold, "n_memorised": int(table["memorised"].sum())}
        if memorisation["n_memorised"]:
            notes.append(
                f"memorisation: {memorisation['n_memorised']} synthetic volume(s) correlate > {threshold:.4f} "
                "with a training scan (flips and 1-voxel shifts included)"
            )

    metrics = {
        "schema": SCHEMA,
        "metrics": {name: entry.as_dict() for name, entry in entries.items()},
        "settings": {
            "medsynth_version": __version__,
            "n_real": len(real_files),
            "n_synthetic": len(synthetic_files),
            "n_train": len(train_files) if train_files else None,
            "fingerprint": sets.fingerprint,
            "prepared_inputs": sets.prepared,
            "radiomics": {
                **settings.as_dict(), "frd_score": _frd_score_version(), "n_features": len(real_table.names)
            },
            "frd_definitions": {"frd": "frd-score's value: ln(d^2) (v1) / d^2 (v0)", "frd_paper": "ln(d)",
                                "frd_d2": "d^2, squared Frechet distance"},
            **uncertainty,
            "z_clip": float(cfg.radiomics.z_clip),
            "kid": _kid_args(cfg),
            "ms_ssim_real": real_pairs[2],
            "ms_ssim_synthetic": synthetic_pairs[2],
            "intensity_range": [low, high],
            "foreground_mask_voxels": int(mask.sum()),
            "memorisation": memorisation or None,
            "feature_extractor": extractor_note or OmegaConf.to_container(cfg.feature_extractor),
            "seed": int(cfg.seed),
            "seconds": round(time.perf_counter() - started, 2),
        },
    }  # fmt: skip
    _check_finite(metrics)
    result = EvaluationResult(
        metrics=metrics, per_image=table, nearest_neighbours=neighbours, feature_shifts=shifts, notes=notes
    )
    if train_raw is not None:
        pairs = ("train", "train_nn_similarity", train_unit, train_index, [f.name for f in train_files])
    else:
        pairs = ("real", "nn_real_similarity", real_unit, real_index, [f.name for f in real_files])
    _write(result, out_dir, cfg, space, synthetic_unit, pairs)
    return result


def _frd_score_version() -> str:
    import frd_score

    return str(frd_score.__version__)


def _kid_args(cfg: DictConfig) -> dict:
    k = cfg.kid
    return {
        "degree": int(k.degree),
        "coef0": float(k.coef0),
        "subset_size": int(k.subset_size),
        "num_subsets": int(k.num_subsets),
    }


def _network_features(cfg, real_raw, synthetic_raw, device) -> tuple[tuple | None, str | None]:
    """(real (N, C), synthetic (M, C)) MedicalNet-style 3D ResNet features, or (None, why skipped)."""
    weights = cfg.feature_extractor.weights
    if not weights:
        return None, "fid3d/kid3d skipped: no feature_extractor.weights (a local MedicalNet .pth) was given"
    from medsynth.metrics.feature_extractor import build_medicalnet_resnet, resnet_features

    network = build_medicalnet_resnet(str(cfg.feature_extractor.arch), str(weights)).to(device)
    shape = cfg.feature_extractor.input_shape
    shape = None if shape is None else [int(s) for s in shape]
    args = dict(input_shape=shape, batch_size=int(cfg.feature_extractor.batch_size), device=device)
    return (resnet_features(network, real_raw, **args), resnet_features(network, synthetic_raw, **args)), None


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
    shifts_path = out_dir / "feature_shifts.csv"
    with atomic_path(shifts_path) as tmp:
        result.feature_shifts.to_csv(tmp, index=False, float_format="%.6g")
    metrics_path = atomic_write_text(
        out_dir / "metrics.json", json.dumps(result.metrics, indent=2, allow_nan=False) + "\n"
    )
    result.files = [metrics_path, table_path, neighbours_path, shifts_path, *written]


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
