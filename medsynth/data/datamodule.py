"""``VolumeDataModule``: training batches from a prepared dataset (``medsynth data prepare`` output).

A prepared folder holds ``preprocessing.json`` (shape, spacing, intensity mode) and
``manifest.csv`` (``file`` relative to the folder, ``subject_id``, ``intensity_low/high``, labels).
Batches are dicts: ``image`` (B, 1, D, H, W) float32 in [-1, 1], ``class_label`` (B,) long when
``label_key`` is set, ``covariates`` (B, K) float32 when ``covariate_keys`` are set.

- Split: by subject, deterministic: subjects are ordered by a hash of (split_seed, subject_id);
  the first ``val_fraction`` go to validation. Adding a subject never moves another one.
- Loading: MONAI ``CacheDataset`` (in memory), ``PersistentDataset`` (on disk) or plain ``Dataset``.
- Order: torch's ``DistributedSampler`` (the one Lightning would inject) with ``seed`` and the
  epoch, built here with the trainer's world size and rank, so each rank sees disjoint subjects.
- Exact resume: the train loader is stateful (``state_dict``/``load_state_dict``): Lightning saves
  the batches consumed in the epoch and the resumed run skips exactly those indices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, DistributedSampler

from medsynth.errors import ConfigError, InputFileError

PREPROCESSING_FILE = "preprocessing.json"
MANIFEST_FILE = "manifest.csv"
#: manifest column naming each subject's label map (``medsynth data prepare``)
LABEL_MAP_COLUMN = "label"


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can start an epoch after its first ``skip`` indices (for exact resume)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position inside the epoch is saved in Lightning checkpoints.

    ``state_dict()`` -> {"epoch", "batches"}: the sampler epoch and the batches yielded so far in
    it; ``load_state_dict`` makes the next iteration skip those batches (indices, not loaded data).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._resume_batches = 0

    def __iter__(self) -> Iterator[Any]:
        sampler = self.sampler
        start = self._resume_batches
        self._resume_batches = 0
        if start and isinstance(sampler, ResumableDistributedSampler):
            sampler.skip = start * int(self.batch_size or 1)
        self._yielded = start
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.sampler, "epoch", 0)), "batches": int(self._yielded)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_batches = int(state.get("batches", 0))
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(int(state.get("epoch", 0)))


def read_preprocessing(root: Path) -> dict[str, Any]:
    """``root/preprocessing.json`` as a dict; one-line errors for a missing or unprepared folder."""
    if not root.exists():
        raise ConfigError("data.root", f"{root} does not exist")
    if not root.is_dir():
        raise ConfigError("data.root", f"{root} is not a folder (expected a prepared dataset)")
    path = root / PREPROCESSING_FILE
    if not path.exists():
        raise ConfigError(
            "data.root",
            f"{root} has no {PREPROCESSING_FILE}: prepare it first with "
            f"`medsynth data prepare input={root} out_dir=PREPARED shape=[D,H,W]` and train on PREPARED",
        )
    try:
        info = json.loads(path.read_text())
        [int(s) for s in info["shape"]]
    except (ValueError, KeyError, TypeError) as err:
        raise InputFileError(path, f"not a valid preprocessing record ({err})") from None
    return info


def _fingerprint_or_none(record: dict[str, Any]) -> dict[str, Any] | None:
    """The preprocessing fingerprint checkpoints carry (None for records that predate it)."""
    from medsynth.io.fingerprint import fingerprint_of

    try:
        return fingerprint_of(record)
    except (KeyError, TypeError, AttributeError):
        return None


def split_subjects(subject_ids: Sequence[str], val_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """(train, val) subject sets: subjects ordered by SHA-256 of "seed:subject", first ceil(f*n) to val.

    At least one subject stays in training; ``val_fraction`` 0 gives no validation subjects.
    """
    unique = sorted(set(subject_ids))
    ordered = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_val = int(np.ceil(val_fraction * len(ordered))) if val_fraction > 0 else 0
    n_val = min(n_val, max(len(ordered) - 1, 0))
    return set(ordered[n_val:]), set(ordered[:n_val])


class VolumeDataModule(pl.LightningDataModule):
    """Batches of prepared volumes for :class:`~medsynth.models.diffusion_module.DiffusionModule`.

    Args:
        root: prepared folder (``preprocessing.json`` + ``manifest.csv`` + volumes).
        manifest: optional manifest CSV (default ``root/manifest.csv``); ``file`` paths relative to it.
        shape: expected (D, H, W); must equal the prepared shape when given.
        batch_size: volumes per batch per device.
        val_fraction, split_seed: the subject-level split.
        seed: shuffling seed of the train order (epoch e uses seed + e).
        cache: ``memory`` (CacheDataset) | ``disk`` (PersistentDataset in ``cache_dir``) | ``none``.
        num_workers: DataLoader worker processes.
        flip_prob, affine_prob, rotate_deg, scale: light augmentation (0 disables).
        label_key: manifest column of a class label (categorical; sorted values -> 0..K-1).
        covariate_keys: manifest columns of continuous covariates.
        validate_files: check every file with ``validate_volume_file`` in ``setup``.
        label_map_classes: K > 0 (or ``auto``: the classes in preprocessing.json's ``label_map``, 0 when
            the folder has none) trains a paired image + label model: each subject's label map
            (manifest column ``label``, written by ``data prepare``) joins the image as K one-hot
            channels in {-1, +1}, so ``image`` is (B, 1 + K, D, H, W) (see medsynth.models.paired).
        label_map_mode: ``joint`` (the label channels are generated with the image) or ``condition``
            (they condition the denoiser: the model makes an image for a given label map).
    """

    def __init__(
        self,
        root: str | Path,
        manifest: str | Path | None = None,
        shape: Sequence[int] | None = None,
        batch_size: int = 2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        cache: str = "memory",
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
        flip_prob: float = 0.0,
        affine_prob: float = 0.0,
        rotate_deg: float = 5.0,
        scale: float = 0.05,
        label_key: str | None = None,
        covariate_keys: Sequence[str] = (),
        validate_files: bool = True,
        label_map_classes: int | str = 0,
        label_map_mode: str = "joint",
    ):
        super().__init__()
        if cache not in ("memory", "disk", "none"):
            raise ConfigError("data.cache", f"unknown cache '{cache}' (choose from memory, disk, none)")
        if int(batch_size) < 1:
            raise ConfigError("data.batch_size", "must be >= 1")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ConfigError("data.val_fraction", "must be in [0, 1)")
        self.root = Path(root).expanduser()
        self.manifest_path = Path(manifest).expanduser() if manifest else self.root / MANIFEST_FILE
        self.expected_shape = tuple(int(s) for s in shape) if shape else None
        self.batch_size = int(batch_size)
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.seed = int(seed)
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / ".cache"
        self.num_workers = int(num_workers)
        self.flip_prob, self.affine_prob = float(flip_prob), float(affine_prob)
        self.rotate_deg, self.scale = float(rotate_deg), float(scale)
        self.label_key = label_key or None
        self.covariate_keys = [str(k) for k in covariate_keys]
        self.validate_files = bool(validate_files)
        self._label_map_setting = label_map_classes
        self.label_map_classes = 0 if str(label_map_classes) == "auto" else int(label_map_classes or 0)
        if self.label_map_classes < 0 or self.label_map_classes == 1:
            raise ConfigError(
                "data.label_map_classes", f"expected 0 (no labels), K >= 2 or auto, got {label_map_classes}"
            )
        self.label_map_mode = str(label_map_mode)
        if self.label_map_mode not in ("joint", "condition"):
            raise ConfigError("data.label_map_mode", f"expected joint or condition, got {label_map_mode}")
        self._described = False
        self.train_dataset: Any = None
        self.val_dataset: Any = None

    # ------------------------------------------------------------------ metadata (no volumes loaded)
    def describe(self) -> None:
        """Read preprocessing.json and the manifest, split subjects, build conditioning and geometry.

        Fills ``preprocessing``, ``shape``, ``geometry``, ``intensity``, ``conditioning``,
        ``covariate_mean``/``covariate_std`` and the record lists. Raises one-line errors.
        """
        if self._described:
            return
        self.preprocessing = read_preprocessing(self.root)
        self.shape = tuple(int(s) for s in self.preprocessing["shape"])
        if str(self._label_map_setting) == "auto":  # the classes data prepare recorded (0: no label maps)
            self.label_map_classes = int((self.preprocessing.get("label_map") or {}).get("num_classes") or 0)
        if self.label_map_mode == "condition" and not self.label_map_classes:
            raise ConfigError(
                "data.label_map_mode",
                f"condition needs label maps (data.label_map_classes=K or auto on a folder with them), got {self._label_map_setting}",
            )
        if self.expected_shape is not None and self.expected_shape != self.shape:
            raise ConfigError(
                "data.shape",
                f"{list(self.expected_shape)} differs from the prepared shape {list(self.shape)} in "
                f"{self.root / PREPROCESSING_FILE} (re-run medsynth data prepare with shape=... or drop data.shape)",
            )
        table = self._read_manifest()
        self.records = self._records(table)
        train_ids, val_ids = split_subjects(
            table["subject_id"].astype(str).tolist(), self.val_fraction, self.split_seed
        )
        self.train_records = [r for r in self.records if r["subject_id"] in train_ids]
        self.val_records = [r for r in self.records if r["subject_id"] in val_ids]
        self.geometry = self._geometry()
        self.intensity = self._intensity(table)
        if self.covariate_keys:
            train_cov = np.stack([r["covariates"] for r in self.train_records])
            self.covariate_mean = train_cov.mean(axis=0).astype(float).tolist()
            self.covariate_std = np.maximum(train_cov.std(axis=0), 1e-6).astype(float).tolist()
        else:
            self.covariate_mean = self.covariate_std = None
        self._described = True

    def _read_manifest(self) -> pd.DataFrame:
        if not self.manifest_path.exists():
            raise InputFileError(
                self.manifest_path, "manifest not found (a prepared folder has manifest.csv)"
            )
        try:
            table = pd.read_csv(self.manifest_path)
        except (ValueError, OSError, pd.errors.ParserError) as err:
            raise InputFileError(self.manifest_path, f"unreadable CSV ({err})") from None
        for column in ("file", "subject_id"):
            if column not in table.columns:
                raise InputFileError(self.manifest_path, f"missing column '{column}'")
        if table.empty:
            raise InputFileError(self.manifest_path, "no rows")
        for key, name in [(self.label_key, "data.label_key")] + [
            (k, "data.covariate_keys") for k in self.covariate_keys
        ]:
            if key is not None and key not in table.columns:
                raise ConfigError(
                    name, f"column '{key}' not in {self.manifest_path} (columns: {', '.join(table.columns)})"
                )
            if key is not None and table[key].isna().any():
                raise InputFileError(self.manifest_path, f"column '{key}' has empty values")
        if self.label_map_classes and (LABEL_MAP_COLUMN not in table.columns or table[LABEL_MAP_COLUMN].isna().any()):
            raise ConfigError(
                "data.label_map_classes",
                f"a paired model needs a label map per subject: column '{LABEL_MAP_COLUMN}' of "
                f"{self.manifest_path} is missing or has empty values (prepare the labels with medsynth data prepare)",
            )
        for key in self.covariate_keys:
            if not pd.api.types.is_numeric_dtype(table[key]):
                raise ConfigError("data.covariate_keys", f"column '{key}' is not numeric")
        return table

    def _records(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        base = self.manifest_path.parent
        self.class_names: list[str] = []
        if self.label_key:
            self.class_names = sorted({str(v) for v in table[self.label_key]}, key=_natural_key)
        records = []
        for row in table.itertuples(index=False):
            row = row._asdict()
            path = Path(str(row["file"]))
            path = path if path.is_absolute() else base / path
            record: dict[str, Any] = {
                "image": str(path),
                "path": str(path),
                "subject_id": str(row["subject_id"]),
            }
            if self.label_key:
                record["class_label"] = self.class_names.index(str(row[self.label_key]))
            if self.label_map_classes:
                label = Path(str(row[LABEL_MAP_COLUMN]))
                record["label_map"] = str(label if label.is_absolute() else base / label)
            if self.covariate_keys:
                record["covariates"] = np.asarray(
                    [float(row[k]) for k in self.covariate_keys], dtype=np.float32
                )
            records.append(record)
        return records

    def _geometry(self) -> dict[str, Any]:
        import nibabel as nib

        first = Path(self.records[0]["image"])
        try:
            affine = nib.load(str(first)).affine
        except (OSError, ValueError, nib.filebasedimages.ImageFileError) as err:
            raise InputFileError(first, f"cannot read the NIfTI header ({err})") from None
        spacing = self.preprocessing.get("spacing") or np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).tolist()
        return {
            "shape": list(self.shape),
            "spacing": [float(s) for s in spacing],
            "affine": np.asarray(affine).tolist(),
            "fingerprint": _fingerprint_or_none(self.preprocessing),
            "label_classes": self.label_map_classes,
            "label_mode": self.label_map_mode,
        }

    def _intensity(self, table: pd.DataFrame) -> dict[str, Any] | None:
        """One mapping for the model: per-file windows summarised by their median (CT windows are constant)."""
        info = self.preprocessing.get("intensity") or {}
        mode = str(info.get("mode", "none"))
        if {"intensity_low", "intensity_high"} <= set(table.columns):
            low, high = float(table["intensity_low"].median()), float(table["intensity_high"].median())
        elif mode == "none":
            return None
        else:
            low, high = float(info.get("low", -1.0)), float(info.get("high", 1.0))
        return {"mode": mode, "low": low, "high": high, "unit": str(info.get("unit", ""))}

    @property
    def conditioning(self) -> dict[str, Any]:
        """:class:`~medsynth.models.bundle.ConditioningSpec` fields (guidance flag set by the trainer)."""
        self.describe()
        return {
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "label_key": self.label_key,
            "covariate_keys": list(self.covariate_keys),
        }

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        self.describe()
        if self.train_dataset is not None:
            return
        if self.validate_files:
            self._validate_files()
        self.train_dataset = self._dataset(self.train_records, self._transforms(augment=True), "train")
        self.val_dataset = (
            self._dataset(self.val_records, self._transforms(augment=False), "val")
            if self.val_records
            else None
        )

    def _validate_files(self) -> None:
        from medsynth.data.validation import validate_volume_file

        errors = []
        for record in self.records:
            try:
                validate_volume_file(record["image"])
                if "label_map" in record:
                    self._validate_label_map(record)
            except InputFileError as err:
                errors.append(err)
        if errors:
            more = f" (and {len(errors) - 1} more bad files)" if len(errors) > 1 else ""
            raise InputFileError(errors[0].path, errors[0].reason + more)

    def _validate_label_map(self, record: dict[str, Any]) -> None:
        """The subject's label map lies on its image's grid with values in 0..K-1 (InputFileError otherwise)."""
        from medsynth.data.label_maps import check_label_grid, check_label_values
        from medsynth.data.validation import load_checked_volume

        image, label = load_checked_volume(record["image"]), load_checked_volume(record["label_map"])
        check_label_grid(image, label, tolerance_mm=0.01 * min(image.spacing))
        check_label_values(label, self.label_map_classes, key="data.label_map_classes")

    def _transforms(self, augment: bool) -> Any:
        from monai import transforms as mt

        keys = ["image", "label_map"] if self.label_map_classes else ["image"]
        steps: list[Any] = [
            mt.LoadImaged(keys=keys, image_only=True, ensure_channel_first=True),
            mt.EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False),
            _ShapeCheck(self.shape),
        ]
        if self.label_map_classes:
            steps.append(_JoinLabelChannels(self.label_map_classes))
        if augment and self.flip_prob > 0:
            steps += [mt.RandFlipd(keys="image", prob=self.flip_prob, spatial_axis=0)]  # left-right
        if augment and self.affine_prob > 0:
            angle = float(np.deg2rad(self.rotate_deg))
            steps += [
                mt.RandAffined(
                    keys="image",
                    prob=self.affine_prob,
                    rotate_range=(angle, angle, angle),
                    scale_range=(self.scale,) * 3,
                    padding_mode="border",
                ),
                mt.Lambdad(keys="image", func=_clamp_unit),
            ]
        transform = mt.Compose(steps)
        transform.set_random_state(seed=self.seed)
        return transform

    def _dataset(self, records: list[dict[str, Any]], transform: Any, name: str) -> Any:
        from monai.data import CacheDataset, Dataset, PersistentDataset

        if self.cache == "memory":
            return CacheDataset(records, transform, num_workers=None, progress=False)
        if self.cache == "disk":
            return PersistentDataset(records, transform, cache_dir=self.cache_dir / name)
        return Dataset(records, transform)

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        sampler = ResumableDistributedSampler(
            self.train_dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=False
        )
        return ResumableDataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=False,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_dataset is None:
            return []
        world, rank = self._world()
        sampler = DistributedSampler(self.val_dataset, num_replicas=world, rank=rank, shuffle=False)
        return DataLoader(
            self.val_dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers
        )


class _JoinLabelChannels:
    """MONAI-style dict transform: append the label map to ``image`` as K one-hot channels in {-1, +1}.

    (1, D, H, W) image + (1, D, H, W) label -> (1 + K, D, H, W); one line naming the label file when
    it is on another grid or holds values outside 0..K-1.
    """

    def __init__(self, classes: int):
        self.classes = int(classes)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from medsynth.models.paired import label_channels

        image, label = data["image"], data.pop("label_map")
        where = data.get("path", "volume")
        if tuple(label.shape) != tuple(image.shape):
            raise InputFileError(where, f"label map shape {tuple(label.shape[1:])} differs from the image's")
        values = torch.unique(label)
        if bool((values < 0).any() or (values >= self.classes).any() or (values != values.round()).any()):
            raise InputFileError(
                where,
                f"label map values {values.tolist()[:6]} outside 0..{self.classes - 1} (data.label_map_classes={self.classes})",
            )
        data["image"] = torch.cat([image, label_channels(label[None], self.classes)[0]], dim=0)
        return data


class _ShapeCheck:
    """MONAI-style dict transform: fail with one line if a volume is not (1, D, H, W) of the prepared shape."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = tuple(shape)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        image = data["image"]
        if tuple(image.shape) != (1, *self.shape):
            raise InputFileError(
                data.get("path", "volume"),
                f"shape {tuple(image.shape[1:])} differs from the prepared shape {self.shape}",
            )
        return data


def _clamp_unit(image: torch.Tensor) -> torch.Tensor:
    """Keep augmented intensities in the model range [-1, 1]."""
    return image.clamp(-1.0, 1.0)


def _natural_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)
