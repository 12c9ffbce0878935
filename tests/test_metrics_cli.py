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

SHAPE = (24, 24, 24)
SET_KEYS = {
    "frd",
    "mmd",
    "ms_ssim_real",
    "ms_ssim_synthetic",
    "precision",
    "recall",
    "density",
    "coverage",
    "kid",
}


def _write_set(folder, prefix: str, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        volume, affine, _ = make_phantom(SHAPE, rng)
        nib.save(nib.Nifti1Image(volume, affine), folder / f"{prefix}_{i:05d}.nii.gz")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    _write_set(root / "real", "real", 6, 1)
    _write_set(root / "synthetic", "sample", 6, 2)
    _write_set(root / "train", "train", 5, 3)
    shutil.copy(root / "train" / "train_00002.nii.gz", root / "synthetic" / "sample_copied.nii.gz")
    return {"root": root, "cache": tmp_path_factory.getbasetemp() / "radiomics-cache"}


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
        f"train_dir={root / 'train'}", f"out_dir={out}",
    )  # fmt: skip
    assert code == 0, stderr
    assert "fid3d/kid3d skipped" in stderr and "evaluated 7 synthetic vs 6 real" in stdout
    metrics = _strict_json(out / "metrics.json")
    assert SET_KEYS | {"n_real", "n_synthetic", "settings", "n_train", "n_memorised"} == set(metrics)
    assert all(isinstance(metrics[k], float) and np.isfinite(metrics[k]) for k in SET_KEYS)
    assert (metrics["n_real"], metrics["n_synthetic"], metrics["n_train"], metrics["n_memorised"]) == (
        6,
        7,
        5,
        1,
    )
    assert metrics["settings"]["radiomics"]["frd_version"] == "v1" and metrics["settings"]["n_features"] > 900
    assert 0.0 <= metrics["ms_ssim_real"] <= 1.0 and 0.0 <= metrics["precision"] <= 1.0

    table = pd.read_csv(out / "per_image.csv")
    assert table.columns[0] == "case_id"
    assert sorted(table["case_id"]) == sorted([f"sample_{i:05d}" for i in range(6)] + ["sample_copied"])
    numeric = table.drop(columns="case_id")
    assert (
        all(pd.api.types.is_numeric_dtype(numeric[c]) for c in numeric) and np.isfinite(numeric).all().all()
    )
    for column in ("feature_distance", "histogram_distance", "slice_consistency", "train_nn_similarity"):
        assert column in table
    flagged = table.loc[table["memorised"] == 1, "case_id"].tolist()
    assert flagged == ["sample_copied"]
    neighbours = pd.read_csv(out / "nearest_neighbours.csv")
    assert neighbours.set_index("case_id").loc["sample_copied", "nearest_train"] == "train_00002.nii.gz"
    for name in ("pca_embedding", "feature_distance_histogram", "nearest_neighbours"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert not list(out.rglob(".tmp-*"))


def test_identical_sets_give_identity_values_end_to_end(dirs, capsys):
    root = dirs["root"]
    out = root / "same"
    code, _, stderr = _run(
        capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'real'}", f"out_dir={out}"
    )
    assert code == 0, stderr
    m = _strict_json(out / "metrics.json")
    assert (m["frd"], m["mmd"], m["kid"]) == (0.0, 0.0, 0.0)
    assert (m["precision"], m["recall"], m["density"], m["coverage"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["ms_ssim_real"] == m["ms_ssim_synthetic"]
    assert "memorised" not in pd.read_csv(out / "per_image.csv")


def test_medicalnet_weights_add_fid3d_and_kid3d(dirs, capsys, tmp_path):
    from tests.test_metrics_units import _save_medicalnet_like

    _save_medicalnet_like(tmp_path / "resnet_10.pth")
    root = dirs["root"]
    code, _, stderr = _run(
        capsys, dirs, f"real_dir={root / 'real'}", f"synthetic_dir={root / 'synthetic'}", f"out_dir={tmp_path / 'o'}",
        f"feature_extractor.weights={tmp_path / 'resnet_10.pth'}", "figures=false",
    )  # fmt: skip
    assert code == 0, stderr
    m = _strict_json(tmp_path / "o" / "metrics.json")
    assert np.isfinite(m["fid3d"]) and m["fid3d"] > 0 and np.isfinite(m["kid3d"])
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
    assert not out.exists()


def test_help_prints_description_and_defaults(capsys):
    assert cli.main(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    assert "real_dir=DIR synthetic_dir=DIR out_dir=DIR" in text and "frd_version: v1" in text
