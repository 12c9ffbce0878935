"""Accounts and sign-in: upgrade of a database made by the previous release, revoke, rotate,
expiry, sign-in backoff and its failure log, drafts and the simulated flag."""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sqlalchemy import select

from medsynth import cli
from medsynth.data.phantom import make_phantom
from medsynth.study import db as study_db
from medsynth.study.models import Answer, Assignment, Reader, SignInFailure, Study
from medsynth.study.questions import AnswerError
from medsynth.study.service import (
    AuthError,
    PermissionDenied,
    SignInPolicy,
    SignInThrottled,
    StudyService,
)

DATA = Path(__file__).resolve().parent / "data"
GOOD = {"called_synthetic": True, "confidence": 4, "realism": 2, "slice_consistency": 3, "anatomy": 4}


@pytest.fixture(autouse=True)
def _dispose():
    yield
    study_db.dispose_engines()


@pytest.fixture
def study(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(4):
        vol, affine, _ = make_phantom((12, 12, 12), rng)
        files.append(tmp_path / f"v_{i}.nii.gz")
        nib.save(nib.Nifti1Image(vol, affine), str(files[-1]))
    from medsynth.study.questions import load_questions

    questions = load_questions(Path(__file__).resolve().parents[1] / "conf/study_questions/default.yaml")
    service = StudyService(f"sqlite:///{tmp_path / 's.db'}")
    render = {"grid": [8, 8, 8], "png_size": 32, "default_preset": "auto", "auto_percentiles": [1, 99.5],
              "rescale_from_unit": None, "presets": {}}  # fmt: skip
    service.create_study("s", files[:2], files[2:], questions, render, repeat_fraction=0.0)
    return service


def test_a_database_made_by_the_previous_release_upgrades_without_losing_anything(tmp_path):
    """tests/data/study_rev0001.sqlite was written by medsynth at schema 0001 (before this change)."""
    path = tmp_path / "old.sqlite"
    shutil.copy(DATA / "study_rev0001.sqlite", path)
    tokens = json.loads((DATA / "study_rev0001_tokens.json").read_text())
    service = StudyService(f"sqlite:///{path}")  # upgrades to head
    with study_db.read_session(service.factory) as s:
        assert s.scalar(select(Study.name)) == "legacy"
        assert len(s.scalar(select(Study.secret))) == 64 and s.scalar(select(Study.modality)) == "mr"
        assert len(list(s.scalars(select(Answer)))) == 36
        showing_ids = list(s.scalars(select(Assignment.showing_id)))
        assert len(showing_ids) == len(set(showing_ids)) == 16 and all(showing_ids)  # 2 readers x 8
        simulated = {r.name: r.simulated for r in s.scalars(select(Reader))}
    assert simulated == {"admin": False, "dr_a": False, "sim_reader_01": True}
    assert service.login(tokens["dr_a"]).name == "dr_a"  # old tokens still sign in
    admin = service.login(tokens["admin"])
    frame = service.export_ratings(admin)
    assert len(frame) == 6 and set(frame.simulated) == {0, 1}
    assert frame.comment.tolist().count('=HYPERLINK("x")') == 2  # values kept; neutralised on write only


def test_revoke_rotate_and_expiry(study):
    token = study.add_reader("s", "alice")
    session = study.login(token)
    study.revoke_reader("s", "alice")
    with pytest.raises(AuthError):
        study.login(token)
    with pytest.raises(AuthError):  # an open session stops at its next call
        study.current_case(session)
    new = study.rotate_token("s", "alice")
    with pytest.raises(AuthError):
        study.login(token)
    assert study.login(new).name == "alice"
    short = study.rotate_token("s", "alice", expires_days=1e-6)  # ~0.1 s
    time.sleep(0.2)
    with pytest.raises(AuthError):
        study.login(short)


def test_sign_in_backs_off_per_address_and_per_session_and_logs_failures(study):
    token = study.add_reader("s", "bob")
    study.sign_in_policy = SignInPolicy(free_failures=2, base_delay_s=30.0, max_delay_s=60.0, window_s=600)
    for _ in range(2):
        with pytest.raises(AuthError) as err:
            study.login("nope.nope", address="10.0.0.9", client="tab-1")
        assert not isinstance(err.value, SignInThrottled)
    # the third try from that address waits, even with the right token and another browser session
    with pytest.raises(SignInThrottled) as err:
        study.login(token, address="10.0.0.9", client="tab-2")
    assert 25 < err.value.retry_after <= 30
    with pytest.raises(SignInThrottled):  # the same browser session from another address waits too
        study.login(token, address="10.0.0.10", client="tab-1")
    assert study.login(token, address="10.0.0.11", client="tab-3").name == "bob"
    with study_db.read_session(study.factory) as s:
        rows = list(s.scalars(select(SignInFailure)))
    assert [(r.address, r.client, r.key_id) for r in rows] == [("10.0.0.9", "tab-1", "nope")] * 2


def test_unknown_and_known_key_ids_cost_the_same_work(study):
    token = study.add_reader("s", "carol")
    key_id = token.split(".")[0]

    def median_seconds(candidate: str) -> float:
        times = []
        for _ in range(7):
            start = time.perf_counter()
            with pytest.raises(AuthError):
                study.login(candidate)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    known, unknown = median_seconds(f"{key_id}.wrong"), median_seconds("unknownkey.wrong")
    assert 0.5 < known / unknown < 2.0  # both pay one scrypt (an unknown id used to cost nothing)


def test_drafts_are_kept_per_showing_and_cleared_on_submit(study):
    session = study.login(study.add_reader("s", "dana"))
    case = study.current_case(session)
    assert study.draft(session, case.position) == {}
    study.save_draft(session, case.position, {"realism": 3, "comment": "looks odd"})
    assert study.draft(session, case.position) == {"realism": 3, "comment": "looks odd"}
    with pytest.raises(AnswerError):
        study.save_draft(session, case.position, {"not_a_question": 1})
    with pytest.raises(PermissionDenied):
        study.save_draft(session, case.position + 1, {"realism": 3})
    study.submit(session, case.position, GOOD)
    with pytest.raises(PermissionDenied):  # answered: no draft to read any more
        study.draft(session, case.position)
    with study_db.read_session(study.factory) as s:
        from medsynth.study.models import AnswerDraft

        assert s.scalar(select(AnswerDraft)) is None


def test_simulated_readers_are_flagged_in_the_export(study):
    study.add_reader("s", "sim", simulated=True)
    study.add_reader("s", "real_person")
    admin = study.login(study.add_reader("s", "admin", "admin"))
    for name in ("sim", "real_person"):
        session = study.login(study.rotate_token("s", name))
        study.submit(session, study.current_case(session).position, GOOD)
    frame = study.export_ratings(admin).set_index("reader_id")
    assert frame.loc["sim", "simulated"] == 1 and frame.loc["real_person", "simulated"] == 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["revoke-reader", "db={db}", "name=nobody"], "nobody"),
        (["rotate-token", "db={db}", "name=nobody"], "nobody"),
        (["add-reader", "db={db}", "name=x", "expires_days=-1"], "expires_days"),
        (["add-reader", "db={db}", "name=x", "expires_days=soon"], "expires_days"),
        (["revoke-reader", "db={db}", "study=other", "name=x"], "study"),
    ],
)
def test_bad_input_to_the_account_commands_is_one_line(args, needle, study, capsys):
    db = study.engine.url.render_as_string()
    args = [a.format(db=db) for a in args]
    if not any(a.startswith("study=") for a in args):
        args.append("study=s")
    code = cli.main(["study", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0]


def test_expired_token_is_refused_by_the_cli_flow(study, capsys):
    db = study.engine.url.render_as_string()
    assert cli.main(["study", "add-reader", f"db={db}", "study=s", "name=eve", "expires_days=0.000001"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    time.sleep(0.2)
    with pytest.raises(AuthError):
        study.login(token)
    assert timedelta(days=1e-6).total_seconds() < 0.2


def test_exported_formulas_are_neutralised_and_analyze_reads_them_back_exactly(study, tmp_path):
    from medsynth.analysis.io import load_ratings
    from medsynth.study.export import write_ratings_csv

    names = ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "=x\ty", "'quoted", "plain"]  # ids are stripped
    comments = ['=HYPERLINK("http://evil","x")', "+", "-3", "@", "\rcr", "'=already", "fine"]
    for name, comment in zip(names, comments, strict=True):
        session = study.login(study.add_reader("s", name))
        study.submit(session, study.current_case(session).position, {**GOOD, "comment": comment})
    admin = study.login(study.add_reader("s", "admin", "admin"))
    frame = study.export_ratings(admin)
    path = write_ratings_csv(frame, tmp_path / "ratings.csv")
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert study.export_ratings_csv(admin) == path.read_bytes()
    back = load_ratings(path)
    assert sorted(back.reader_id) == sorted(names)
    assert sorted(back.comment) == sorted(comments)
