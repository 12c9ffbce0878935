"""A cheap realism score of a few generated volumes against a fixed set of real ones, for choosing
checkpoints during training (:mod:`medsynth.sampling.quality_checkpoint`).

Features are frd-score's radiomics vectors (:mod:`medsynth.metrics.radiomics_features`), by default
of the Original image only (``image_types: [Original]``: 82 features, 0.16 s per 32^3 volume on 2
cores, against 3.3 s for v1's full set with LoG and wavelet images); the score is one of
``medsynth evaluate``'s set-level metrics (:func:`medsynth.metrics.evaluation.feature_metric_values`,
same definitions and settings), its direction the one evaluate declares (``better``), never guessed
from its name. The real features are computed once (and cached on disk by file content, like
evaluate's); each score then costs the radiomics of the generated volumes and a few milliseconds.

Notation: N generated volumes (N, D, H, W) in the model space [-1, 1]; M reference volumes; F features.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from medsynth.errors import ConfigError, InputFileError
from medsynth.metrics.evaluation import DIRECTIONS, feature_metric_values
from medsynth.metrics.radiomics_features import (
    FeatureTable,
    RadiomicsSettings,
    extract_features,
    features_of_file,
)

#: metrics a checkpoint can be chosen by: finite for any two sets, with a "lower" or "higher" direction
#: (frd and frd_paper are ln of frd_d2: the same order; density has a target, not a direction)
QUALITY_METRICS = ("frd_d2", "kid", "mmd", "precision", "recall", "coverage")
#: fewest reference volumes the set metrics are defined on (nearest-neighbour statistics need 3)
MIN_REFERENCE = 3


def metric_direction(metric: str) -> str:
    """``"lower"`` or ``"higher"``: the direction ``medsynth evaluate`` declares for ``metric``."""
    if metric not in QUALITY_METRICS:
        raise ConfigError(
            "callbacks.quality.metric", f"'{metric}' is not one of {', '.join(QUALITY_METRICS)}"
        )
    direction = DIRECTIONS[metric]
    if direction not in ("lower", "higher"):  # pragma: no cover - QUALITY_METRICS holds directed metrics only
        raise ConfigError("callbacks.quality.metric", f"'{metric}' has a target, not a direction")
    return str(direction)


class QualityScore:
    """Scores sets of generated volumes against one fixed reference set of real volume files.

    Args:
        reference_files: the real volumes (prepared NIfTI files in the model space, one grid), M >= 3.
        affine: (4, 4) voxel -> RAS mm of the grid; generated volumes are written with it for PyRadiomics.
        metric: the score to choose checkpoints by (:data:`QUALITY_METRICS`).
        radiomics: frd-score settings (``RadiomicsSettings``); ``image_types=("Original",)`` keeps it cheap.
        z_clip, nearest_k, kid, seed: evaluate's ``radiomics.z_clip``, ``prdc.nearest_k``, ``kid.*``, ``seed``.
        cache_dir: radiomics cache of the reference features (None: evaluate's default cache).
    """

    def __init__(
        self,
        reference_files: Sequence[str | Path],
        affine: np.ndarray,
        metric: str = "frd_d2",
        radiomics: RadiomicsSettings | None = None,
        z_clip: float = 10.0,
        nearest_k: int = 5,
        kid: dict | None = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
    ):
        self.reference_files = [Path(f) for f in reference_files]
        if len(self.reference_files) < MIN_REFERENCE:
            raise ConfigError(
                "callbacks.quality.reference",
                f"{len(self.reference_files)} reference volume(s); the quality score needs at least {MIN_REFERENCE}",
            )
        self.affine = np.asarray(affine, dtype=np.float64)
        self.metric = metric
        self.better = metric_direction(metric)
        self.radiomics = radiomics or RadiomicsSettings(image_types=("Original",))
        self.cache_dir = cache_dir
        kid = {"degree": 3, "coef0": 1.0, "subset_size": 1000, "num_subsets": 100} | dict(kid or {})
        self._metric_cfg = OmegaConf.create(
            {
                "radiomics": {"frd_version": self.radiomics.frd_version, "z_clip": float(z_clip)},
                "prdc": {"nearest_k": int(nearest_k)},
                "kid": kid,
                "seed": int(seed),
            }
        )
        self._reference: FeatureTable | None = None

    @property
    def reference(self) -> FeatureTable:
        """(M, F) radiomics of the reference files, extracted on first use (cached on disk)."""
        if self._reference is None:
            self._reference = extract_features(
                self.reference_files, self.radiomics, cache_dir=self.cache_dir, num_workers=1, progress=False
            )
        return self._reference

    def features(self, volumes: np.ndarray) -> np.ndarray:
        """(N, F) radiomics of volumes (N, D, H, W), each written as a NIfTI on the reference grid first
        (frd-score reads files)."""
        import nibabel as nib

        names = self.reference.names
        rows = []
        with tempfile.TemporaryDirectory(prefix="medsynth-quality-") as tmp:
            for i, volume in enumerate(np.asarray(volumes, dtype=np.float32)):
                path = Path(tmp) / f"generated_{i:03d}.nii.gz"
                nib.save(nib.Nifti1Image(volume, self.affine), str(path))
                try:
                    row_names, values = features_of_file(str(path), self.radiomics)
                except Exception as err:  # PyRadiomics raises many kinds on unusable images
                    raise InputFileError(path.name, f"radiomics feature extraction failed ({err})") from None
                if row_names != names:
                    raise InputFileError(path.name, "radiomics feature names differ from the reference set's")
                rows.append(values)
        return np.asarray(rows, dtype=np.float64)

    def scores(self, volumes: np.ndarray) -> dict[str, float]:
        """Every metric of :data:`QUALITY_METRICS` for volumes (N, D, H, W) in [-1, 1], N >= 2."""
        values = feature_metric_values(
            self.reference.values, self.features(volumes), self.reference.names, self._metric_cfg
        )
        return {name: float(values[name]) for name in QUALITY_METRICS}

    def score(self, volumes: np.ndarray) -> float:
        """The chosen metric for volumes (N, D, H, W)."""
        return self.scores(volumes)[self.metric]
