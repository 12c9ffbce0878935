"""``manifest.csv`` (one row per synthetic volume, with provenance) and a MONAI/Decathlon datalist.

The datalist is what ``monai.data.load_decathlon_datalist(DIR/datalist.json, data_list_key="training")``
reads, so the folder feeds a MONAI training script as it is: every entry has ``image`` (path
relative to the folder), and for class-conditional models ``label`` (class index) plus the
label column under its manifest name; covariates appear under their names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from medsynth import __version__
from medsynth.io.atomic import atomic_path, atomic_write_text
from medsynth.models.bundle import SamplingBundle
from medsynth.sampling.export import label_file_name
from medsynth.sampling.plan import GenerationSettings, SampleSpec

MANIFEST_NAME = "manifest.csv"
DATALIST_NAME = "datalist.json"


def label_column(bundle: SamplingBundle) -> str:
    """The manifest column of the class label: the training manifest's name (e.g. ``lesion``) or ``label``."""
    return bundle.conditioning.label_key or "label"


def manifest_rows(
    bundle: SamplingBundle, settings: GenerationSettings, specs: list[SampleSpec], seconds: dict[int, float]
) -> list[dict[str, Any]]:
    """One dict per sample, columns in manifest order."""
    rows = []
    for spec in specs:
        row: dict[str, Any] = {
            "file": spec.file,
            "seed": spec.seed,
            "index": spec.index,
            "base_seed": settings.base_seed,
            "sampler": settings.sampler,
            "steps": settings.steps,
            "eta": settings.eta,
            "grid": settings.grid,
            "guidance_scale": settings.guidance_scale,
        }
        if spec.label_index is not None:
            row[label_column(bundle)] = spec.label_value
            row["label_index"] = spec.label_index
        row.update(spec.covariates)
        row.update(
            {
                "precision": settings.precision,
                "intensity": settings.intensity,
                "dtype": settings.dtype,
                "use_ema": bundle.used_ema,
                "checkpoint": bundle.checkpoint_path,
                "checkpoint_sha256": bundle.checkpoint_sha256,
                "config_hash": bundle.config_hash,
                "settings_key": spec.key,
                "seconds": seconds.get(spec.index),
            }
        )
        if bundle.geometry.label_classes:  # paired model: the uint8 label map beside the image
            row["label_file"] = label_file_name(spec.file)
        if spec.mask is not None:  # mask-conditioned: the label map it was made for
            row["mask_source"] = spec.mask
        rows.append(row)
    return rows


def write_manifest(out_dir: str | Path, rows: list[dict[str, Any]]) -> Path:
    """``out_dir/manifest.csv``, atomically."""
    path = Path(out_dir) / MANIFEST_NAME
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
    return path


def _json_value(value: Any) -> Any:
    """Label values are kept as text in the plan; numbers go into JSON as numbers."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                continue
    return value


def write_datalist(out_dir: str | Path, bundle: SamplingBundle, rows: list[dict[str, Any]]) -> Path:
    """``out_dir/datalist.json`` (Decathlon layout, every sample under ``training``), atomically."""
    keys = [label_column(bundle)] + list(bundle.conditioning.covariate_keys)
    entries = []
    for row in rows:
        entry: dict[str, Any] = {"image": row["file"]}
        if "label_index" in row:
            entry["label"] = int(row["label_index"])
        if "label_file" in row:  # paired model: the Decathlon segmentation convention (class stays under its column)
            entry["label"] = row["label_file"]
        entry.update({k: _json_value(row[k]) for k in keys if k in row and k != "label"})
        entries.append(entry)
    doc = {
        "name": "medsynth synthetic set",
        "description": f"{len(rows)} volumes sampled from {bundle.checkpoint_path}",
        "reference": f"medsynth {__version__}",
        "tensorImageSize": "3D",
        "modality": {"0": bundle.intensity.mode.upper() if bundle.intensity else "unknown"},
        "numTraining": len(entries),
        "numTest": 0,
        "training": entries,
        "test": [],
    }
    return atomic_write_text(Path(out_dir) / DATALIST_NAME, json.dumps(doc, indent=2) + "\n")
