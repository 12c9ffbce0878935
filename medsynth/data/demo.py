"""``medsynth data demo``: write an embedded demo dataset (phantom or brain) with its manifest.

Output: ``out_dir/<subject_prefix>_<i:04d>.nii.gz`` (prefix: the dataset name by default) (float32, RAS affine in mm, raw intensities) and
``out_dir/manifest.csv`` with ``file`` (relative), ``subject_id``, then labels and per-subject
parameters (phantom: integer ``lesion``; brain: categorical ``group`` and float ``age``).
With ``label_maps: true`` each subject also gets ``out_dir/labels/<subject_id>.nii.gz`` (uint8, same
affine; phantom: background/skull/brain/ventricles/lesion, brain: background/CSF/GM/WM) and the
manifest a column ``label`` naming it. They sit in a sub-folder so that folder readers that take
every volume directly inside ``out_dir`` (evaluate, study) never mistake a label map for a scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from medsynth.data.label_maps import LABEL_DIR
from medsynth.data.progress import progress_bar
from medsynth.data.writing import write_label_nifti, write_nifti
from medsynth.errors import ConfigError
from medsynth.io.atomic import atomic_write_text, remove_stale_temporaries

DATASETS = ("phantom", "brain")

#: manifest column naming each subject's label map (the default ``label_map.column`` of ``data prepare``)
LABEL_COLUMN = "label"

#: one subject: rng -> (volume (X, Y, Z), label (X, Y, Z) uint8, affine (4, 4), manifest columns)
SubjectMaker = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray, dict]]


def _shape(cfg: DictConfig) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in cfg.shape)
    except (TypeError, ValueError):
        raise ConfigError("shape", f"expected [X,Y,Z] positive integers, got {cfg.shape}") from None
    if len(shape) != 3 or min(shape) < 4:
        raise ConfigError("shape", f"expected 3 sizes of at least 4 voxels, got {list(shape)}")
    return shape


def phantom_maker(cfg: DictConfig, shape: tuple[int, int, int]) -> SubjectMaker:
    """Subject factory for the procedural phantom (medsynth.data.phantom)."""
    from medsynth.data.phantom import PhantomRanges, make_phantom_pair

    ranges = PhantomRanges(lesion_probability=float(cfg.phantom.lesion_probability))
    fov = tuple(float(f) for f in cfg.phantom.fov_mm)

    def make(rng: np.random.Generator):
        volume, label, affine, params = make_phantom_pair(shape, rng, ranges, fov)
        columns = params.as_dict()
        lesion = int(columns.pop("has_lesion"))
        return volume, label, affine, {"lesion": lesion, **columns}

    return make


def brain_maker(cfg: DictConfig, shape: tuple[int, int, int]) -> SubjectMaker:
    """Subject factory for the MNI152 brain population (medsynth.data.brain)."""
    from medsynth.data.brain import make_brain_pair, smoothed_template

    brain = cfg.brain
    if len(brain.groups) != len(brain.group_probabilities):
        raise ConfigError("brain.group_probabilities", "needs one probability per entry of brain.groups")
    smoothed_template(tuple(float(f) / s for f, s in zip(brain.fov_mm, shape, strict=True)))  # fail early

    def make(rng: np.random.Generator):
        volume, label, affine, params = make_brain_pair(shape, rng, brain)
        return volume, label, affine, params.as_dict()

    return make


def build_demo(cfg: DictConfig, progress: bool = True) -> pd.DataFrame:
    """Write the demo dataset described by ``cfg`` (conf/data_demo.yaml); return its manifest."""
    dataset = str(cfg.dataset)
    if dataset not in DATASETS:
        raise ConfigError("dataset", f"unknown demo dataset '{dataset}' (choose from {', '.join(DATASETS)})")
    n = int(cfg.n)
    if n < 1:
        raise ConfigError("n", f"must be at least 1, got {n}")
    shape = _shape(cfg)
    seed = int(cfg.seed)
    prefix = str(cfg.get("subject_prefix") or dataset)
    if not prefix or any(not (c.isalnum() or c in "-_") for c in prefix):
        raise ConfigError("subject_prefix", f"use letters, digits, '-' or '_' only, got '{prefix}'")
    out_dir = Path(str(cfg.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    make = phantom_maker(cfg, shape) if dataset == "phantom" else brain_maker(cfg, shape)
    with_labels = bool(cfg.get("label_maps", True))
    if with_labels:
        (out_dir / LABEL_DIR).mkdir(exist_ok=True)
        remove_stale_temporaries(out_dir / LABEL_DIR)

    rows = []
    with progress_bar(progress) as bar:
        task = bar.add_task(f"demo {dataset}", total=n)
        for i in range(n):
            subject_id = f"{prefix}_{i:04d}"
            volume, label, affine, columns = make(np.random.default_rng([seed, i]))
            write_nifti(out_dir / f"{subject_id}.nii.gz", volume, affine)
            row = {"file": f"{subject_id}.nii.gz", "subject_id": subject_id, **columns}
            if with_labels:
                label_file = f"{LABEL_DIR}/{subject_id}.nii.gz"
                write_label_nifti(out_dir / label_file, label, affine)
                row[LABEL_COLUMN] = label_file
            rows.append(row)
            bar.advance(task)
    manifest = pd.DataFrame(rows)
    atomic_write_text(out_dir / "manifest.csv", manifest.to_csv(index=False))
    return manifest


def run_demo(cfg: DictConfig) -> int:
    """CLI body: build the dataset and print a one-line summary."""
    start = time.perf_counter()
    manifest = build_demo(cfg)
    seconds = time.perf_counter() - start
    print(
        f"wrote {len(manifest)} {cfg.dataset} volumes {list(cfg.shape)} + manifest.csv to {cfg.out_dir} in {seconds:.1f} s"
    )
    return 0
