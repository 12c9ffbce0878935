"""What a ``medsynth sample`` run will make: one :class:`SampleSpec` per output file.

The plan is fixed before anything is generated: file name, seed, class label and covariates of
every sample, and a *settings key* (a hash of everything that determines its voxels and its
stored form). The key is written into each NIfTI header, so a rerun skips exactly the files that
were finished with the same settings and refuses to mix settings in one folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsynth.errors import ConfigError, InputFileError
from medsynth.models.bundle import SamplingBundle
from medsynth.sampling.generate import sample_seed

FILE_PATTERN = "sample_{index:05d}.nii.gz"


@dataclass
class GenerationSettings:
    """Settings shared by every sample of a run (the ``conf/sample.yaml`` values that matter)."""

    sampler: str
    steps: int | None
    eta: float
    grid: str
    guidance_scale: float
    precision: str
    intensity: str
    dtype: str
    base_seed: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SampleSpec:
    """One output file: index in the run, per-sample generator seed, conditions."""

    index: int
    file: str
    seed: int
    label_index: int | None = None
    label_value: str | None = None
    covariates: dict[str, float] = field(default_factory=dict)
    mask: str | None = None  # mask-conditioned model: the given label map (path) this sample is made for
    mask_sha256: str | None = None
    key: str = ""


def class_index(bundle: SamplingBundle, value: object) -> int:
    """Class index of a label value as written in the training manifest (ConfigError if unknown)."""
    spec = bundle.conditioning
    if spec.num_classes == 0:
        raise ConfigError("label", f"got label {value!r} but the model was trained without class labels")
    names = [str(n) for n in spec.class_names] or [str(i) for i in range(spec.num_classes)]
    text = str(value)
    if text in names:
        return names.index(text)
    try:  # 1.0 vs "1", or a float-typed manifest column
        as_float = float(text)
        for i, name in enumerate(names):
            try:
                if float(name) == as_float:
                    return i
            except ValueError:
                continue
    except ValueError:
        pass
    key = spec.label_key or "label"
    raise ConfigError(
        "label", f"{value!r} is not a {key} value the model was trained with ({', '.join(names)})"
    )


def resolve_labels(
    bundle: SamplingBundle, num_samples: int | None, label: object, labels: Mapping | None
) -> tuple[int, list[int] | None]:
    """(number of samples, per-sample class indices or None).

    ``labels={value: count, ...}`` sets the per-class counts (their sum replaces ``num_samples``);
    ``label=value`` gives every sample one class; neither on a class-conditional model spreads the
    samples evenly over the classes (sample i gets class i mod K).
    """
    spec = bundle.conditioning
    if labels is not None and label is not None:
        raise ConfigError("labels", "give either label=VALUE or labels={VALUE: COUNT, ...}, not both")
    if labels is not None:
        if not isinstance(labels, Mapping) or not labels:
            raise ConfigError("labels", "expected per-class counts such as labels={0:50,1:50}")
        indices: list[int] = []
        for value, count in labels.items():
            if not isinstance(count, int) or count < 0:
                raise ConfigError(
                    "labels", f"count for {value!r} must be a non-negative integer, got {count!r}"
                )
            indices += [class_index(bundle, value)] * count
        if not indices:
            raise ConfigError("labels", "the per-class counts add up to 0 samples")
        return len(indices), indices  # the counts replace num_samples
    if num_samples is None or int(num_samples) < 1:
        raise ConfigError("num_samples", f"must be a positive integer, got {num_samples!r}")
    n = int(num_samples)
    if label is not None:
        return n, [class_index(bundle, label)] * n
    if spec.num_classes > 0:
        return n, [i % spec.num_classes for i in range(n)]
    return n, None


def resolve_covariates(bundle: SamplingBundle, n: int, covariates: Mapping | None) -> np.ndarray | None:
    """(N, K) float32 covariate values in the model's key order, from ``covariates={key: value or [N values]}``."""
    keys = list(bundle.conditioning.covariate_keys)
    if covariates is None or len(covariates) == 0:
        if keys:
            raise ConfigError(
                "covariates",
                f"the model needs values for {', '.join(keys)} (e.g. covariates={{{keys[0]}:60}})",
            )
        return None
    if not keys:
        raise ConfigError("covariates", "the model was trained without covariates")
    unknown = [k for k in covariates if str(k) not in keys]
    missing = [k for k in keys if k not in {str(c) for c in covariates}]
    if unknown or missing:
        what = f"unknown covariate {unknown[0]!r}" if unknown else f"missing covariate {missing[0]!r}"
        raise ConfigError("covariates", f"{what} (the model was trained with {', '.join(keys)})")
    by_name = {str(k): v for k, v in covariates.items()}
    columns = []
    for key in keys:
        value = by_name[key]
        column = np.asarray(
            list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value] * n
        )
        try:
            column = column.astype(np.float32)
        except ValueError:
            raise ConfigError("covariates", f"{key}: values must be numbers, got {value!r}") from None
        if column.shape != (n,):
            raise ConfigError("covariates", f"{key}: expected one value or {n} values, got {column.shape[0]}")
        columns.append(column)
    return np.stack(columns, axis=1)


def settings_key(bundle: SamplingBundle, settings: GenerationSettings, spec: SampleSpec) -> str:
    """16-hex hash of everything that determines sample ``spec``'s stored voxels."""
    payload = {
        "checkpoint_sha256": bundle.checkpoint_sha256,
        "used_ema": bundle.used_ema,
        "settings": {k: v for k, v in settings.as_dict().items() if k != "base_seed"},
        "seed": spec.seed,
        "label": spec.label_index,
        "covariates": spec.covariates,
    }
    if spec.mask_sha256 is not None:  # a mask-conditioned sample also depends on its label map's voxels
        payload["mask_sha256"] = spec.mask_sha256
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def mask_files(masks_dir: str | Path) -> list[Path]:
    """The label maps of ``masks_dir`` (``*.nii.gz`` and ``*.nii``, sorted by name; sample i gets the i-th)."""
    folder = Path(masks_dir)
    if not folder.is_dir():
        raise InputFileError(folder, "masks_dir is not a folder" if folder.exists() else "masks_dir not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith((".nii.gz", ".nii")))
    if not files:
        raise InputFileError(folder, "masks_dir holds no label maps (*.nii.gz or *.nii)")
    return files


def load_mask(path: str | Path, bundle: SamplingBundle) -> np.ndarray:
    """A given label map as (D, H, W) uint8; InputFileError (one line, naming the file) unless it lies
    on the checkpoint's grid (shape and affine) with values in 0..K-1 (K: the checkpoint's classes)."""
    from medsynth.data.label_maps import check_label_values
    from medsynth.data.validation import load_checked_volume

    volume = load_checked_volume(path)
    geometry = bundle.geometry
    if tuple(volume.array.shape) != tuple(geometry.shape):
        raise InputFileError(
            path, f"label map shape {list(volume.array.shape)} is not the checkpoint's grid {list(geometry.shape)}"
        )
    if not np.allclose(volume.affine, geometry.affine, atol=1e-3):
        raise InputFileError(path, "label map affine differs from the checkpoint's (resample it onto the training grid)")
    return check_label_values(volume, geometry.label_classes, key="the checkpoint's data.label_map_classes")


def build_plan(
    bundle: SamplingBundle,
    settings: GenerationSettings,
    num_samples: int | None,
    label: object = None,
    labels: Mapping | None = None,
    covariates: Mapping | None = None,
    masks_dir: str | Path | None = None,
) -> tuple[list[SampleSpec], np.ndarray | None]:
    """Every sample of the run, in index order, plus the (N, K) covariate array (or None).

    With ``masks_dir`` (mask-conditioned models) sample i is made for the i-th label map there,
    every map is checked first, and their number replaces ``num_samples``.
    """
    masks = None
    if masks_dir is not None:
        if not bundle.geometry.mask_conditioned:
            raise ConfigError(
                "masks_dir", "the checkpoint was not trained with label maps as conditioning (data.label_map_mode=condition)"
            )
        masks = mask_files(masks_dir)
        num_samples = len(masks)
    elif bundle.geometry.mask_conditioned:
        raise ConfigError("masks_dir", "the checkpoint is mask-conditioned: give a folder of label maps (masks_dir=DIR)")
    n, label_indices = resolve_labels(bundle, num_samples, label, labels)
    if masks is not None and n != len(masks):
        raise ConfigError("labels", f"per-class counts give {n} samples but masks_dir holds {len(masks)} label maps")
    cov = resolve_covariates(bundle, n, covariates)
    names = [str(x) for x in bundle.conditioning.class_names]
    specs = []
    for i in range(n):
        spec = SampleSpec(index=i, file=FILE_PATTERN.format(index=i), seed=sample_seed(settings.base_seed, i))
        if label_indices is not None:
            spec.label_index = label_indices[i]
            spec.label_value = names[spec.label_index] if names else str(spec.label_index)
        if cov is not None:
            spec.covariates = {k: float(cov[i, j]) for j, k in enumerate(bundle.conditioning.covariate_keys)}
        if masks is not None:
            spec.mask = str(masks[i])
            spec.mask_sha256 = hashlib.sha256(np.ascontiguousarray(load_mask(masks[i], bundle)).tobytes()).hexdigest()
        spec.key = settings_key(bundle, settings, spec)
        specs.append(spec)
    return specs, cov
