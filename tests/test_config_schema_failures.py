"""Failures leave nothing: a run that fails before its first checkpoint removes its run folder,
errors wrapped by libraries (MONAI's "applying transform") still reach the user as one line."""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, run_train  # noqa: E402

from medsynth.errors import InputFileError, user_error_in  # noqa: E402
from medsynth.io.run_dir import remove_unfinished_run  # noqa: E402


def _spoil(root: Path, how: str) -> Path:
    path = root / "phantom_0001.nii.gz"
    image = nib.load(path)
    data = image.get_fdata().astype(np.float32)
    if how == "nan":
        data[3, 3, 3] = np.nan
    else:
        data = data[:, :, :8]
    nib.save(nib.Nifti1Image(data, image.affine), str(path))
    return path


@pytest.mark.parametrize("how, words", [("nan", "NaN/Inf"), ("shape", "differs from the prepared shape")])
def test_failed_train_leaves_no_run_dir(tmp_path, capsys, how, words):
    root = make_prepared(tmp_path / "prepared", n=4)
    bad = _spoil(root, how)
    run_dir = tmp_path / "runs" / "one"
    quiet = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]  # no handler on a closed capsys stream
    rc = run_train([*TINY_OVERRIDES, *quiet, f"data.root={root}", f"hydra.run.dir={run_dir}", "trainer.max_steps=2"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert rc == 2 and len(err) == 1 and bad.name in err[0] and words in err[0], err
    # nothing is left unless a checkpoint was saved before the bad volume came up
    assert not run_dir.exists() or any((run_dir / "checkpoints").glob("*.ckpt"))
    if how == "nan":  # every file is checked before training: fails before any output
        assert not run_dir.exists()


def test_remove_unfinished_run_keeps_checkpoints_and_foreign_files(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "train.log").write_text("log")
    (run / "csv").mkdir()
    assert remove_unfinished_run(run) and not run.exists()
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"model")
    assert not remove_unfinished_run(run) and (run / "checkpoints" / "last.ckpt").exists()
    mine = tmp_path / "mine"
    (mine / ".hydra").mkdir(parents=True)
    (mine / "thesis.tex").write_text("keep me")
    assert not remove_unfinished_run(mine) and (mine / "thesis.tex").read_text() == "keep me"


def test_user_error_found_through_wrapping():
    try:
        try:
            raise InputFileError("a.nii.gz", "contains 1 NaN/Inf voxel(s)")
        except InputFileError as inner:
            raise RuntimeError("applying transform <Check>") from inner
    except RuntimeError as outer:
        assert str(user_error_in(outer)) == "a.nii.gz: contains 1 NaN/Inf voxel(s)"
    assert user_error_in(ValueError("bug")) is None


def test_failed_study_command_leaves_no_new_database(tmp_path, capsys):
    from medsynth import cli

    db = tmp_path / "typo.db"
    assert cli.main(["study", "export", f"db=sqlite:///{db}", f"out={tmp_path / 'r.csv'}"]) == 2
    assert "typo.db" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_leftovers_remove_only_what_the_command_created(tmp_path):
    from medsynth.io.leftovers import Leftovers

    old_db = tmp_path / "old.db"
    old_db.write_bytes(b"")
    keep = Leftovers.before([f"db={old_db}", f"out_dir={tmp_path}"])
    assert keep.new_database is None and keep.new_out_dir is None
    new = Leftovers.before([f"db=sqlite:///{tmp_path / 'new.db'}", f"out_dir={tmp_path / 'out'}"])
    (tmp_path / "new.db").write_bytes(b"x")
    (tmp_path / "new.db-wal").write_bytes(b"x")
    (tmp_path / "out" / "figures").mkdir(parents=True)
    assert sorted(p.name for p in new.remove()) == ["new.db", "new.db-wal", "out"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]
    samples = Leftovers.before([f"out_dir={tmp_path / 'samples'}"])
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "sample_00000.nii.gz").write_bytes(b"finished")
    assert samples.remove() == [] and (tmp_path / "samples" / "sample_00000.nii.gz").exists()
