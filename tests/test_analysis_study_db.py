"""`medsynth analyze db=URL` reads a study through medsynth.study.export and gives the same summary
as `medsynth study export` followed by `medsynth analyze ratings=CSV`."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsynth import cli
from medsynth.data.phantom import make_phantom
from medsynth.study import db as study_db
from tests.test_metrics_cli import FINGERPRINT, write_fingerprint

SMALL = ["render.grid=[16,16,16]", "render.png_size=64"]
FAST = ["bootstrap.n_resamples=50", "report.dpi=40"]


@pytest.fixture(autouse=True)
def _dispose():
    yield
    study_db.dispose_engines()


def test_analyze_reads_a_study_database(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for sub, prefix in (("real", "phantom"), ("syn", "sample")):
        (tmp_path / sub).mkdir()
        for i in range(5):
            vol, affine, _ = make_phantom((16, 16, 16), rng)
            nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / sub / f"{prefix}_{i:04d}.nii.gz"))
        write_fingerprint(tmp_path / sub, FINGERPRINT | {"shape": [16, 16, 16]})  # study create checks it
    url = f"sqlite:///{tmp_path / 's.db'}"
    steps = [
        [
            "create",
            f"db={url}",
            f"real_dir={tmp_path / 'real'}",
            f"synthetic_dir={tmp_path / 'syn'}",
            "n_cases=8",
            *SMALL,
        ],
        ["simulate", f"db={url}", "simulate.n_readers=2", "simulate.skill=[0.9,0.6]"],
        ["export", f"db={url}", f"out={tmp_path / 'ratings.csv'}"],
    ]
    for step in steps:
        assert cli.main(["study", *step]) == 0, capsys.readouterr().err
    assert cli.main(["analyze", f"db={url}", f"out_dir={tmp_path / 'from_db'}", *FAST]) == 0, (
        capsys.readouterr().err
    )
    from_csv = tmp_path / "from_csv"
    assert cli.main(["analyze", f"ratings={tmp_path / 'ratings.csv'}", f"out_dir={from_csv}", *FAST]) == 0
    a = json.loads((tmp_path / "from_db" / "summary.json").read_text())
    b = json.loads((from_csv / "summary.json").read_text())
    assert a["n_readers"] == 2 and a["n_ratings"] == b["n_ratings"] > 0
    assert a["pooled"] == b["pooled"] and a["agreement"] == b["agreement"] and a["mrmc"] == b["mrmc"]
    # readers added by `study simulate` are flagged in the database, the export and the report
    assert a["simulated_readers"] == ["sim_reader_01", "sim_reader_02"]
    assert "id=simulated-banner" in (tmp_path / "from_db" / "report.html").read_text()
    assert (
        tmp_path / "from_db" / "ratings.csv"
    ).is_file()  # the exported ratings are kept beside the summary
    capsys.readouterr()
    assert cli.main(["analyze", f"db={url}", "study=nope", f"out_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no study named 'nope'" in err[0]
    assert not (tmp_path / "x").exists()
