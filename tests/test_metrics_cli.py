"""``medsynth evaluate`` end to end with the default config (frd-score v1 features) on tiny phantoms."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medsynth import cli
from medsynth.data.phantom import make_phantom
from medsynth.metrics.feature_shifts import COLUMNS

SHAPE = (24, 24, 24)
SET_KEYS = {
    "frd",
    "frd_paper",
    "frd_d2",
    "mmd",
    "ms_ssim_real",
    "ms_ssim_synthetic",
    "precision",
    "recall",
    "density",
    "coverage",
    "kid",
}
FINGERPRINT = {
    "shape": list(SHAPE),
    "spacing": [8.0, 8.0, 8.0],
    "orientation": "RAS",
    "intensity": {"mode": "mr", "unit": "a.u.", "lower_percentile": 0.5, "upper_percentile": 99.5, "clip": True},
    "crop_foreground": {"enabled": True, "threshold": 0.1, "margin_mm": 6.0},
}


def write_fingerprint(folder, fingerprint=None) -> None:
    (folder / "preprocessing.json").write_text(json.dumps({"fingerprint": fingerprint or FINGERPRINT}))


def _write_set(folder, prefix: str, n: int, seed: int, fingerprint: bool = True) -> None:
    """Phantoms in the model space ([-1, 1]) with a preprocessing fingerprint, as prepare/sample write."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        volume, affine, _ = make_phantom(SHAPE, rng)
        nib.save(nib.Nifti1Image(volume * 2.0 - 1.0, affine), folder / f"{prefix}_{i:05d}.nii.gz")
    if fingerprint:
        write_fingerprint(folder)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    _write_set(root / "real", "real", 6, 1)
    _write_set(root / "synthetic", "sample", 6, 2)
    _write_set(root / "train", "train", 5, 3)
    shutil.copy(root / "train" / "train_00002.nii.gz", root / "synthetic" / "sample_copied.nii.gz")
    return {"root": root, "cache": tmp_path_factory.getbasetemp() / "radiomics-cache"}


FAST = ["radiomics.image_types=[Original]", "ci.n_resamples=20"]  # ~100 features: sqrtm and bootstrap quick


def _run(capsys, dirs, *args):
    code = cli.main(["evaluate", f"radiomics.cache_dir={dirs['cache']}", "progress=false", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _strict_json(path):
    def reject(constant):
        raise ValueError(f"non-finite JSON value {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_evaluate_writes_metrics_per_image_and_figures(dirs, capsys):
    root = dirs["root"]
    out = root / "out"
    code, stdout, stderr = _run(
        capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'synthetic'}",
        f"train_dir={root / 'train'}", f"out_dir={out}", *FAST,
    )  # fmt: skip
    assert code == 0, stderr
    assert "fid3d/kid3d skipped" in stderr and "evaluated 7 synthetic vs 6 real" in stdout
    data = _strict_json(out / "metrics.json")
    assert set(data) == {"schema", "metrics", "settings"} and data["schema"] == 2
    metrics, settings = data["metrics"], data["settings"]
    assert set(metrics) == SET_KEYS
    for name, entry in metrics.items():  # every metric has a value, a direction, a CI and a floor
        assert set(entry) == {"value", "better", "target", "ci", "floor"}, name
        assert isinstance(entry["value"], float) and isinstance(entry["floor"], float), name
        lo, hi = entry["ci"]
        assert lo <= hi and entry["better"] in ("lower", "higher", "target"), name
    assert metrics["frd"]["better"] == "lower" and metrics["precision"]["better"] == "higher"
    assert metrics["density"]["better"] == "target" and metrics["density"]["target"] == 1.0
    assert metrics["ms_ssim_synthetic"]["target"] == metrics["ms_ssim_real"]["value"]
    d2 = metrics["frd_d2"]["value"]
    assert metrics["frd"]["value"] == pytest.approx(np.log(d2), abs=1e-9)
    assert metrics["frd_paper"]["value"] == pytest.approx(0.5 * np.log(d2), abs=1e-9)
    assert metrics["frd"]["ci"] == pytest.approx(np.log(metrics["frd_d2"]["ci"]), abs=1e-9)
    assert (settings["n_real"], settings["n_synthetic"], settings["n_train"]) == (6, 7, 5)
    assert settings["memorisation"]["n_memorised"] == 1 and settings["fingerprint"] == FINGERPRINT
    assert settings["radiomics"]["frd_version"] == "v1" and settings["ci"]["n_resamples"] == 20
    assert 0.0 <= metrics["ms_ssim_real"]["value"] <= 1.0 and 0.0 <= metrics["precision"]["value"] <= 1.0

    table = pd.read_csv(out / "per_image.csv")
    assert table.columns[0] == "case_id"
    assert sorted(table["case_id"]) == sorted([f"sample_{i:05d}" for i in range(6)] + ["sample_copied"])
    numeric = table.drop(columns=["case_id", "nearest_train"])
    assert (
        all(pd.api.types.is_numeric_dtype(numeric[c]) for c in numeric) and np.isfinite(numeric).all().all()
    )
    for column in ("feature_distance", "histogram_distance", "slice_consistency", "train_nn_similarity"):
        assert column in table
    flagged = table.loc[table["memorised"] == 1, "case_id"].tolist()
    assert flagged == ["sample_copied"]
    copied = table.set_index("case_id").loc["sample_copied"]
    assert copied["nearest_train"] == "train_00002.nii.gz" and copied["train_nn_similarity"] == pytest.approx(1.0)
    neighbours = pd.read_csv(out / "nearest_neighbours.csv")
    assert neighbours.set_index("case_id").loc["sample_copied", "nearest_train"] == "train_00002.nii.gz"
    shifts = pd.read_csv(out / "feature_shifts.csv")
    assert tuple(shifts.columns) == COLUMNS and len(shifts) > 50
    assert (np.diff(shifts["shift_sd"].abs()) <= 0).all()  # largest shift first
    # the shares are each feature's part of the mean term of evaluate's own d^2
    assert (shifts["shift_sd"] ** 2 / d2).to_numpy() == pytest.approx(shifts["share_of_d2"].to_numpy(), rel=1e-5)
    assert 0 < shifts["share_of_d2"].sum() < 1 and (shifts["sd_ratio"] >= 0).all()
    assert "feature shifts: the means make" in stdout + stderr
    for name in ("pca_embedding", "feature_distance_histogram", "nearest_neighbours"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert not list(out.rglob(".tmp-*"))


def test_frd_equals_frd_score_api_on_the_same_folders(dirs, capsys, tmp_path):
    """``frd`` is what frd-score's own ``compute_frd`` returns on the two folders, same settings."""
    from frd_score import frd

    root = dirs["root"]
    code, _, stderr = _run(
        capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'train'}", f"out_dir={tmp_path}",
        "figures=false", "ci.n_resamples=5",
    )  # fmt: skip
    assert code == 0, stderr
    ours = _strict_json(tmp_path / "metrics.json")
    assert ours["settings"]["radiomics"]["n_features"] > 900  # frd-score v1's default feature set
    ours = ours["metrics"]
    # the same settings: v1 defaults with PyRadiomics resampling off (radiomics.resampled_spacing: null)
    reference = frd.compute_frd(
        [str(root / "real"), str(root / "train")], frd_version="v1", num_workers=1,
        settings_dict={"resampledPixelSpacing": None},
    )  # fmt: skip
    capsys.readouterr()
    assert ours["frd"]["value"] == pytest.approx(float(reference), abs=1e-6)
    assert ours["frd_paper"]["value"] == pytest.approx(float(reference) / 2, abs=1e-6)


def test_identical_sets_give_identity_values_end_to_end(dirs, capsys):
    root = dirs["root"]
    out = root / "same"
    code, _, stderr = _run(
        capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'real'}", f"out_dir={out}", *FAST
    )
    assert code == 0, stderr
    m = {k: v["value"] for k, v in _strict_json(out / "metrics.json")["metrics"].items()}
    assert (m["frd_d2"], m["mmd"], m["kid"]) == (0.0, 0.0, 0.0)
    assert m["frd"] is None and m["frd_paper"] is None  # ln(0): frd-score returns -inf
    assert (m["precision"], m["recall"], m["density"], m["coverage"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["ms_ssim_real"] == m["ms_ssim_synthetic"]
    assert "memorised" not in pd.read_csv(out / "per_image.csv")
    shifts = pd.read_csv(out / "feature_shifts.csv")
    assert (shifts["shift_sd"] == 0).all() and (shifts["share_of_d2"] == 0).all()
    assert shifts["sd_ratio"].to_numpy() == pytest.approx(1.0)


def test_medicalnet_weights_add_fid3d_and_kid3d(dirs, capsys, tmp_path):
    from tests.test_metrics_units import _save_medicalnet_like

    _save_medicalnet_like(tmp_path / "resnet_10.pth")
    root = dirs["root"]
    code, _, stderr = _run(
        capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'synthetic'}", f"out_dir={tmp_path / 'o'}",
        f"feature_extractor.weights={tmp_path / 'resnet_10.pth'}", "figures=false", *FAST,
    )  # fmt: skip
    assert code == 0, stderr
    m = _strict_json(tmp_path / "o" / "metrics.json")["metrics"]
    assert m["fid3d"]["value"] > 0 and np.isfinite(m["kid3d"]["value"]) and m["fid3d"]["better"] == "lower"
    assert m["fid3d"]["floor"] is not None and m["kid3d"]["ci"] is not None
    assert "skipped" not in stderr and not (tmp_path / "o" / "figures").exists()


def _assert_one_line_error(code, stdout, stderr, *fragments):
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsynth evaluate: error:"), stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_empty_and_bad_inputs_are_one_line_errors(dirs, capsys, tmp_path):
    root = dirs["root"]
    out = tmp_path / "out"
    good = [f"synthetic_dir={root / 'synthetic'}", f"out_dir={out}"]
    _assert_one_line_error(
        *_run(capsys, dirs, f"real_dir={tmp_path / 'nope'}", *good), "real_dir", "does not exist"
    )
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(
        *_run(capsys, dirs, f"real_dir={tmp_path / 'empty'}", *good), "real_dir", "no volume files"
    )
    _assert_one_line_error(*_run(capsys, dirs, *good), "real_dir", "required")
    bad = tmp_path / "bad"
    shutil.copytree(root / "real", bad)
    (bad / "real_00003.nii.gz").write_bytes((root / "real" / "real_00003.nii.gz").read_bytes()[:200])
    _assert_one_line_error(*_run(capsys, dirs, f"real_dir={bad}", *good), "real_00003.nii.gz")
    _assert_one_line_error(
        *_run(capsys, dirs, f"real_dir={root / 'real'}", *good, "radiomics.mask=lungs"), "radiomics.mask"
    )
    for key, value in (("ci.level", "1.5"), ("memorisation.quantile", "2"), ("prepare_inputs", "maybe")):
        _assert_one_line_error(*_run(capsys, dirs, f"real_dir={root / 'real'}", *good, f"{key}={value}"), key)
    assert not out.exists()


def test_help_prints_description_and_defaults(capsys):
    assert cli.main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    assert "real_dir=DIR synthetic_dir=DIR out_dir=DIR" in text and "frd_version: v1" in text


def test_raw_real_scans_are_refused_then_prepared_with_prepare_inputs(dirs, capsys, tmp_path):
    """A new user's first try: raw scans (no preprocessing.json, MR units) vs model-space samples."""
    from medsynth.config import compose_stage
    from medsynth.data.prepare import prepare_dataset
    from medsynth.io.fingerprint import read_fingerprint

    _write_set(tmp_path / "raw_real", "scan", 6, 7, fingerprint=False)
    _write_set(tmp_path / "raw_other", "scan", 6, 8, fingerprint=False)
    for path in (tmp_path / "raw_real").glob("*.nii.gz"):  # raw MR units, not [-1, 1]
        image = nib.load(path)
        nib.save(nib.Nifti1Image((image.get_fdata() + 1.0) * 600.0, image.affine), path)
    samples = tmp_path / "samples"  # stands in for `medsynth sample`: prepared volumes + fingerprint
    prepare_dataset(compose_stage("data_prepare", [
        f"input={tmp_path / 'raw_other'}", f"out_dir={samples}", "shape=[24,24,24]", "spacing=[8,8,8]",
        "num_workers=1", "progress=false",
    ]))  # fmt: skip
    out = tmp_path / "out"
    args = [f"real_dir={tmp_path / 'raw_real'}", f"synthetic_dir={samples}", f"out_dir={out}", *FAST]
    _assert_one_line_error(*_run(capsys, dirs, *args), "real_dir:", "no preprocessing.json", "prepare_inputs=true")
    assert not out.exists()  # nothing written

    code, stdout, stderr = _run(capsys, dirs, *args, "prepare_inputs=true", "figures=false")
    assert code == 0, stderr
    prepared = out / "prepared_inputs" / "real"
    assert read_fingerprint(prepared, "real") == read_fingerprint(samples, "synthetic")
    settings = _strict_json(out / "metrics.json")["settings"]
    assert settings["prepared_inputs"] == {"real_dir": str(prepared)} and settings["n_real"] == 6


def test_missing_and_mismatched_fingerprints_are_one_line_errors(dirs, capsys, tmp_path):
    root = dirs["root"]
    other = tmp_path / "other"
    shutil.copytree(root / "real", other)
    write_fingerprint(other, FINGERPRINT | {"intensity": {**FINGERPRINT["intensity"], "mode": "ct"}})
    out = tmp_path / "out"
    _assert_one_line_error(
        *_run(capsys, dirs, f"real_dir={other}", f"synthetic_dir={root / 'synthetic'}", f"out_dir={out}"),
        "real_dir: preprocessing fingerprint differs from synthetic_dir's in intensity.mode (ct vs mr)",
    )
    _assert_one_line_error(  # another fingerprint is refused even with prepare_inputs (no double windowing)
        *_run(capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'synthetic'}",
              f"train_dir={other}", f"out_dir={out}", "prepare_inputs=true"),
        "train_dir: preprocessing fingerprint differs from synthetic_dir's in intensity.mode",
    )  # fmt: skip
    (other / "preprocessing.json").unlink()
    _assert_one_line_error(
        *_run(capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={other}", f"out_dir={out}"),
        "synthetic_dir:", "no preprocessing.json",
    )
    assert not out.exists()
