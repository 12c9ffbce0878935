"""DICOM integrity in `medsynth data prepare`: series that lie are refused with one line, or read right.

Every series is written here with pydicom from its shipped CT_small.dcm (16x16 slices, 1 mm pixels,
a 1000 HU block at known world coordinates); non-image objects come from pydicom's own test files.
"""

import copy
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid
from scipy import ndimage

from medsynth import cli
from medsynth.data.dicom_series import DicomSeries, check_series, scan_folder
from medsynth.data.reading import read_dicom_files

SIZE = 16
SMALL = ["spacing=[2,2,2]", "shape=[16,16,16]", "num_workers=1", "progress=false", "intensity=ct"]
#: the block: rows/columns 4..11 (1 mm pixels), slices 3..6
BLOCK_ROWS = slice(4, 12)
BLOCK_SLICES = range(3, 7)


def write_series(
    folder: Path,
    n: int = 10,
    step: float = 2.0,
    skip=(),
    modality: str = "CT",
    origin=(10.0, 20.0, 30.0),
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    number: int = 1,
    edit=None,
) -> str:
    """Write slices k = 0..n-1 (except ``skip``) at ``origin + k * step * normal`` (LPS mm); return the uid.

    ``edit(k, ds)`` may change slice k before it is saved.
    """
    base = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    for k in range(n):
        if k in skip:
            continue
        ds = copy.deepcopy(base)
        ds.Rows = ds.Columns = SIZE
        ds.PixelSpacing = [1.0, 1.0]
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.ImageOrientationPatient = list(orientation)
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * step * normal]
        ds.Modality = modality
        if modality == "MR":
            ds.SOPClassUID = pydicom.uid.MRImageStorage
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.SeriesInstanceUID, ds.SeriesNumber = uid, number
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        pixels = np.zeros((SIZE, SIZE), dtype=np.int16)
        if k in BLOCK_SLICES:
            pixels[BLOCK_ROWS, BLOCK_ROWS] = 1000
        ds.PixelData = pixels.tobytes()
        if edit is not None:
            edit(k, ds)
        ds.save_as(folder / f"{modality}{number}_{k:03d}.dcm")
    return uid


def _prepare(src, out, *extra):
    return cli.main(["data", "prepare", f"input={src}", f"out_dir={out}", *SMALL, *extra])


def _refused(capsys, src: Path, out: Path, *words: str) -> str:
    """Prepare fails, prints one 'bad input' line holding ``words``, and writes nothing."""
    assert _prepare(src, out) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "bad input" in line]
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def _block_centre_lps(step: float, origin=(10.0, 20.0, 30.0)) -> np.ndarray:
    centre_pixel = (BLOCK_ROWS.start + BLOCK_ROWS.stop - 1) / 2.0
    centre_slice = (BLOCK_SLICES[0] + BLOCK_SLICES[-1]) / 2.0
    return np.asarray(origin) + np.array([centre_pixel, centre_pixel, centre_slice * step])


def test_regular_series_lands_in_world_space_within_a_voxel(tmp_path, capsys):
    write_series(tmp_path / "src" / "ct", n=10, step=2.0)
    out = tmp_path / "out"
    assert _prepare(tmp_path / "src", out, "crop_foreground.enabled=false") == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest["subject_id"]) == ["ct"] and manifest["series_instance_uid"][0].startswith("1.2")
    image = nib.load(out / "ct.nii.gz")
    data = image.get_fdata()
    centre_ras = image.affine[:3, :3] @ np.asarray(ndimage.center_of_mass(data > 0)) + image.affine[:3, 3]
    expected = _block_centre_lps(2.0) * np.array([-1.0, -1.0, 1.0])
    assert np.abs(centre_ras - expected).max() <= 2.0, (centre_ras, expected)


def test_missing_slices_are_refused_not_stacked(tmp_path, capsys):
    """Three missing slices: GDCM stacks the rest evenly (anatomy moves by ~5 voxels); refused here."""
    write_series(tmp_path / "src" / "ct", n=12, step=2.0, skip=(7, 8, 9))
    line = _refused(capsys, tmp_path / "src", tmp_path / "out", "non-uniform slice spacing", "3 slice(s) missing")
    assert str(tmp_path / "src" / "ct") in line and "uid 1.2" in line


def test_small_jitter_within_tolerance_is_accepted(tmp_path):
    def jitter(k, ds):
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], ds.ImagePositionPatient[2] + 0.005 * (k % 2)]

    write_series(tmp_path / "src" / "ct", n=8, step=2.0, edit=jitter)
    assert _prepare(tmp_path / "src", tmp_path / "out") == 0


def test_ct_and_mr_in_one_folder_are_two_subjects_or_filtered(tmp_path, capsys):
    src = tmp_path / "src" / "patient"
    ct_uid = write_series(src, n=8, modality="CT", number=2)
    mr_uid = write_series(src, n=8, step=3.0, modality="MR", number=5)
    assert _prepare(tmp_path / "src", tmp_path / "out") == 0
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert sorted(manifest["subject_id"]) == ["patient_CT2", "patient_MR5"]
    assert sorted(manifest["series_instance_uid"]) == sorted([ct_uid, mr_uid])
    assert _prepare(tmp_path / "src", tmp_path / "mr_only", "series=[MR]") == 0
    manifest = pd.read_csv(tmp_path / "mr_only" / "manifest.csv")
    assert list(manifest["series_instance_uid"]) == [mr_uid]


def test_truncated_slice_is_refused(tmp_path, capsys):
    folder = tmp_path / "src" / "ct"
    write_series(folder, n=8)
    victim = sorted(folder.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:-200])
    _refused(capsys, tmp_path / "src", tmp_path / "out", "truncated", victim.name)


def test_slice_cut_in_half_is_refused(tmp_path, capsys):
    folder = tmp_path / "src" / "ct"
    write_series(folder, n=8)
    victim = sorted(folder.iterdir())[4]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])
    assert _prepare(tmp_path / "src", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert victim.name in err and not (tmp_path / "out").exists()


def test_siemens_mosaic_is_refused(tmp_path, capsys):
    def mosaic(k, ds):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
        ds.add_new((0x0019, 0x0010), "LO", "SIEMENS CSA HEADER")
        ds.add_new((0x0019, 0x100A), "US", 16)

    write_series(tmp_path / "src" / "fmri", n=4, edit=mosaic)
    _refused(capsys, tmp_path / "src", tmp_path / "out", "MOSAIC")


@pytest.mark.parametrize("name, words", [("rtstruct.dcm", "RT Structure Set"), ("test-SR.dcm", "SR Storage")])
def test_non_image_objects_shipped_by_pydicom_are_refused(tmp_path, capsys, name, words):
    folder = tmp_path / "src" / "object"
    folder.mkdir(parents=True)
    shutil.copy(pydicom.data.get_testdata_file(name), folder / name)
    _refused(capsys, tmp_path / "src", tmp_path / "out", "not an image", words)


@pytest.mark.parametrize(
    "sop_class, words",
    [
        ("1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage"),
        ("1.2.840.10008.5.1.4.1.1.11.1", "Presentation State"),
    ],
)
def test_seg_and_presentation_state_are_refused(tmp_path, capsys, sop_class, words):
    """A SEG carries a binary mask as pixels: it must not be prepared as an image."""

    def relabel(k, ds):
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.Modality = "SEG" if sop_class.endswith("66.4") else "PR"
        if ds.Modality == "PR":
            del ds.PixelData

    write_series(tmp_path / "src" / "seg", n=4, edit=relabel)
    _refused(capsys, tmp_path / "src", tmp_path / "out", words)


def test_enhanced_multiframe_is_refused(tmp_path, capsys):
    def enhanced(k, ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData * 2

    write_series(tmp_path / "src" / "enhanced", n=1, edit=enhanced)
    _refused(capsys, tmp_path / "src", tmp_path / "out", "multi-frame", "Enhanced CT")


def test_duplicate_positions_are_refused(tmp_path, capsys):
    def same_place(k, ds):
        if k == 5:
            ds.ImagePositionPatient = [10.0, 20.0, 30.0 + 4 * 2.0]

    write_series(tmp_path / "src" / "echoes", n=8, edit=same_place)
    _refused(capsys, tmp_path / "src", tmp_path / "out", "duplicate slice positions", "8 files at 7 positions")


def test_mixed_orientations_are_refused(tmp_path, capsys):
    def tilt(k, ds):
        if k == 3:
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.8, 0.6]

    write_series(tmp_path / "src" / "mixed", n=8, edit=tilt)
    _refused(capsys, tmp_path / "src", tmp_path / "out", "mixed orientations")


def test_sheared_stack_is_refused(tmp_path, capsys):
    def shear(k, ds):
        ds.ImagePositionPatient = [10.0, 20.0 + 1.5 * k, 30.0 + 2.0 * k]

    write_series(tmp_path / "src" / "tilted", n=8, edit=shear)
    _refused(capsys, tmp_path / "src", tmp_path / "out", "not stacked along their normal")


def test_itk_warnings_never_reach_stderr_only(tmp_path, capfd):
    """Reading slices with a gap straight through SimpleITK: its warning is collected, not printed."""
    folder = tmp_path / "gap"
    write_series(folder, n=8, skip=(3, 4))
    files = sorted(folder.iterdir(), key=lambda p: p.name)
    _, _, warnings = read_dicom_files(files)
    assert any("Non uniform sampling" in w for w in warnings), warnings
    assert "Non uniform" not in capfd.readouterr().err


def test_scan_folder_groups_by_series_and_reports_unreadable(tmp_path):
    folder = tmp_path / "mixed"
    ct = write_series(folder, n=3, number=1)
    mr = write_series(folder, n=3, number=2, modality="MR")
    (folder / "notes.dcm").write_text("not dicom at all")
    series, unreadable = scan_folder(folder, sorted(folder.iterdir()))
    assert [s.uid for s in series] == [ct, mr] and all(len(s.files) == 3 for s in series)
    assert [p.name for p, _ in unreadable] == ["notes.dcm"]
    files = check_series(series[0])
    assert [f.name for f in files] == ["CT1_000.dcm", "CT1_001.dcm", "CT1_002.dcm"]
    assert isinstance(series[1], DicomSeries) and "MR" in series[1].label


def test_truncated_file_shipped_by_pydicom_is_refused(tmp_path, capsys):
    """pydicom's MR_truncated.dcm: a real MR slice whose pixel data ends early."""
    folder = tmp_path / "src" / "mr"
    write_series(folder, n=6, modality="MR")
    shutil.copy(pydicom.data.get_testdata_file("MR_truncated.dcm"), folder / "MR_truncated.dcm")
    assert _prepare(tmp_path / "src", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "MR_truncated.dcm is truncated (pixel data 8130 of 8192 bytes)" in err, err
    assert not (tmp_path / "out").exists()


def test_csv_row_pointing_to_a_folder_of_several_series(tmp_path, capsys):
    folder = tmp_path / "scans" / "patient"
    ct = write_series(folder, n=6, number=1)
    write_series(folder, n=6, number=2, modality="MR")
    csv = tmp_path / "list.csv"
    pd.DataFrame({"path": ["scans/patient"], "label": [1]}).to_csv(csv, index=False)
    assert _prepare(csv, tmp_path / "out") == 2
    line = [x for x in capsys.readouterr().err.splitlines() if "bad input" in x][0]
    assert "holds 2 DICOM series" in line and "series_instance_uid" in line
    pd.DataFrame({"path": ["scans/patient"], "series_instance_uid": [ct], "label": [1]}).to_csv(csv, index=False)
    assert _prepare(csv, tmp_path / "out") == 0
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert list(manifest["series_instance_uid"]) == [ct] and list(manifest["label"]) == [1]


def test_pydicom_warnings_become_medsynth_warnings(tmp_path, capsys):
    def odd_uid(k, ds):
        ds.SeriesInstanceUID = "1.2.840.99_x"  # not a valid UI value: pydicom warns when reading it

    with pytest.warns(UserWarning):
        write_series(tmp_path / "src" / "ct", n=6, edit=odd_uid)
    assert _prepare(tmp_path / "src", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "medsynth data prepare: warning:" in err and "pydicom: Invalid value for VR UI: '1.2.840.99_x'" in err
