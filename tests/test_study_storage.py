"""Reader-study storage and service on SQLite (WAL) and on a real PostgreSQL server.

The PostgreSQL server is started once per test session from Debian's binaries (as the postgres
user when running as root) and every test gets a fresh database on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from medsynth.data.phantom import make_phantom
from medsynth.study import db as study_db
from medsynth.study.models import Answer, Assignment, Base, Case, Reader
from medsynth.study.questions import AnswerError, load_questions
from medsynth.study.service import AuthError, PermissionDenied, ReaderSession, StudyService
from medsynth.study.testing import TemporaryPostgres, find_postgres_bin

ROOT = Path(__file__).resolve().parents[1]
HEAD_REVISION = "0003"
QUESTIONS = load_questions(ROOT / "conf/study_questions/default.yaml")
RENDER = {
    "grid": [16, 16, 16],
    "png_size": 64,
    "default_preset": "auto",
    "auto_percentiles": [1.0, 99.5],
    "rescale_from_unit": None,
    "presets": {"ct_brain": {"level": 40, "width": 80}},
}
GOOD = {"called_synthetic": True, "confidence": 4, "realism": 2, "slice_consistency": 3, "anatomy": 4}
FIVE_LIKERT = [
    {
        "key": f"q{i}",
        "type": "likert",
        "text": f"q{i}",
        "help": "",
        "required": True,
        "min": 1,
        "max": 5,
        "anchors": {},
    }
    for i in range(5)
]


@pytest.fixture(scope="session")
def postgres_server():
    if find_postgres_bin() is None:
        pytest.skip(
            "PostgreSQL server binaries (Debian package postgresql: initdb, pg_ctl) are not installed"
        )
    server = TemporaryPostgres().start()
    yield server
    study_db.dispose_engines()
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    yield url
    study_db.dispose_engines()


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Six real phantoms and six 'synthetic' (blurred) ones, 16^3."""
    from scipy import ndimage

    root = tmp_path_factory.mktemp("vols")
    rng = np.random.default_rng(0)
    real, syn = [], []
    for i in range(6):
        vol, affine, _ = make_phantom((16, 16, 16), rng)
        real.append(root / f"real_{i:02d}.nii.gz")
        nib.save(nib.Nifti1Image(vol, affine), str(real[-1]))
        syn.append(root / f"sample_{i:05d}.nii.gz")
        nib.save(nib.Nifti1Image(ndimage.gaussian_filter(vol, 1.0).astype(np.float32), affine), str(syn[-1]))
    return real, syn


def make_study(url, volumes, n=8, questions=QUESTIONS, repeat_fraction=0.25, allow_back=False, name="s"):
    real, syn = volumes
    service = StudyService(url)
    service.create_study(
        name, real[: n // 2], syn[: n - n // 2], questions, RENDER, seed=1,
        repeat_fraction=repeat_fraction, allow_back=allow_back, model="m1",
    )  # fmt: skip
    return service


def test_migrations_create_exactly_the_models_schema(db_url):
    engine = study_db.get_engine(db_url)
    study_db.upgrade_to_head(engine)  # a second upgrade is a no-op
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(text("select version_num from alembic_version")).scalar() == HEAD_REVISION
    if db_url.startswith("sqlite"):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == study_db.SQLITE_BUSY_TIMEOUT_MS
    names = {c["name"] for c in inspect(engine).get_unique_constraints("answer")}
    assert "uq_answer_showing" in names


def test_balanced_cases_opaque_ids_and_seeded_orders(db_url, volumes):
    service = make_study(db_url, volumes)
    service.add_reader("s", "ann")
    service.add_reader("s", "bob")
    with study_db.read_session(service.factory) as s:
        cases = list(s.scalars(select(Case)))
        assert sum(c.is_synthetic for c in cases) == 4 and len(cases) == 8
        for c in cases:
            assert len(c.opaque_id) == 12 and c.case_key not in c.opaque_id
        assert {c.case_key for c in cases if c.is_synthetic} <= {f"sample_{i:05d}" for i in range(6)}
        orders = {}
        for reader in s.scalars(select(Reader)):
            rows = list(
                s.scalars(
                    select(Assignment).where(Assignment.reader_id == reader.id).order_by(Assignment.position)
                )
            )
            assert len(rows) == 8 + 2  # round(0.25 * 8) repeats
            assert sorted({r.case_id for r in rows if r.repeat == 0}) == sorted(c.id for c in cases)
            for r in rows:
                if r.repeat:
                    first = next(x for x in rows if x.case_id == r.case_id and x.repeat == 0)
                    assert r.position > first.position
            orders[reader.name] = [r.case_id for r in rows]
        assert orders["ann"] != orders["bob"]


def test_tokens_are_stored_hashed_and_checked(db_url, volumes):
    service = make_study(db_url, volumes)
    token = service.add_reader("s", "ann")
    session = service.login(token)
    assert session.name == "ann" and session.role == "reader"
    key_id, secret = token.split(".")
    with service.engine.connect() as conn:
        stored = conn.execute(text("select key_id, token_hash, token_salt from reader")).one()
    assert stored.key_id == key_id and secret.encode() not in bytes(stored.token_hash)
    assert len(bytes(stored.token_hash)) == 32 and len(bytes(stored.token_salt)) == 16
    for bad in (f"{key_id}.{secret[:-1]}x", "garbage", "", f"other.{secret}"):
        with pytest.raises(AuthError):
            service.login(bad)


def test_submit_resume_and_double_submit(db_url, volumes):
    service = make_study(db_url, volumes)
    token = service.add_reader("s", "ann")
    rs = service.login(token)
    first = service.current_case(rs)
    assert (first.position, first.number, first.total) == (0, 1, 10)
    result = service.submit(rs, 0, GOOD, seconds=12.5)
    assert result.stored and result.next_position == 1
    assert not service.submit(rs, 0, GOOD, seconds=3.0).stored  # double submit
    service.submit(rs, 1, {**GOOD, "comment": "ok"}, seconds=4.0)
    # a new login (as after a reload) resumes at the first unanswered case
    rs = service.login(token)
    assert service.current_case(rs).number == 3
    assert service.progress(rs).done == 2
    with study_db.read_session(service.factory) as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 5 + 6
        values = {
            a.question: json.loads(a.value)
            for a in s.scalars(select(Answer).where(Answer.question == "called_synthetic"))
        }
        assert values == {"called_synthetic": True}


def test_answers_are_validated(db_url, volumes):
    service = make_study(db_url, volumes)
    rs = service.login(service.add_reader("s", "ann"))
    for bad, message in [
        ({**GOOD, "favourite_colour": "red"}, "unknown question"),
        ({**GOOD, "confidence": 6}, "1..5"),
        ({**GOOD, "realism": 0}, "1..5"),
        ({**GOOD, "realism": 2.5}, "1..5"),
        ({**GOOD, "called_synthetic": "yes"}, "true or false"),
        ({k: v for k, v in GOOD.items() if k != "realism"}, "needs an answer"),
        ({**GOOD, "comment": "x" * 2001}, "2000"),
    ]:
        with pytest.raises(AnswerError, match=message):
            service.submit(rs, 0, bad)
    with pytest.raises(AnswerError):
        service.submit(rs, 0, GOOD, seconds=-1)
    with study_db.read_session(service.factory) as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 0


def test_readers_reach_only_their_own_current_case_and_no_admin_operation(db_url, volumes):
    service = make_study(db_url, volumes)
    ann = service.login(service.add_reader("s", "ann"))
    admin = service.login(service.add_reader("s", "boss", role="admin"))
    with pytest.raises(PermissionDenied):
        service.case_at(ann, 3)  # ahead of the current case
    with pytest.raises(PermissionDenied):
        service.display_volume(ann, 5)
    with pytest.raises(PermissionDenied):
        service.submit(ann, 2, GOOD)  # skipping ahead
    with pytest.raises(PermissionDenied):
        service.submit(ann, 99, GOOD)  # not in the order
    for admin_op in (service.reader_progress, service.study_status, service.export_ratings):
        with pytest.raises(PermissionDenied):
            admin_op(ann)
    with pytest.raises(PermissionDenied):
        service.assignment_of(ann, "ann")
    with pytest.raises(PermissionDenied):
        service.set_status(ann, "closed")
    with pytest.raises(PermissionDenied):
        service.submit(admin, 0, GOOD)  # admins do not rate
    # a session object forged for another study's reader id is refused server-side
    with pytest.raises(AuthError):
        service.progress(ReaderSession(reader_id=ann.reader_id, study_id=999, name="ann", role="admin"))
    # no going back by default, even to one's own answered case
    service.submit(ann, 0, GOOD)
    with pytest.raises(PermissionDenied):
        service.case_at(ann, 0)
    assert service.study_status(admin)["answers"] == 5
    assert [row["done"] for row in service.reader_progress(admin)] == [1, 0]
    service.set_status(admin, "closed")
    with pytest.raises(PermissionDenied, match="closed"):
        service.submit(ann, 1, GOOD)


def test_allow_back_edits_keep_one_row_per_question(db_url, volumes):
    service = make_study(db_url, volumes, allow_back=True)
    rs = service.login(service.add_reader("s", "ann"))
    service.submit(rs, 0, GOOD)
    assert service.case_at(rs, 0).completed
    assert service.submit(rs, 0, {**GOOD, "realism": 5}).stored
    assert service.case_answers(rs, 0)["realism"] == 5
    with study_db.read_session(service.factory) as s:
        rows = list(s.scalars(select(Answer).where(Answer.question == "realism")))
    assert len(rows) == 1 and rows[0].edits == 1


def test_twenty_concurrent_readers_store_exactly_1000_answers(db_url, volumes):
    """20 threads (own sessions) x 10 cases x 5 questions, each case submitted twice."""
    service = make_study(db_url, volumes, n=10, questions=FIVE_LIKERT, repeat_fraction=0.0)
    sessions = [service.login(service.add_reader("s", f"r{i:02d}")) for i in range(20)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def read_all(rs):
        try:
            barrier.wait()
            for position in range(10):
                answers = {f"q{q}": (position + q) % 5 + 1 for q in range(5)}
                assert service.submit(rs, position, answers, seconds=1.0).stored
                assert not service.submit(rs, position, answers, seconds=1.0).stored
        except BaseException as err:  # collected and re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=read_all, args=(rs,)) for rs in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    with study_db.read_session(service.factory) as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 1000
        distinct = s.execute(
            select(Answer.reader_id, Answer.case_id, Answer.question, Answer.repeat).distinct()
        ).all()
        assert len(distinct) == 1000
        per_reader = dict(s.execute(select(Answer.reader_id, func.count()).group_by(Answer.reader_id)).all())
        assert sorted(per_reader.values()) == [50] * 20


def test_concurrent_double_submit_of_one_showing_stores_one_set(db_url, volumes):
    service = make_study(db_url, volumes, questions=FIVE_LIKERT, repeat_fraction=0.0)
    rs = service.login(service.add_reader("s", "ann"))
    answers = {f"q{q}": 3 for q in range(5)}
    results, barrier = [], threading.Barrier(8)

    def submit():
        barrier.wait()
        results.append(service.submit(rs, 0, answers).stored)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [False] * 7 + [True]
    with study_db.read_session(service.factory) as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 5


WRITER = """
import sys
from medsynth.study.service import StudyService
service = StudyService(sys.argv[1])
rs = service.login(sys.argv[2])
for position in range(int(sys.argv[3])):
    service.submit(rs, position, {f"q{q}": 2 for q in range(5)}, seconds=0.5)
    print(position, flush=True)
"""


def test_killing_the_server_loses_nothing_submitted(tmp_path, volumes):
    """SIGKILL a process in the middle of submitting: every acknowledged case is on disk, whole."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    real, syn = volumes
    service = StudyService(url)
    service.create_study("s", real[:6], syn[:6], FIVE_LIKERT, RENDER, repeat_fraction=0.0)
    token = service.add_reader("s", "ann")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, token, "12"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    acknowledged = [proc.stdout.readline() for _ in range(5)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    study_db.dispose_engines()
    service = StudyService(url)
    with study_db.read_session(service.factory) as s:
        n_answers = s.scalar(select(func.count()).select_from(Answer))
        done = s.scalar(select(func.count()).where(Assignment.completed_at.is_not(None)))
    assert len(acknowledged) == 5 and all(line.strip() for line in acknowledged)
    assert done >= 5 and n_answers == 5 * done  # no acknowledged case lost, no half-stored case
    rs = service.login(token)
    assert service.current_case(rs).position == done  # the reader resumes right after
