"""`medsynth study` commands end to end: create, add-reader, export, demo, simulate, bad input."""

from __future__ import annotations

import stat

import pandas as pd
import pytest

from medsynth import cli
from medsynth.study import db as study_db
from medsynth.study.export import REQUIRED_COLUMNS
from medsynth.study.service import StudyService
from tests.study_sets import write_study_sets
from tests.test_metrics_cli import FINGERPRINT, write_fingerprint

SMALL = ["render.grid=[16,16,16]", "render.png_size=64"]


@pytest.fixture(autouse=True)
def _dispose():
    yield
    study_db.dispose_engines()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = write_study_sets(tmp_path_factory.mktemp("cli"), 5, (16, 16, 16), seed=1)
    pd.DataFrame(
        {"file": [f"sample_{i:04d}.nii.gz" for i in range(5)], "checkpoint": "run/last.ckpt"}
    ).to_csv(root / "syn" / "manifest.csv", index=False)
    return root


def _run(args, capsys):
    code = cli.main(["study", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_add_reader_simulate_export(dirs, tmp_path, capsys):
    db = f"db=sqlite:///{tmp_path / 's.db'}"
    code, out, _ = _run(
        ["create", db, f"real_dir={dirs / 'real'}", f"synthetic_dir={dirs / 'syn'}", "n_cases=8", *SMALL],
        capsys,
    )
    assert code == 0 and "4 real + 4 synthetic" in out
    code, out, _ = _run(["add-reader", db, "name=alice"], capsys)
    token = out.strip().splitlines()[-1]
    assert code == 0 and "." in token and len(token) > 40
    service = StudyService(str(tmp_path / "s.db"))
    assert service.login(token).name == "alice"
    code, out, _ = _run(
        ["simulate", db, "simulate.n_readers=2", "simulate.skill=[1.0,0.0]", "simulate.reader.repeat_consistency=1"],
        capsys,
    )
    assert code == 0 and "sim_reader_01" in out
    code, out, _ = _run(["export", db, f"out={tmp_path / 'ratings.csv'}"], capsys)
    frame = pd.read_csv(tmp_path / "ratings.csv")
    assert code == 0 and list(frame.columns[:7]) == REQUIRED_COLUMNS
    assert {"slice_consistency", "anatomy", "seconds", "model", "opaque_id"} <= set(frame.columns)
    assert len(frame) == 2 * (8 + 1)  # two simulated readers, 8 cases + round(0.1 * 8) repeat each
    perfect = frame[frame.reader_id == "sim_reader_01"]
    assert (perfect.called_synthetic == perfect.is_synthetic).all()
    hopeless = frame[frame.reader_id == "sim_reader_02"]
    assert (hopeless.called_synthetic != hopeless.is_synthetic).all()
    assert set(frame.case_id) <= {f"phantom_{i:04d}" for i in range(5)} | {
        f"sample_{i:04d}" for i in range(5)
    }
    assert frame.realism.between(1, 5).all() and frame["repeat"].isin([0, 1]).all()
    # repeats are answered consistently when repeat_consistency=1
    for _, group in frame.groupby(["reader_id", "case_id"]):
        if len(group) == 2:
            assert group.realism.nunique() == 1 and group.called_synthetic.nunique() == 1
    assert not (tmp_path / "ratings.csv").with_name(".tmp-ratings.csv").exists()


def test_simulated_realism_follows_a_generation_parameter_not_a_metric(dirs, tmp_path, capsys):
    db = f"db=sqlite:///{tmp_path / 's.db'}"
    _run(
        ["create", db, f"real_dir={dirs / 'real'}", f"synthetic_dir={dirs / 'syn'}", "n_cases=10", *SMALL],
        capsys,
    )
    manifest = pd.DataFrame({"file": [f"sample_{i:04d}.nii.gz" for i in range(5)], "steps": [10, 20, 30, 40, 50]})
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    code, out, err = _run(
        ["simulate", db, "simulate.n_readers=6", "simulate.skill=0.7", f"simulate.manifest={tmp_path / 'manifest.csv'}",
         "simulate.latent_column=steps", "simulate.latent_weight=1.0", "simulate.reader.latent_effect=1.0",
         "simulate.reader.realism_sd=0.3"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "marked simulated" in out
    _run(["export", db, f"out={tmp_path / 'r.csv'}"], capsys)
    frame = pd.read_csv(tmp_path / "r.csv")
    steps = manifest.assign(case_id=manifest.file.str.replace(".nii.gz", ""))[["case_id", "steps"]]
    synthetic = frame[(frame.is_synthetic == 1) & (frame["repeat"] == 0)].merge(steps, on="case_id")
    rho = synthetic.groupby("steps").realism.mean().reset_index().corr(method="spearman").iloc[0, 1]
    assert rho > 0.8
    real_mean = frame[frame.is_synthetic == 0].realism.mean()
    assert real_mean > synthetic.realism.mean()
    if "simulated" in frame.columns:  # the reader flag (migration 0002) reaches the export
        assert (frame["simulated"] == 1).all()
    code, _, err = _run(["simulate", db, "simulate.latent_column=steps", "simulate.name_prefix=x"], capsys)
    assert code == 2 and "simulate.manifest" in err


def test_demo_builds_a_study_with_private_tokens(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, err = _run(
        [
            "demo",
            f"out_dir={out_dir}",
            "demo.n_phantoms=8",
            "demo.shape=[16,16,16]",
            "demo.n_cases=6",
            *SMALL,
        ],
        capsys,
    )
    assert code == 0, err
    tokens = out_dir / "tokens.txt"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    rows = [line.split("\t") for line in tokens.read_text().splitlines() if not line.startswith("#")]
    assert [(r[0], r[1]) for r in rows] == [
        ("admin", "admin"),
        ("reader_1", "reader"),
        ("reader_2", "reader"),
    ]
    assert "medsynth study serve db=" in out and str(tokens) in out
    service = StudyService(f"sqlite:///{out_dir / 'study.db'}")
    admin = service.login(rows[0][2])
    status = service.study_status(admin)
    assert (status["real_cases"], status["synthetic_cases"], status["readers"]) == (3, 3, 2)
    reader = service.login(rows[1][2])
    png = service.render_slice(reader, service.current_case(reader).position, "axial", 8, "auto")
    assert png.startswith(b"\x89PNG")
    # a second demo into the same database is refused, the first one stays intact
    code, _, err = _run(
        ["demo", f"out_dir={out_dir}", "demo.n_phantoms=8", "demo.shape=[16,16,16]", "demo.n_cases=6"], capsys
    )
    assert code == 2 and "exists already" in err and service.login(rows[0][2])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["create", "db=sqlite:///x.db", "synthetic_dir=/nope"], "real_dir"),
        (["create", "db=sqlite:///x.db", "real_dir=/nope", "synthetic_dir=/nope"], "/nope"),
        (["add-reader", "db=sqlite:///{tmp}/s.db", "name=bob", "role=boss"], "role"),
        (["export", "db=sqlite:///{tmp}/s.db", "study=none"], "study"),
        (["frobnicate"], "frobnicate"),
        (["create", "db=sqlite:///{tmp}/s.db", "real_dir={raw}", "synthetic_dir={syn}"], "real_dir: "),
        (["create", "db=sqlite:///{tmp}/s.db", "real_dir={other}", "synthetic_dir={syn}"], "differs from synthetic_dir's in shape"),
        (["serve", "db=sqlite:///{tmp}/empty.db"], "holds no study"),
        (["add-reader", "name=x"], "db"),
        (
            ["create", "db=sqlite:///{tmp}/s.db", "real_dir={real}", "synthetic_dir={syn}", "n_cases=30"],
            "n_cases",
        ),
    ],
)
def test_bad_input_is_one_line(args, needle, dirs, tmp_path, capsys):
    import shutil

    raw, other = tmp_path / "raw", tmp_path / "other"  # no fingerprint / another grid
    shutil.copytree(dirs / "real", raw)
    (raw / "preprocessing.json").unlink()
    shutil.copytree(dirs / "real", other)
    write_fingerprint(other, FINGERPRINT | {"shape": [32, 32, 32]})
    args = [a.format(tmp=tmp_path, real=dirs / "real", syn=dirs / "syn", raw=raw, other=other) for a in args]
    code, _, err = _run(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_help_for_every_command(capsys):
    for command in ("create", "add-reader", "revoke-reader", "rotate-token", "serve", "export", "audit", "demo", "simulate"):
        code, out, _ = _run([command, "--help"], capsys)
        assert code == 0 and f"medsynth study {command}" in out and "repeat_fraction" in out


def test_create_prepares_raw_real_scans_with_prepare_inputs(dirs, tmp_path, capsys):
    """Raw real scans (no preprocessing.json) are refused, then prepared like the synthetic set."""
    import shutil

    from medsynth.config import compose_stage
    from medsynth.data.prepare import prepare_dataset
    from medsynth.io.fingerprint import read_fingerprint

    raw, syn = tmp_path / "raw", tmp_path / "syn"
    shutil.copytree(dirs / "real", raw)
    (raw / "preprocessing.json").unlink()
    shutil.copytree(dirs / "syn", tmp_path / "syn_raw")
    (tmp_path / "syn_raw" / "preprocessing.json").unlink()
    prepare_dataset(compose_stage("data_prepare", [  # a synthetic set truly in a prepared space
        f"input={tmp_path / 'syn_raw'}", f"out_dir={syn}", "shape=[16,16,16]", "spacing=[12,12,12]",
        "num_workers=1", "progress=false",
    ]))  # fmt: skip
    db = f"db=sqlite:///{tmp_path / 's.db'}"
    args = ["create", db, f"real_dir={raw}", f"synthetic_dir={syn}", "n_cases=8", *SMALL]
    code, _, err = _run(args, capsys)
    assert code == 2 and "real_dir: " in err and "prepare_inputs=true" in err
    assert not (tmp_path / "s.db").exists()
    code, out, err = _run([*args, "prepare_inputs=true", f"prepared_dir={tmp_path / 'prep'}"], capsys)
    assert code == 0 and "4 real + 4 synthetic" in out, err
    assert read_fingerprint(tmp_path / "prep", "real") == read_fingerprint(syn, "synthetic")


def test_demo_on_given_sets_refuses_different_preprocessing(tmp_path, capsys, dirs):
    """`study demo real_dir=... synthetic_dir=...` runs the fingerprint check of `study create`."""
    out_dir = tmp_path / "demo"
    real = tmp_path / "raw_real"
    real.mkdir()
    for path in sorted((dirs / "real").glob("*.nii.gz")):
        (real / path.name).symlink_to(path)  # the same volumes, but no preprocessing.json
    code, _, err = _run(["demo", f"out_dir={out_dir}", f"real_dir={real}", f"synthetic_dir={dirs / 'syn'}"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "real_dir" in err
    assert not out_dir.exists()
