"""Real and 'synthetic' phantom folders for study tests: ``real/phantom_NNNN.nii.gz`` and
``syn/sample_NNNN.nii.gz`` from one generator (real first), both in one preprocessing space."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medsynth.data.phantom import make_phantom
from tests.test_metrics_cli import FINGERPRINT, write_fingerprint


def write_study_sets(root: Path, n: int, shape: tuple[int, int, int], seed: int) -> Path:
    """Write ``n`` phantoms of ``shape`` to ``root/real`` and ``n`` more to ``root/syn``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for sub, prefix in (("real", "phantom"), ("syn", "sample")):
        (root / sub).mkdir()
        for i in range(n):
            vol, affine, _ = make_phantom(shape, rng)
            nib.save(nib.Nifti1Image(vol, affine), str(root / sub / f"{prefix}_{i:04d}.nii.gz"))
        write_fingerprint(root / sub, FINGERPRINT | {"shape": list(shape)})  # study create checks it
    return root
