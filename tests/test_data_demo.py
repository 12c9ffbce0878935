"""medsynth data demo: geometry, manifest contract, determinism by seed (file hashes), brain population."""

import builtins
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medsynth import cli


def _run(*args: str) -> int:
    return cli.main(["data", "demo", *args])


def _hashes(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_phantom_geometry_manifest_and_same_bytes(tmp_path, capsys):
    args = ["dataset=phantom", "n=4", "shape=[16,20,24]", "seed=7"]
    assert _run(*args, f"out_dir={tmp_path / 'a'}") == 0
    assert _run(*args, f"out_dir={tmp_path / 'b'}") == 0
    assert _run("dataset=phantom", "n=4", "shape=[16,20,24]", "seed=8", f"out_dir={tmp_path / 'c'}") == 0
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert a == b and len(a) == 9  # 4 images, 4 label maps, manifest.csv
    assert a["phantom_0000.nii.gz"] != c["phantom_0000.nii.gz"]

    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert list(manifest.columns[:3]) == ["file", "subject_id", "lesion"]
    assert manifest["lesion"].dtype.kind == "i" and set(manifest["lesion"]) <= {0, 1}
    assert list(manifest["subject_id"]) == [f"phantom_{i:04d}" for i in range(4)]
    image = nib.load(tmp_path / "a" / manifest["file"][0])
    assert image.shape == (16, 20, 24) and image.get_data_dtype() == np.float32
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(image.header.get_zooms(), (192 / 16, 192 / 20, 192 / 24))
    assert not np.allclose(image.affine, np.eye(4))
    # the head is centred on the world origin: the centre of mass in mm is near (0, 0, 0)
    data = image.get_fdata()
    com = np.array([np.sum(g * data) for g in np.indices(data.shape)]) / data.sum()
    assert np.all(np.abs(image.affine[:3, :3] @ com + image.affine[:3, 3]) < 15.0)
    assert image.header["sform_code"] == 1 and image.header["qform_code"] == 1


def test_phantom_lesion_matches_manifest(tmp_path):
    assert (
        _run(
            "dataset=phantom",
            "n=6",
            "shape=[32,32,32]",
            "seed=1",
            "phantom.lesion_probability=1.0",
            f"out_dir={tmp_path}",
        )
        == 0
    )
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert manifest["lesion"].eq(1).all()
    row = manifest.iloc[0]
    image = nib.load(tmp_path / row["file"])
    centre = np.linalg.solve(image.affine, [row["lesion_x"], row["lesion_y"], row["lesion_z"], 1.0])[:3]
    value = image.get_fdata()[tuple(np.round(centre).astype(int))]
    assert abs(value - row["intensity_lesion"]) < 0.35 * row["intensity_lesion"]


def test_subject_depends_only_on_seed_and_index(tmp_path):
    assert _run("dataset=phantom", "n=2", "shape=[16,16,16]", f"out_dir={tmp_path / 'two'}") == 0
    assert _run("dataset=phantom", "n=3", "shape=[16,16,16]", f"out_dir={tmp_path / 'three'}") == 0
    two, three = _hashes(tmp_path / "two"), _hashes(tmp_path / "three")
    assert two["phantom_0001.nii.gz"] == three["phantom_0001.nii.gz"]


def test_brain_population(tmp_path):
    args = ["dataset=brain", "n=3", "shape=[24,28,24]", "seed=3", "brain.fov_mm=[168,196,168]"]
    assert _run(*args, f"out_dir={tmp_path / 'a'}") == 0
    assert _run(*args, f"out_dir={tmp_path / 'b'}") == 0
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert list(manifest.columns[:4]) == ["file", "subject_id", "group", "age"]
    assert set(manifest["group"]) <= {"control", "patient"} and manifest["age"].dtype.kind == "f"
    assert manifest["age"].between(20, 85).all()
    image = nib.load(tmp_path / "a" / "brain_0000.nii.gz")
    assert image.shape == (24, 28, 24) and nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(image.header.get_zooms(), (7.0, 7.0, 7.0))
    data = image.get_fdata()
    # a brain in the middle of the grid, dark background at the corners
    assert data[12, 14, 12] > 5 * data[:3, :3, :3].mean()
    # MNI space: the brain's centre of mass lies within ~2 voxels of the template's (about (0, -18, 14) mm)
    com = np.array([np.sum(g * data) for g in np.indices(data.shape)]) / data.sum()
    com_mm = image.affine[:3, :3] @ com + image.affine[:3, 3]
    assert np.all(np.abs(com_mm - np.array([0.0, -18.0, 14.0])) < 14.0), com_mm


def test_brain_needs_nilearn_one_line(tmp_path, monkeypatch, capsys):
    from medsynth.data import brain

    brain.smoothed_template.cache_clear()
    real_import = builtins.__import__

    def no_nilearn(name, *args, **kwargs):
        if name.startswith("nilearn"):
            raise ImportError("No module named 'nilearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nilearn)
    assert cli.main(["data", "demo", "dataset=brain", "n=1", "shape=[8,8,8]", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'medsynth[demo]'" in err[0]
    assert not list(tmp_path.glob("*.nii.gz"))


@pytest.mark.parametrize(
    "override, key",
    [("dataset=knee", "dataset"), ("n=0", "n"), ("shape=[8,8]", "shape")],
)
def test_bad_config_is_one_line(tmp_path, capsys, override, key):
    assert _run(override, f"out_dir={tmp_path}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0]


def test_help_shows_defaults(capsys):
    assert cli.main(["data", "demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "dataset: phantom" in out and "lesion_probability" in out
    assert cli.main(["data", "--help"]) == 0
    assert "prepare" in capsys.readouterr().out
