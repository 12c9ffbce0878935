"""Unit tests of medsynth.metrics: estimators, MS-SSIM sizing, per-image scores, cache, 3D ResNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsynth.data.phantom import make_phantom
from medsynth.errors import ConfigError, InputFileError
from medsynth.metrics import per_image, set_metrics
from medsynth.metrics.volume_folder import list_volume_files


def _phantoms(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [make_phantom((size,) * 3, rng)[0] for _ in range(n)]  # values in [0, 1], background 0


@pytest.mark.parametrize(("size", "scales"), [(32, 3), (64, 4), (128, 5)])
def test_ms_ssim_kernel_7_fits_32_to_128(size, scales):
    kernel, weights = set_metrics.fit_ms_ssim_scales((size,) * 3, 7, [0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
    assert kernel == 7 and len(weights) == scales
    assert sum(weights) == pytest.approx(1.0001, abs=1e-6)


@pytest.mark.parametrize("size", [24, 32, 64])
def test_ms_ssim_runs_and_identical_volumes_score_one(size):
    rng = np.random.default_rng(0)
    volume = rng.random((size,) * 3, dtype=np.float32)
    value, used = set_metrics.ms_ssim_diversity([volume, volume.copy()], max_pairs=1)
    assert value == pytest.approx(1.0, abs=1e-4) and used["pairs"] == 1
    noise, _ = set_metrics.ms_ssim_diversity([volume, rng.random((size,) * 3, dtype=np.float32)])
    assert noise < 0.5


def test_mmd_matches_monai_and_handles_unequal_sizes():
    from monai.metrics import MMDMetric

    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(7, 5)))
    y = torch.as_tensor(rng.normal(0.5, 1.0, size=(7, 5)))
    assert float(set_metrics.linear_mmd_unbiased(x, y)) == pytest.approx(float(MMDMetric()(x, y)), rel=1e-10)
    shifted = set_metrics.maximum_mean_discrepancy(rng.normal(size=(9, 5)), rng.normal(2.0, 1.0, size=(6, 5)))
    assert shifted == pytest.approx(4.0, rel=0.5)


def test_identical_feature_sets_give_identity_values():
    rng = np.random.default_rng(2)
    raw = rng.lognormal(size=(12, 40))
    space = set_metrics.FeatureSpace.standardise(raw, raw, [f"f{i}" for i in range(40)])
    assert set_metrics.radiomics_frechet_d2(raw, raw, "v1") == 0.0
    assert set_metrics.radiomics_frechet_d2(raw, raw, "v0") == 0.0
    assert set_metrics.frd_family(0.0) == {"frd": None, "frd_paper": None, "frd_d2": 0.0}
    assert set_metrics.maximum_mean_discrepancy(space.real, space.synthetic) == 0.0
    assert set_metrics.kernel_inception_distance(space.real, space.synthetic) == 0.0
    prdc = set_metrics.precision_recall_density_coverage(space.real, space.synthetic, 5)
    assert prdc["precision"] == prdc["recall"] == prdc["coverage"] == 1.0
    assert set_metrics.frechet_distance_of_features(raw, raw) == pytest.approx(0.0, abs=1e-6)


def test_feature_space_drops_constant_columns_and_clips():
    real = np.array([[1.0, 5.0, 0.0], [2.0, 5.0, 0.001], [3.0, 5.0, 0.0]])
    synthetic = np.array([[2.0, 6.0, 50.0]])
    space = set_metrics.FeatureSpace.standardise(real, synthetic, ["a", "const", "tiny"], z_clip=10.0)
    assert space.names == ["a", "tiny"]
    assert space.synthetic[0, 1] == 10.0


def test_slice_consistency_drops_for_shuffled_slices():
    volume = _phantoms(1, 32, 3)[0]
    shuffled = volume[:, np.random.default_rng(0).permutation(32), :]
    assert per_image.slice_consistency(shuffled) < per_image.slice_consistency(volume) - 0.2


def test_nearest_neighbour_and_memorisation_threshold():
    train = _phantoms(6, 24, 4)
    others = _phantoms(4, 24, 5)
    threshold, record = per_image.memorisation_threshold(train, distance_ratio=0.5, min_similarity=0.9)
    assert record["n_train"] == 6 and threshold >= 0.9
    similarity, index = per_image.nearest_neighbour_correlation([train[3], *others], train, max_shift=1)
    assert similarity[0] == pytest.approx(1.0) and index[0] == 3
    assert similarity[0] > threshold and (similarity[1:] < threshold).all()


def test_per_image_scores_use_the_shared_mask():
    volumes = _phantoms(3, 24, 8)
    mask = per_image.shared_foreground_mask(volumes, 0.1, 0.5)
    assert 0 < mask.sum() < mask.size
    changed = volumes[0].copy()
    changed[~mask] = 0.9  # background outside the shared mask is not judged
    reference = per_image.intensity_histogram(volumes[0], 64, mask)
    assert per_image.histogram_distance(changed, reference, mask) == pytest.approx(0.0, abs=1e-12)
    assert per_image.histogram_distance(changed, reference) > 0.1
    assert per_image.slice_consistency(changed, mask) == pytest.approx(per_image.slice_consistency(volumes[0], mask))


def test_z_score_and_frd_match_frd_score_functions():
    from frd_score import frd

    rng = np.random.default_rng(3)
    real = rng.normal(5.0, 2.0, size=(9, 40)).astype(np.float32)
    real[:, 3] = 1.0  # constant over the reference: inf, dropped afterwards as frd-score v1 does
    synthetic = rng.normal(5.5, 2.0, size=(7, 40)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = frd.z_score_normalize(synthetic, 0, 1, base_distribution=real, replace_nan=False, handle_std_zero=False)
    np.testing.assert_array_equal(set_metrics.z_score_by_reference(synthetic, real), expected)
    exact = set_metrics.radiomics_frechet_d2(real, synthetic, "v1", exact=True)
    assert set_metrics.radiomics_frechet_d2(real, synthetic, "v1") == pytest.approx(exact, rel=1e-6)


def test_histogram_distance_is_zero_for_same_volume_and_grows_with_shift():
    volume = _phantoms(1, 24, 6)[0]
    reference = per_image.intensity_histogram(volume, 64)
    assert per_image.histogram_distance(volume, reference) == pytest.approx(0.0, abs=1e-12)
    assert per_image.histogram_distance(np.clip(volume + 0.2, 0, 1), reference) > 0.1


def test_bad_settings_and_folders_are_one_line_errors(tmp_path):
    from medsynth.metrics.radiomics_features import RadiomicsSettings

    with pytest.raises(ConfigError, match="radiomics.frd_version"):
        RadiomicsSettings(frd_version="v9")
    with pytest.raises(ConfigError, match="real_dir: folder .* does not exist"):
        list_volume_files(tmp_path / "missing", "real_dir")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="synthetic_dir: .* holds no volume files"):
        list_volume_files(tmp_path, "synthetic_dir")


def test_radiomics_cache_is_reused(tmp_path, monkeypatch):
    import nibabel as nib

    from medsynth.metrics import radiomics_features as rf

    rng = np.random.default_rng(7)
    files = []
    for i in range(2):
        volume, affine, _ = make_phantom((16, 16, 16), rng)
        files.append(tmp_path / f"v{i}.nii.gz")
        nib.save(nib.Nifti1Image(volume, affine), files[-1])
    settings = rf.RadiomicsSettings(image_types=("Original",))
    first = rf.extract_features(files, settings, cache_dir=tmp_path / "cache", num_workers=1, progress=False)
    assert first.values.shape[0] == 2 and first.values.shape[1] > 50

    def fail(*args, **kwargs):
        raise AssertionError("features were recomputed instead of read from the cache")

    monkeypatch.setattr(rf, "features_of_file", fail)
    again = rf.extract_features(
        files[::-1], settings, cache_dir=tmp_path / "cache", num_workers=2, progress=False
    )
    np.testing.assert_array_equal(again.values, first.values[::-1])
    other = rf.RadiomicsSettings(image_types=("Original",), bin_width=10)
    assert other.cache_key() != settings.cache_key()


def _save_medicalnet_like(path, arch="resnet10"):
    from monai.networks.nets import resnet

    depth = int(arch.removeprefix("resnet"))
    bias, shortcut = resnet.get_medicalnet_pretrained_resnet_args(depth)
    torch.manual_seed(0)
    net = getattr(resnet, arch)(
        spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type=shortcut, bias_downsample=bias
    )
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(1)  # MedicalNet's segmentation head, not used
    torch.save({"state_dict": state}, path)


def test_medicalnet_style_weights_give_fid3d(tmp_path):
    from medsynth.metrics.feature_extractor import build_medicalnet_resnet, resnet_features

    _save_medicalnet_like(tmp_path / "resnet_10.pth")
    network = build_medicalnet_resnet("resnet10", tmp_path / "resnet_10.pth")
    real = resnet_features(network, _phantoms(4, 24, 8), batch_size=2)
    assert real.shape == (4, 512) and np.isfinite(real).all()
    assert set_metrics.frechet_distance_of_features(real, real) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(InputFileError, match="does not fit MONAI resnet18"):
        build_medicalnet_resnet("resnet18", tmp_path / "resnet_10.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="junk.pth: not a PyTorch weights file"):
        build_medicalnet_resnet("resnet10", tmp_path / "junk.pth")


def test_frechet_distance_from_samples_matches_frd_score():
    from frd_score import frd

    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(10, 30)), rng.normal(0.3, 1.5, size=(13, 30))
    reference = frd.calculate_frechet_distance(
        x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    )
    assert set_metrics.frechet_distance_from_samples(x, y) == pytest.approx(float(reference), rel=1e-6)
    assert set_metrics.frechet_distance_from_samples(x, x) == 0.0


def test_set_metrics_of_a_four_volume_real_set_and_its_split_half_floor():
    """A 4-volume real set has floor halves of 2: PRDC is undefined there (None), the rest is computed."""
    from medsynth.config import compose_stage
    from medsynth.metrics.evaluation import feature_metric_values

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(12)]
    cfg = compose_stage("evaluate", ["real_dir=.", "synthetic_dir=.", "out_dir=."])
    real, synthetic = rng.lognormal(size=(4, 12)), rng.lognormal(size=(4, 12))
    full = feature_metric_values(real, synthetic, names, cfg)
    assert all(full[key] is not None for key in ("precision", "recall", "density", "coverage"))
    floor = feature_metric_values(real[:2], real[2:], names, cfg)
    assert {key: floor[key] for key in ("precision", "recall", "density", "coverage")} == dict.fromkeys(
        ("precision", "recall", "density", "coverage")
    )
    assert floor["frd_d2"] is not None and floor["frd_d2"] > 0


def test_feature_shifts_rank_the_shifted_and_the_narrow_features():
    """A feature moved by 3 real SDs comes first with its share of d^2; a halved spread shows as sd_ratio 0.5."""
    from medsynth.metrics.feature_shifts import feature_shifts, split_feature_name

    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 4))
    synthetic = rng.normal(size=(400, 4))
    synthetic[:, 2] += 3.0
    synthetic[:, 1] *= 0.5
    names = ["firstorder_Mean", "wavelet-LLH_glcm_Contrast", "log-sigma-2-0-mm-3D_firstorder_Median", "ngtdm_Busyness"]
    table = feature_shifts(real, synthetic, names)
    top = table.iloc[0]
    assert (top["feature"], top["image"], top["feature_class"]) == (names[2], "log-sigma-2-0-mm-3D", "firstorder")
    assert top["shift_sd"] == pytest.approx(3.0, abs=0.15)
    d2 = set_metrics.radiomics_frechet_d2(real, synthetic)
    assert top["share_of_d2"] == pytest.approx(top["shift_sd"] ** 2 / d2, rel=1e-6) and top["share_of_d2"] > 0.7
    ratios = table.set_index("feature")["sd_ratio"]
    assert ratios[names[1]] == pytest.approx(0.5, abs=0.05) and ratios[names[3]] == pytest.approx(1.0, abs=0.1)
    assert split_feature_name("firstorder_Mean") == ("original", "firstorder")
