"""`medsynth study audit` and the refusal at `study create`: a leaky study is caught, a clean one is not."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import select

from medsynth import cli
from medsynth.data.phantom import make_phantom
from medsynth.study import audit as study_audit
from medsynth.study import db as study_db
from medsynth.study.models import Study
from medsynth.study.service import StudyService
from tests.test_metrics_cli import FINGERPRINT, write_fingerprint

SMALL = ["render.grid=[16,16,16]", "render.png_size=48", "n_cases=16"]


@pytest.fixture(autouse=True)
def _dispose():
    yield
    study_db.dispose_engines()


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """real: phantoms in raw scanner-like units on a 16^3 grid; leaky: synthetic in model units
    [-1, 1] on a 24^3 grid; clean: synthetic from the same space as real. Every folder carries the
    same preprocessing fingerprint: the leaky one's is wrong (copied), which the fingerprint check
    cannot see and the audit must."""
    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(5)
    for name in ("real", "leaky", "clean"):
        (root / name).mkdir()
    for i in range(8):
        vol, affine, _ = make_phantom((16, 16, 16), rng)
        nib.save(nib.Nifti1Image((vol * 900 + 100).astype(np.float32), affine), str(root / "real" / f"r_{i}.nii.gz"))
        vol, affine, _ = make_phantom((24, 24, 24), rng)
        nib.save(nib.Nifti1Image((vol * 2 - 1).astype(np.float32), affine), str(root / "leaky" / f"s_{i}.nii.gz"))
        vol, affine, _ = make_phantom((16, 16, 16), rng)
        nib.save(nib.Nifti1Image((vol * 900 + 100).astype(np.float32), affine), str(root / "clean" / f"c_{i}.nii.gz"))
    for name in ("real", "leaky", "clean"):
        write_fingerprint(root / name, FINGERPRINT | {"shape": [16, 16, 16]})
    return root


def _create(sets, synthetic, db_path, *extra):
    return cli.main(["study", "create", f"db=sqlite:///{db_path}", f"real_dir={sets / 'real'}",
                     f"synthetic_dir={sets / synthetic}", *SMALL, *extra])  # fmt: skip


def test_a_leaky_study_is_refused_at_create_with_one_line_naming_the_channel(sets, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert _create(sets, "leaky", db) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "auto_window AUC 1.00" in err[0] and "allow_leaks=true" in err[0]
    assert StudyService(str(db)).study_names() == []  # nothing half-created
    # allow_leaks: created, and the audit is stored for the admin page
    assert _create(sets, "leaky", db, "allow_leaks=true") == 0
    with study_db.read_session(StudyService(str(db)).factory) as s:
        stored = s.scalar(select(Study.audit))
    assert stored["verdict"] == "leak" and "auto_window" in stored["leaks"]
    assert stored["groups"]["format"]["auc"] > 0.9
    capsys.readouterr()
    assert cli.main(["study", "audit", f"db=sqlite:///{db}"]) == 1  # the command flags it too
    assert "LEAK" in capsys.readouterr().out


def test_a_clean_study_passes_and_the_audit_command_reports_both_groups(sets, tmp_path, capsys):
    db = tmp_path / "s.db"
    assert _create(sets, "clean", db) == 0
    capsys.readouterr()
    assert cli.main(["study", "add-reader", f"db=sqlite:///{db}", "name=dr_a"]) == 0
    assert cli.main(["study", "audit", f"db=sqlite:///{db}"]) == 0  # audits dr_a's real order now
    out = capsys.readouterr().out
    assert "verdict: ok" in out and "format" in out and "intensity" in out
    for name in study_audit.CHANNELS:
        assert name in out
    with study_db.read_session(StudyService(str(db)).factory) as s:
        stored = s.scalar(select(Study.audit))
    assert stored["n_showings"] == 16 + 2 and stored["leaks"] == []


def test_viewer_messages_of_smooth_and_noisy_sets_have_one_size_and_no_signal(sets, tmp_path):
    """Real phantoms against noisy copies (which compress far worse): every viewer message of the
    study has the same length, so the audit's viewer channel sees nothing."""
    from medsynth.study.rendering import load_display_volume
    from medsynth.study.viewer_payload import build_payload

    rng = np.random.default_rng(9)
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for path in sorted((sets / "clean").glob("*.nii.gz")):
        image = nib.load(str(path))
        data = image.get_fdata(dtype=np.float32)
        nib.save(nib.Nifti1Image(data + rng.normal(0, 150, data.shape).astype(np.float32), image.affine),
                 str(noisy / path.name))  # fmt: skip
    write_fingerprint(noisy, FINGERPRINT | {"shape": [16, 16, 16]})
    db = tmp_path / "s.db"
    assert _create(sets, noisy, db, "allow_leaks=true") == 0
    with study_db.read_session(StudyService(str(db)).factory) as s:
        study = s.scalar(select(Study))
        render, result = study.render, study.audit
        cases = [(c.source_path, c.is_synthetic) for c in study.cases]
    smallest = {0: [], 1: []}
    for path, synthetic in cases:
        payload = build_payload(load_display_volume(path, [16] * 3), (1, 1, 1), render, "mr")
        smallest[int(synthetic)].append(payload.smallest_message())
        assert len(payload.message(0, render["viewer"]["message_bytes"])) == render["viewer"]["message_bytes"]
    assert max(smallest[0]) < min(smallest[1])  # unpadded, the size alone would tell every case
    viewer = result["channels"]["viewer_payload_bytes"]
    assert viewer["auc"] == 0.5 and viewer["effect"] == 0.0 and "viewer_payload_bytes" not in result["leaks"]


def test_channels_are_a_registry_others_can_extend(sets, tmp_path):
    @study_audit.channel("test_voxel_count", group="format")
    def _count(case):
        return {"voxels": float(case.volume.size)}

    try:
        data = study_audit.AuditInput(
            [str(p) for p in sorted((sets / "real").glob("*.nii.gz"))] + [str(p) for p in sorted((sets / "clean").glob("*.nii.gz"))],
            [0] * 8 + [1] * 8,
        )
        data.showings = study_audit.planned_showings(16, "0" * 64, 0.0, 3, 1)
        settings = {"folds": 3, "bootstrap": 200, "ci": 0.95, "refuse_lower_ci": 0.65, "margin": 0.1,
                    "gross_effect": 15.0, "alpha": 0.01, "seed": 0}
        result = study_audit.audit(data, {"grid": [12, 12, 12], "png_size": 32, "default_preset": "auto",
                                          "auto_percentiles": [1, 99.5], "presets": {}}, settings)  # fmt: skip
        assert result["channels"]["test_voxel_count"]["auc"] == 0.5  # constant: no information
    finally:
        del study_audit.CHANNELS["test_voxel_count"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["audit", "db=sqlite:///{tmp}/empty.db"], "no study named"),
        (["audit", "db=sqlite:///{tmp}/s.db", "audit.folds=1"], "audit.folds"),
        (["audit"], "db"),
    ],
)
def test_bad_input_to_audit_is_one_line(args, needle, sets, tmp_path, capsys):
    if any("s.db" in a for a in args):
        _create(sets, "clean", tmp_path / "s.db")
        capsys.readouterr()
    code = cli.main(["study", *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0]


def test_auditing_a_study_without_cases_is_one_line(tmp_path, capsys):
    service = StudyService(str(tmp_path / "e.db"))
    service.create_study("empty", [], [], [], {"grid": [8, 8, 8], "png_size": 16})
    code = cli.main(["study", "audit", f"db=sqlite:///{tmp_path / 'e.db'}", "study=empty"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no cases to audit" in err[0]
