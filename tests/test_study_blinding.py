"""Blinding against a motivated reader: the ordering attack, per-showing ids, reproduction from the
database alone."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest
from sqlalchemy import select

from medsynth import cli
from medsynth.study import db as study_db
from medsynth.study.assignment import (
    order_seed,
    reader_seed,
    reading_order,
    sample_balanced,
    secret_seed,
    storage_order,
)
from medsynth.study.creation import volume_files
from medsynth.study.models import Assignment, Case, Reader, Study
from medsynth.study.service import StudyService
from tests.study_sets import write_study_sets

SMALL = ["render.grid=[8,8,8]", "render.png_size=32"]
N_CASES = 40
READERS = ("dr_lee", "dr_kim", "dr_ng")


@pytest.fixture(autouse=True)
def _dispose():
    yield
    study_db.dispose_engines()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """24 real and 24 'synthetic' 12^3 phantoms."""
    return write_study_sets(tmp_path_factory.mktemp("blind"), 24, (12, 12, 12), seed=3)


def _study(dirs, db_path, capsys):
    """A study made exactly as a user would: default config, readers by name."""
    db = f"db=sqlite:///{db_path}"
    args = ["create", db, f"real_dir={dirs / 'real'}", f"synthetic_dir={dirs / 'syn'}",
            f"n_cases={N_CASES}", *SMALL]  # fmt: skip
    assert cli.main(["study", *args]) == 0
    for name in READERS:
        assert cli.main(["study", "add-reader", db, f"name={name}"]) == 0
    capsys.readouterr()
    return StudyService(str(db_path))


def _shown(service: StudyService, name: str):
    """(position, showing id, truth, repeat) of one reader's order, read as the organiser."""
    with study_db.read_session(service.factory) as s:
        rows = s.execute(
            select(Assignment, Case)
            .join(Case, Case.id == Assignment.case_id)
            .join(Reader, Reader.id == Assignment.reader_id)
            .where(Reader.name == name)
            .order_by(Assignment.position)
        ).all()
    return [(a.position, a.showing_id, int(c.is_synthetic), a.repeat, c.id) for a, c in rows]


def test_the_public_code_attack_is_no_better_than_chance(dirs, tmp_path, capsys):
    """The attack of issue 11: public code + reader name + default config (seed 0), cases assumed
    stored real-first. It predicted 22 of 22 on the old code; here it must be a coin toss."""
    service = _study(dirs, tmp_path / "s.db", capsys)
    correct = total = 0
    for name in READERS:
        shown = _shown(service, name)
        predicted = reading_order(N_CASES, 0.1, reader_seed(0, name), min_gap=3)
        assert len(predicted) == len(shown)
        for guess, (_, _, truth, _, _) in zip(predicted, shown, strict=True):
            correct += int(guess.case_index >= N_CASES // 2) == truth
            total += 1
    assert total == len(READERS) * (N_CASES + 4)
    assert binomtest(correct, total, 0.5).pvalue > 0.001, f"{correct}/{total} predicted"
    # the storage order (row ids) carries no truth either
    with study_db.read_session(service.factory) as s:
        truth_by_row = [int(c.is_synthetic) for c in s.scalars(select(Case).order_by(Case.id))]
    assert truth_by_row != sorted(truth_by_row)


def test_every_showing_has_its_own_random_id(dirs, tmp_path, capsys):
    service = _study(dirs, tmp_path / "s.db", capsys)
    all_ids = []
    for name in READERS:
        shown = _shown(service, name)
        ids = [sid for _, sid, _, _, _ in shown]
        all_ids += ids
        repeats = [(sid, case) for _, sid, _, rep, case in shown if rep]
        assert repeats, "the default study has repeated showings"
        for sid, case in repeats:  # a repeat never shows the id of its first showing
            first = next(s for _, s, _, rep, c in shown if c == case and rep == 0)
            assert sid != first
    assert len(set(all_ids)) == len(all_ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in all_ids)
    reader = service.login(_token(service, READERS[0]))
    assert service.current_case(reader).opaque_id == _shown(service, READERS[0])[0][1]
    with study_db.read_session(service.factory) as s:
        case_ids = set(s.scalars(select(Case.opaque_id)))
    assert not case_ids & set(all_ids)


def test_a_second_study_from_the_same_config_differs(dirs, tmp_path, capsys):
    one = _shown(_study(dirs, tmp_path / "a.db", capsys), READERS[0])
    two = _shown(_study(dirs, tmp_path / "b.db", capsys), READERS[0])
    assert [t for *_, t, _, _ in one] != [t for *_, t, _, _ in two] or [r for *_, r, _ in one] != [
        r for *_, r, _ in two
    ]


def test_the_database_alone_reproduces_the_study(dirs, tmp_path, capsys):
    """docs/study.md "Reproducing a study": the stored secret re-derives cases, storage and orders."""
    service = _study(dirs, tmp_path / "s.db", capsys)
    with study_db.read_session(service.factory) as s:
        study = s.scalar(select(Study))
        cases = list(s.scalars(select(Case).order_by(Case.id)))
        secret, fraction = study.secret, study.repeat_fraction
    real = [str(p) for p in volume_files(dirs / "real", "real_dir")]
    syn = [str(p) for p in volume_files(dirs / "syn", "synthetic_dir")]
    pick_real, pick_syn = sample_balanced(real, syn, N_CASES, secret_seed(secret, "cases"))
    entries = pick_real + pick_syn
    assert [c.source_path for c in cases] == [entries[i] for i in storage_order(len(entries), secret)]
    for name in READERS:
        order = reading_order(len(cases), fraction, order_seed(secret, name), min_gap=3)
        shown = _shown(service, name)
        assert [(cases[o.case_index].id, o.repeat) for o in order] == [(c, r) for _, _, _, r, c in shown]
    # and the secret is nowhere a reader or the export can see
    reader = service.login(_token(service, READERS[0]))
    assert secret not in repr(service.study_info(reader)) + repr(service.current_case(reader))
    admin = service.login(service.add_reader("realism-study", "boss", "admin"))
    assert secret not in service.export_ratings_csv(admin).decode() + repr(service.study_status(admin))


def _token(service: StudyService, name: str) -> str:
    return service.rotate_token("realism-study", name)
