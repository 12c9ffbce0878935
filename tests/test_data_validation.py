"""validate_volume_file: one InputFileError (path + reason) per kind of bad file; real files pass."""

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medsynth.data.validation import validate_volume_file
from medsynth.errors import InputFileError

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _save(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array.astype(np.float32), AFFINE), str(path))
    return path


def _volume(shape=(8, 9, 10)) -> np.ndarray:
    return np.random.default_rng(0).random(shape).astype(np.float32)


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bad file, expected words in the reason); shared with test_data_prepare."""
    good = _save(folder / "good_src.nii.gz", _volume())
    blob = good.read_bytes()
    good.unlink()
    files = {}
    (folder / "truncated.nii.gz").write_bytes(blob[: len(blob) // 2])
    files["truncated_gzip"] = (folder / "truncated.nii.gz", "truncated gzip")
    damaged = bytearray(blob)
    damaged[40:70] = bytes(30)
    (folder / "corrupt.nii.gz").write_bytes(bytes(damaged))
    files["corrupt_gzip"] = (folder / "corrupt.nii.gz", "corrupt gzip")
    (folder / "empty.nii.gz").write_bytes(b"")
    files["empty"] = (folder / "empty.nii.gz", "empty")
    (folder / "notes.nii.gz").write_bytes(gzip.compress(b"this is a text file, not a scan\n" * 20))
    files["not_image"] = (folder / "notes.nii.gz", "not an image")
    nan = _volume()
    nan[1, 2, 3] = np.nan
    files["nan"] = (_save(folder / "nan.nii.gz", nan), "NaN/Inf")
    inf = _volume()
    inf[0, 0, 0] = np.inf
    files["inf"] = (_save(folder / "inf.nii", inf), "NaN/Inf")
    files["2d"] = (_save(folder / "slice2d.nii.gz", _volume((8, 9))), "2D image")
    files["single_slice"] = (_save(folder / "single_slice.nii.gz", _volume((8, 9, 1))), "2D image")
    files["5d"] = (_save(folder / "five_d.nii.gz", _volume((4, 4, 4, 2, 2))), "5D image")
    raw = _save(folder / "raw_src.nii", _volume()).read_bytes()
    (folder / "raw_src.nii").unlink()
    (folder / "truncated_raw.nii").write_bytes(raw[:-400])
    files["truncated_raw"] = (folder / "truncated_raw.nii", "could the file be damaged")
    return files


@pytest.fixture
def bad(tmp_path):
    return bad_files(tmp_path)


@pytest.mark.parametrize(
    "case",
    [
        "truncated_gzip",
        "corrupt_gzip",
        "empty",
        "not_image",
        "nan",
        "inf",
        "2d",
        "single_slice",
        "5d",
        "truncated_raw",
    ],
)
def test_bad_file_raises_one_line_with_path_and_reason(bad, case):
    path, words = bad[case]
    with pytest.raises(InputFileError) as info:
        validate_volume_file(path)
    message = str(info.value)
    assert info.value.path == str(path)
    assert message.startswith(str(path)) and words in message
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        validate_volume_file(tmp_path / "nope.nii.gz")
    (tmp_path / "dir.nii").mkdir()
    with pytest.raises(InputFileError, match="folder"):
        validate_volume_file(tmp_path / "dir.nii")


def test_4d_only_when_allowed():
    example4d = NIBABEL_DATA / "example4d.nii.gz"
    with pytest.raises(InputFileError, match="4D image"):
        validate_volume_file(example4d)
    validate_volume_file(example4d, allow_4d=True)


@pytest.mark.parametrize("name", ["anatomical.nii", "reoriented_anat_moved.nii"])
def test_files_written_by_others_pass(name):
    validate_volume_file(NIBABEL_DATA / name)


def test_nifti2_is_read(tmp_path):
    validate_volume_file(NIBABEL_DATA / "example_nifti2.nii.gz", allow_4d=True)


def test_unreadable_file_names_permission(tmp_path):
    """A file the user may not read; as root the check runs as user 'nobody' (root reads everything)."""
    path = _save(tmp_path / "locked.nii.gz", _volume())
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(InputFileError, match="permission denied"):
            validate_volume_file(path)
        return
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
    tmp_path.chmod(0o755)
    code = (
        "import sys; from medsynth.data.validation import validate_volume_file\n"
        "from medsynth.errors import InputFileError\n"
        "try:\n    validate_volume_file(sys.argv[1])\nexcept InputFileError as e:\n    print(e); sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    assert proc.returncode == 3, proc.stderr[-500:]
    assert proc.stdout.strip() == f"{path}: cannot read file (permission denied)"


# --- one subject, one entry; manifest schemas (through `medsynth data prepare`) ---------------------

PREPARE_SMALL = ["spacing=[8,8,8]", "shape=[8,8,8]", "num_workers=1", "progress=false"]


def _prepare(src, out, *extra):
    from medsynth import cli

    return cli.main(["data", "prepare", f"input={src}", f"out_dir={out}", *PREPARE_SMALL, *extra])


def _two_scans(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _save(folder / "a.nii.gz", _volume((12, 12, 12)))
    _save(folder / "b.nii.gz", np.random.default_rng(1).random((12, 12, 12)))
    return folder


def test_symlinked_folder_is_the_same_subject(tmp_path, capsys):
    src = tmp_path / "src"
    _two_scans(src / "site1")
    (src / "site1_again").symlink_to(src / "site1", target_is_directory=True)
    (src / "site1" / "loop").symlink_to(src, target_is_directory=True)  # a loop is not followed forever
    assert _prepare(src, tmp_path / "out") == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "bad input" in line]
    assert len(lines) == 2 and all("same scan as" in line and "same file" in line for line in lines), lines
    assert not (tmp_path / "out").exists()
    assert _prepare(src, tmp_path / "out", "on_duplicate=skip") == 0
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert sorted(manifest["subject_id"]) == ["site1_a", "site1_b"]
    assert manifest["duplicate_sources"].notna().all()


def test_csv_listing_a_scan_twice_or_a_copy(tmp_path, capsys):
    _two_scans(tmp_path)
    shutil.copy(tmp_path / "a.nii.gz", tmp_path / "a_copy.nii.gz")
    csv = tmp_path / "list.csv"
    pd.DataFrame({"path": ["a.nii.gz", "b.nii.gz", "./a.nii.gz", "a_copy.nii.gz"], "label": [0, 1, 0, 0]}).to_csv(
        csv, index=False
    )
    assert _prepare(csv, tmp_path / "out") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "bad input" in line]
    assert len(err) == 2 and "same file" in err[0] and "same content" in err[1], err
    assert _prepare(csv, tmp_path / "out", "on_duplicate=keep") == 0
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert len(manifest) == 4 and list(manifest["duplicate_of"].fillna("")) == ["", "", "a", "a"]


def test_bad_on_duplicate_value_is_one_line(tmp_path, capsys):
    _two_scans(tmp_path / "src")
    assert _prepare(tmp_path / "src", tmp_path / "out", "on_duplicate=maybe") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "on_duplicate" in err[0]


@pytest.mark.parametrize(
    "content, words",
    [
        ({"training": [{"label": "a.nii.gz"}]}, "entry 0: no 'image'"),
        ({"training": {"image": "a.nii.gz"}}, "must be a list"),
        ({"training": ["a.nii.gz", 3]}, "entry 1"),
    ],
)
def test_decathlon_schema_is_one_line(tmp_path, capsys, content, words):
    import json

    _two_scans(tmp_path / "src")
    (tmp_path / "src" / "dataset.json").write_text(json.dumps(content))
    assert _prepare(tmp_path / "src" / "dataset.json", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "dataset.json" in err[0], err
