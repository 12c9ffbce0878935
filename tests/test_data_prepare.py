"""medsynth data prepare through the real CLI, on files written by others and on bad inputs."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medsynth import cli
from medsynth.data import prepare as prepare_module
from medsynth.io.atomic import atomic_path
from tests.test_data_validation import bad_files

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
SMALL = ["spacing=[4,4,4]", "shape=[32,32,32]", "num_workers=1", "progress=false"]


def _prepare(src, out, *extra: str) -> int:
    return cli.main(["data", "prepare", f"input={src}", f"out_dir={out}", *SMALL, *extra])


def _centre_of_mass_mm(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(ndimage.center_of_mass(data)) + affine[:3, 3]


def _check_prepared(out: Path, shape=(32, 32, 32), spacing=4.0) -> pd.DataFrame:
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns[:5]) == ["file", "subject_id", "source", "intensity_low", "intensity_high"]
    for name in manifest["file"]:
        image = nib.load(out / name)
        data = image.get_fdata()
        assert image.shape == shape and image.get_data_dtype() == np.float32
        assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
        assert np.allclose(image.header.get_zooms(), spacing, atol=1e-4)
        assert data.min() >= -1.0 and data.max() <= 1.0 and data.max() > 0.0
    info = json.loads((out / "preprocessing.json").read_text())
    assert info["version"] == 1 and info["orientation"] == "RAS" and info["shape"] == list(shape)
    assert info["spacing"] == [spacing] * 3 and info["intensity"]["mode"] in ("mr", "ct", "none")
    assert "medsynth_version" in info and not list(out.glob(".tmp-*"))
    return manifest


def test_nibabel_files_keep_anatomy_in_place(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz"):
        shutil.copy(NIBABEL_DATA / name, src / name)
    shutil.copy(NIBABEL_DATA / "reoriented_anat_moved.nii", src / "sub" / "reoriented_anat_moved.nii")
    assert _prepare(src, tmp_path / "out") == 0
    captured = capsys.readouterr()
    manifest = _check_prepared(tmp_path / "out")
    assert set(manifest["subject_id"]) == {
        "anatomical",
        "example4d",
        "example_nifti2",
        "sub_reoriented_anat_moved",
    }
    warnings = [line for line in captured.err.splitlines() if "4D image" in line]
    assert len(warnings) == 2 and all("using volume 0" in w for w in warnings)
    # anatomical.nii is stored LAS: the output is RAS and its intensity-weighted centre stays in place (mm)
    for name, sid in [
        ("anatomical.nii", "anatomical"),
        ("reoriented_anat_moved.nii", "sub_reoriented_anat_moved"),
    ]:
        source = nib.load(NIBABEL_DATA / name)
        row = manifest.set_index("subject_id").loc[sid]
        normalised = np.clip(
            (source.get_fdata() - row["intensity_low"]) / (row["intensity_high"] - row["intensity_low"]), 0, 1
        )
        out = nib.load(tmp_path / "out" / f"{sid}.nii.gz")
        com_in = _centre_of_mass_mm(normalised, source.affine)
        com_out = _centre_of_mass_mm((out.get_fdata() + 1.0) / 2.0, out.affine)
        assert np.linalg.norm(com_in - com_out) < 4.0, (name, com_in, com_out)


def test_mni_template_centre_of_mass_within_a_voxel(tmp_path):
    template = (
        Path(nib.__file__).parents[1]
        / "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    )
    assert (
        cli.main(
            [
                "data",
                "prepare",
                f"input={template}",
                f"out_dir={tmp_path}",
                "spacing=[6,6,6]",
                "shape=[40,40,40]",
                "num_workers=1",
            ]
        )
        == 0
    )
    manifest = _check_prepared(tmp_path, shape=(40, 40, 40), spacing=6.0)
    row = manifest.iloc[0]
    source = nib.load(template)
    data = np.clip(
        (source.get_fdata() - row["intensity_low"]) / (row["intensity_high"] - row["intensity_low"]), 0, 1
    )
    out = nib.load(tmp_path / row["file"])
    com_in = _centre_of_mass_mm(data, source.affine)
    com_out = _centre_of_mass_mm((out.get_fdata() + 1.0) / 2.0, out.affine)
    assert np.all(np.abs(com_in - com_out) < 6.0), (com_in, com_out)
    # mapping back with the recorded window reproduces the source intensity range
    back = row["intensity_low"] + (out.get_fdata() + 1.0) / 2.0 * (
        row["intensity_high"] - row["intensity_low"]
    )
    assert abs(back.max() - np.percentile(source.get_fdata(), 99.5)) < 1e-3 * back.max()


def _dicom_series(folder: Path, slices: int) -> Path:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    source = get_testdata_file("CT_small.dcm")
    if slices == 1:
        shutil.copy(source, folder / "CT_small.dcm")
        return folder
    for k in range(slices):
        ds = pydicom.dcmread(source)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + k * float(ds.SliceThickness)]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"IM{k:04d}")  # scanner-style names without an extension
    return folder


def test_dicom_series_folder_ct(tmp_path, capsys):
    _dicom_series(tmp_path / "src" / "patient1" / "ct", slices=6)
    out = tmp_path / "out"
    assert _prepare(tmp_path / "src", out, "intensity.mode=ct", "crop_foreground.enabled=false") == 0
    manifest = _check_prepared(out)
    assert list(manifest["subject_id"]) == ["patient1_ct"]
    assert manifest["intensity_low"][0] == -1000.0 and manifest["intensity_high"][0] == 1000.0
    assert json.loads((out / "preprocessing.json").read_text())["intensity"]["unit"] == "HU"
    # LPS -> RAS: the first DICOM voxel (LPS x=-158.1, y=-179.0) is at RAS (+158.1, +179.0); the
    # output grid is centred on the 84.7 x 84.7 x 30 mm slab, around RAS (115.8, 136.7, -63.2)
    image = nib.load(out / "patient1_ct.nii.gz")
    centre = image.affine @ np.array([15.5, 15.5, 15.5, 1.0])
    assert np.allclose(centre[:3], [158.14 - 42.0, 179.04 - 42.0, -75.7 + 12.5], atol=4.0), centre


def test_single_dicom_slice_is_2d(tmp_path, capsys):
    _dicom_series(tmp_path / "src" / "ct", slices=1)
    assert _prepare(tmp_path / "src", tmp_path / "out", "intensity.mode=ct") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("2D image" in line and str(tmp_path / "src" / "ct") in line for line in err)
    assert not (tmp_path / "out").exists()


def test_mha_and_nrrd_match_simpleitk_nifti(tmp_path):
    """ITK files (LPS, oblique) land in the same RAS place as SimpleITK's own NIfTI export."""
    array = np.zeros((20, 24, 16), dtype=np.float32)  # (Z, Y, X) in ITK order
    array[5:15, 6:20, 3:10] = 100.0
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((3.0, 2.5, 4.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    src = tmp_path / "src"
    src.mkdir()
    sitk.WriteImage(image, str(src / "scan_a.mha"))
    sitk.WriteImage(image, str(src / "scan_b.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "reference.nii.gz"))
    reference = nib.load(tmp_path / "reference.nii.gz")
    from medsynth.data.validation import load_checked_volume

    for name in ("scan_a.mha", "scan_b.nrrd"):
        volume = load_checked_volume(src / name)
        assert np.allclose(volume.affine, reference.affine, atol=1e-4)
        assert np.array_equal(volume.array, reference.get_fdata(dtype=np.float32))
    out = tmp_path / "out"
    assert _prepare(src, out) == 0
    manifest = _check_prepared(out)
    com_in = _centre_of_mass_mm(reference.get_fdata(), reference.affine)
    for name in manifest["file"]:
        prepared = nib.load(out / name)
        com_out = _centre_of_mass_mm((prepared.get_fdata() + 1.0) / 2.0, prepared.affine)
        assert np.linalg.norm(com_in - com_out) < 4.0


def test_manifest_columns_carried_and_decathlon(tmp_path):
    assert cli.main(["data", "demo", "n=3", "shape=[16,16,16]", f"out_dir={tmp_path / 'demo'}"]) == 0
    out = tmp_path / "out"
    assert _prepare(tmp_path / "demo", out, "shape=[24,24,24]", "spacing=[8,8,8]") == 0
    manifest = _check_prepared(out, shape=(24, 24, 24), spacing=8.0)
    demo = pd.read_csv(tmp_path / "demo" / "manifest.csv")
    assert list(manifest["subject_id"]) == list(demo["subject_id"])
    assert list(manifest["lesion"]) == list(demo["lesion"]) and "head_radius_x" in manifest.columns
    # a user CSV with relative paths and a label, and a Decathlon dataset.json
    pd.DataFrame(
        {"path": ["demo/phantom_0000.nii.gz", "demo/phantom_0002.nii.gz"], "diagnosis": ["a", "b"]}
    ).to_csv(tmp_path / "mine.csv", index=False)
    assert _prepare(tmp_path / "mine.csv", tmp_path / "out_csv", "shape=[24,24,24]", "spacing=[8,8,8]") == 0
    assert list(pd.read_csv(tmp_path / "out_csv" / "manifest.csv")["diagnosis"]) == ["a", "b"]
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "name": "demo",
                "training": [{"image": "./demo/phantom_0001.nii.gz", "label": "./demo/labels/phantom_0001.nii.gz"}],
            }
        )
    )
    assert (
        _prepare(tmp_path / "dataset.json", tmp_path / "out_dec", "shape=[24,24,24]", "spacing=[8,8,8]") == 0
    )
    assert list(pd.read_csv(tmp_path / "out_dec" / "manifest.csv")["subject_id"]) == ["phantom_0001"]


def _good_and_bad(tmp_path: Path) -> tuple[Path, dict]:
    src = tmp_path / "src"
    src.mkdir()
    bad = bad_files(src)
    shutil.copy(NIBABEL_DATA / "anatomical.nii", src / "good.nii")
    constant = nib.Nifti1Image(np.full((8, 8, 8), 5.0, dtype=np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(constant, src / "constant.nii.gz")
    bad["constant"] = (src / "constant.nii.gz", "constant image")
    return src, bad


def test_bad_inputs_stop_one_line_each_nothing_written(tmp_path, capsys):
    src, bad = _good_and_bad(tmp_path)
    assert _prepare(src, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    for path, words in bad.values():
        lines = [line for line in err if f"{path}:" in line]
        assert len(lines) == 1 and words in lines[0], (path, err)
    assert "nothing written" in err[-1] and len(err) == len(bad) + 1
    assert not (tmp_path / "out").exists()


def test_on_error_skip_writes_good_ones_and_skipped_csv(tmp_path, capsys):
    src, bad = _good_and_bad(tmp_path)
    assert _prepare(src, tmp_path / "out", "on_error=skip") == 0
    manifest = _check_prepared(tmp_path / "out")
    assert list(manifest["subject_id"]) == ["good"]
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert sorted(skipped["path"]) == sorted(str(p) for p, _ in bad.values())
    for path, words in bad.values():
        assert words in skipped.set_index("path").loc[str(path), "reason"]


def test_manifest_row_pointing_to_missing_file(tmp_path, capsys):
    shutil.copy(NIBABEL_DATA / "anatomical.nii", tmp_path / "a.nii")
    pd.DataFrame({"file": ["a.nii", "gone.nii.gz"], "label": [0, 1]}).to_csv(
        tmp_path / "list.csv", index=False
    )
    assert _prepare(tmp_path / "list.csv", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'gone.nii.gz'}: file does not exist (manifest list.csv row 3)" in err
    assert not (tmp_path / "out").exists()


def test_rerun_skips_done_and_interrupted_run_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    assert cli.main(["data", "demo", "n=4", "shape=[16,16,16]", f"out_dir={tmp_path / 'demo'}"]) == 0
    out = tmp_path / "out"
    real = prepare_module.write_nifti
    calls = {"n": 0}

    def interrupted_after_two(path, array, affine):
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C while the third file is being written
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"half")
                raise KeyboardInterrupt
        return real(path, array, affine)

    monkeypatch.setattr(prepare_module, "write_nifti", interrupted_after_two)
    assert _prepare(tmp_path / "demo", out) == 130
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["phantom_0000.nii.gz", "phantom_0001.nii.gz"]
    assert not list(out.glob(".tmp-*")) and not (out / "manifest.csv").exists()
    monkeypatch.setattr(prepare_module, "write_nifti", real)
    capsys.readouterr()
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert _prepare(tmp_path / "demo", out) == 0
    assert "prepared 2 volume(s), 2 already done" in capsys.readouterr().out
    assert all(out.joinpath(name).stat().st_mtime_ns == t for name, t in kept.items())
    _check_prepared(out)
    # different settings: nothing is reused
    assert (
        _prepare(
            tmp_path / "demo", out, "intensity.mode=none", "intensity.none.low=0", "intensity.none.high=2"
        )
        == 0
    )
    assert "prepared 4 volume(s), 0 already done" in capsys.readouterr().out


def test_parallel_workers_match_serial(tmp_path):
    assert cli.main(["data", "demo", "n=3", "shape=[16,16,16]", f"out_dir={tmp_path / 'demo'}"]) == 0
    assert _prepare(tmp_path / "demo", tmp_path / "serial") == 0
    args = [
        "data",
        "prepare",
        f"input={tmp_path / 'demo'}",
        f"out_dir={tmp_path / 'parallel'}",
        *SMALL[:2],
        "num_workers=2",
    ]
    assert cli.main(args) == 0
    for name in ("phantom_0000.nii.gz", "phantom_0002.nii.gz"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes()


@pytest.mark.parametrize(
    "override, key",
    [
        ("on_error=maybe", "on_error"),
        ("intensity.mode=pet", "intensity.mode"),
        ("spacing=[0,1,1]", "spacing"),
    ],
)
def test_bad_config_is_one_line(tmp_path, capsys, override, key):
    shutil.copy(NIBABEL_DATA / "anatomical.nii", tmp_path / "a.nii")
    assert _prepare(tmp_path / "a.nii", tmp_path / "out", override) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0]


def test_missing_input_and_help(tmp_path, capsys):
    assert cli.main(["data", "prepare", f"out_dir={tmp_path}"]) == 2
    assert "input" in capsys.readouterr().err
    assert _prepare(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "input does not exist" in capsys.readouterr().err
    assert cli.main(["data", "prepare", "--help"]) == 0
    assert "on_error: stop" in capsys.readouterr().out


def test_intensity_shorthand_means_mode(tmp_path):
    """DESIGN.md's `intensity=ct` is the same as `intensity.mode=ct`."""
    src = tmp_path / "src"
    assert cli.main(["data", "demo", "dataset=phantom", "n=2", "shape=[16,16,16]", "seed=0", f"out_dir={src}"]) == 0
    assert _prepare(src, tmp_path / "out", "shape=[16,16,16]", "spacing=[12,12,12]", "intensity=ct") == 0
    record = json.loads((tmp_path / "out" / "preprocessing.json").read_text())
    assert record["intensity"]["mode"] == "ct" and record["intensity"]["unit"] == "HU"
