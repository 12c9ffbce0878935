"""Validation ladder on demo phantoms: controlled degradations must make the metrics worse.

Sets of 12 phantoms at 24^3 (large ventricles so that filling them is a visible change). A
"clean" set of other subjects is the level-0 synthetic set; blur, noise and structure removal
are applied to those same subjects, so every level differs from level 0 only by the degradation.
Structure removal is cumulative: ventricles filled and the skull thinned to 3 mm, then the
ventricles filled and the skull removed entirely (filling the ventricles alone is at the
detection limit of 12 volumes at 24^3 and is not a step of its own).
To stay within CI time the ladder runs PyRadiomics on the original and LoG images only
(``image_types=[Original, LoG]``, ~500 features; with original-only features FRD missed the
skull removal). The default v1 feature set runs end to end in tests/test_metrics_cli.py. Features are cached once per session (file hash + settings).
"""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from medsynth.data.phantom import PhantomRanges, draw_parameters, grid_affine, render_phantom
from medsynth.metrics import per_image, set_metrics
from medsynth.metrics.radiomics_features import RadiomicsSettings, extract_features

SHAPE = (24, 24, 24)
N = 12
RANGES = PhantomRanges(ventricle_scale=(1.3, 1.6))
SETTINGS = RadiomicsSettings(image_types=("Original", "LoG"))
LEVELS = {
    "blur": ["clean", "blur_0.6", "blur_1.2"],
    "noise": ["clean", "noise_0.05", "noise_0.15"],
    "structures": ["clean", "ventricles_filled_thin_skull", "ventricles_filled_no_skull"],
}


def _phantom(seed: int, **changes) -> np.ndarray:
    rng = np.random.default_rng(seed)
    params = draw_parameters(rng, RANGES)
    if changes:
        params = dataclasses.replace(params, **{k: v(params) for k, v in changes.items()})
    return render_phantom(params, SHAPE, rng, grid_affine(SHAPE))


def _sets() -> dict[str, list[np.ndarray]]:
    clean_seeds = range(2000, 2000 + N)
    sets = {"real": [_phantom(1000 + i) for i in range(N)], "clean": [_phantom(s) for s in clean_seeds]}
    for sigma in (0.6, 1.2):
        sets[f"blur_{sigma}"] = [gaussian_filter(v, sigma) for v in sets["clean"]]
    for sigma in (0.05, 0.15):
        sets[f"noise_{sigma}"] = [
            v + np.random.default_rng(i).normal(0.0, sigma, SHAPE).astype(np.float32)
            for i, v in enumerate(sets["clean"])
        ]
    fill = {"intensity_csf": lambda p: p.intensity_brain}
    thin = {"skull_thickness": lambda p: 3.0}
    sets["ventricles_filled_thin_skull"] = [_phantom(s, **fill, **thin) for s in clean_seeds]
    sets["ventricles_filled_no_skull"] = [
        _phantom(s, **fill, intensity_skull=lambda p: 0.0) for s in clean_seeds
    ]
    return sets


@pytest.fixture(scope="session")
def ladder(tmp_path_factory):
    """{set name: (volumes, FeatureTable)}; radiomics features extracted once per session."""
    root = tmp_path_factory.mktemp("ladder")
    cache = tmp_path_factory.getbasetemp() / "radiomics-cache"
    out = {}
    for name, volumes in _sets().items():
        files = []
        for i, volume in enumerate(volumes):
            files.append(root / name / f"{name}_{i:02d}.nii.gz")
            files[-1].parent.mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(volume, grid_affine(SHAPE)), files[-1])
        table = extract_features(files, SETTINGS, cache_dir=cache, num_workers=2, progress=False)
        out[name] = (volumes, table)
    return out


def _frd_mmd(ladder, name: str) -> tuple[float, float]:
    real, synthetic = ladder["real"][1], ladder[name][1]
    space = set_metrics.FeatureSpace.standardise(real.values, synthetic.values, real.names)
    frd = set_metrics.radiomics_frechet_d2(real.values, synthetic.values, SETTINGS.frd_version)
    return frd, set_metrics.maximum_mean_discrepancy(space.real, space.synthetic)


def test_identical_sets_give_identity_values(ladder):
    real = ladder["real"][1].values
    space = set_metrics.FeatureSpace.standardise(real, real, ladder["real"][1].names)
    assert _frd_mmd(ladder, "real") == (0.0, 0.0)
    assert set_metrics.kernel_inception_distance(space.real, space.synthetic) == 0.0
    prdc = set_metrics.precision_recall_density_coverage(space.real, space.synthetic)
    assert (prdc["precision"], prdc["recall"], prdc["density"], prdc["coverage"]) == (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("ladder_name", sorted(LEVELS))
def test_degradation_makes_frd_and_mmd_worse_monotonically(ladder, ladder_name):
    values = [_frd_mmd(ladder, level) for level in LEVELS[ladder_name]]
    frd, mmd = zip(*values, strict=True)
    assert all(np.isfinite(values).ravel())
    assert list(frd) == sorted(frd) and len(set(frd)) == len(frd), f"FRD not increasing: {frd}"
    assert list(mmd) == sorted(mmd) and len(set(mmd)) == len(mmd), f"MMD not increasing: {mmd}"


def test_heavy_degradation_leaves_the_real_support(ladder):
    real = ladder["real"][1]
    for name in ("clean", "blur_1.2"):
        space = set_metrics.FeatureSpace.standardise(real.values, ladder[name][1].values, real.names)
        prdc = set_metrics.precision_recall_density_coverage(space.real, space.synthetic)
        if name == "clean":
            assert prdc["recall"] >= 0.9 and prdc["coverage"] >= 0.9
        else:
            assert prdc["precision"] == 0.0 and prdc["coverage"] == 0.0


def test_copied_training_volume_is_flagged(ladder):
    train = list(ladder["real"][0])
    synthetic = list(ladder["clean"][0]) + [train[5].copy()]
    threshold, _ = per_image.memorisation_threshold(train)
    similarity, index = per_image.nearest_neighbour_correlation(synthetic, train, max_shift=1)
    flagged = np.flatnonzero(similarity > threshold)
    assert flagged.tolist() == [len(synthetic) - 1] and index[-1] == 5


def test_slice_shuffled_volume_scores_worse_on_slice_consistency(ladder):
    rng = np.random.default_rng(0)
    for volume in ladder["clean"][0][:4]:
        unit = np.clip(volume, 0.0, 1.0)
        shuffled = unit[:, :, rng.permutation(SHAPE[2])]
        assert per_image.slice_consistency(shuffled) < per_image.slice_consistency(unit)
