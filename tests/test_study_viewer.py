"""The viewer payload (medsynth/study/viewer_payload.py): lossless, source-free, modality presets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsynth.study.rendering import Window, auto_window, load_display_volume
from medsynth.study.viewer_payload import (
    CODINGS,
    PayloadTooLarge,
    ViewerPayload,
    build_payload,
    decode_stack,
    display_spacing,
    encode_stack,
    inflate,
    parse_message,
    quantise,
    to_stack_window,
    viewer_settings,
)

RENDER = {
    "grid": [20, 24, 16], "default_preset": "auto", "auto_percentiles": [1.0, 99.5],
    "presets": {"ct_brain": {"level": 40, "width": 80}, "ct_bone": {"level": 400, "width": 1800}},
    "viewer": {"levels": 4096, "mr_presets": {
        "auto": {"percentiles": [1.0, 99.5], "label": "Auto"},
        "wide": {"percentiles": [0.0, 100.0], "label": "Full range"}}},
}  # fmt: skip


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return (rng.normal(0, 1, (20, 24, 16)).cumsum(axis=2) * 50).astype(np.float32)


@pytest.mark.parametrize("coding", CODINGS)
def test_stack_round_trips_within_one_level(volume, coding):
    render = {**RENDER, "viewer": {**RENDER["viewer"], "coding": coding}}
    header, stack = inflate(build_payload(volume, (1.0, 1.0, 2.0), render, "mr").message(0))
    assert header["coding"] == coding
    q, lo, hi = quantise(volume, 4096)
    assert stack.dtype == np.uint16 and stack.shape == volume.shape and stack.max() == 4095
    assert np.array_equal(stack, q)
    step = (hi - lo) / 4095
    assert np.abs(lo + stack * step - volume).max() <= step / 2 + 1e-3  # lossless to half a level


def test_integer_volume_with_fewer_values_than_levels_is_exact():
    hu = np.arange(-1024, 1024, dtype=np.float32).reshape(16, 8, 16)  # 2048 distinct HU values
    stack = inflate(build_payload(hu, (1, 1, 1), RENDER, "ct").message(0))[1].astype(np.float64)
    assert np.array_equal(np.rint(-1024 + stack * 2047 / 4095), hu)


def test_presets_follow_the_modality_and_are_in_stack_units(volume):
    mr = build_payload(volume, (1, 1, 1), RENDER, "mr")
    ct = build_payload(volume, (1, 1, 1), RENDER, "ct")
    assert [p.name for p in mr.presets] == ["auto", "wide"]  # no CT windows for an MR study
    assert [p.name for p in ct.presets] == ["auto", "ct_brain", "ct_bone"]
    _, lo, hi = quantise(volume, 4096)
    auto = auto_window(volume, (1.0, 99.5))
    assert mr.presets[0].level == pytest.approx(to_stack_window(auto, lo, hi, 4096)[0])
    brain = ct.presets[1]
    assert (brain.level, brain.width) == pytest.approx(to_stack_window(Window(40, 80), lo, hi, 4096))
    with pytest.raises(ValueError, match="modality"):
        build_payload(volume, (1, 1, 1), RENDER, "pet")


def test_message_carries_no_source_units_or_header_fields(volume):
    payload = build_payload(volume, (1.5, 1.5, 3.0), RENDER, "mr")
    header, _ = parse_message(payload.message(7))
    assert set(header) == {"showing", "shape", "spacing", "levels", "coding", "presets", "default_preset"}
    assert header["showing"] == 7 and header["spacing"] == [1.5, 1.5, 3.0]
    text = json.dumps(header)
    for number in (float(volume.min()), float(volume.max())):
        assert f"{number:.3f}"[:6] not in text  # the range of source units never travels
    assert np.array_equal(inflate(payload.message(7))[1], quantise(volume, 4096)[0])
    stored = ViewerPayload.from_record(json.loads(json.dumps(payload.record()[0])), *payload.record()[1:])
    assert stored.message(7, 50_000) == payload.message(7, 50_000)  # what a study stores serves the same bytes


def test_display_spacing_is_the_field_of_view_over_the_grid(tmp_path):
    affine = np.diag([-2.0, 3.0, 1.5, 1.0])  # LAS storage order: RAS axes are the same, flipped X
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 20, 30), np.float32), affine), str(path))
    assert display_spacing(path, (20, 30, 45)) == pytest.approx((1.0, 2.0, 1.0))
    permuted = np.array([[0, 0, 2.0, 0], [3.0, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 0, 1]])  # stored (Y, Z, X)
    nib.save(nib.Nifti1Image(np.zeros((20, 30, 10), np.float32), permuted), str(path))
    assert display_spacing(path, (10, 20, 30)) == pytest.approx((2.0, 3.0, 1.5))
    assert load_display_volume(path, (10, 20, 30)).shape == (10, 20, 30)


def test_service_codes_each_case_once_and_serves_reachable_showings_by_reading(tmp_path, monkeypatch):
    from sqlalchemy import delete, select

    from medsynth.study import db as study_db
    from medsynth.study import rendering
    from medsynth.study.demo import make_phantoms
    from medsynth.study.models import Study, ViewerStream
    from medsynth.study.service import PermissionDenied, StudyService

    files = make_phantoms(tmp_path / "cases", 4, (16, 16, 16), seed=5)
    service = StudyService(f"sqlite:///{tmp_path / 'study.db'}")
    questions = [{"key": "called_synthetic", "type": "bool", "text": "?", "labels": {"true": "S", "false": "R"}}]
    service.create_study("s", files[:2], files[2:], questions, RENDER, repeat_fraction=0.0)
    reader = service.login(service.add_reader("s", "ann"))
    first = service.viewer_payload(reader, 0)  # a study without viewer settings gets them now, stored
    data, _ = parse_message(first)
    with study_db.read_session(service.factory) as s:
        viewer = s.scalar(select(Study)).render["viewer"]
        assert len(list(s.scalars(select(ViewerStream.case_id)))) == 4  # every case coded once
    assert viewer["coding"] in CODINGS and len(first) == viewer["message_bytes"]
    assert data["showing"] == 0 and data["shape"] == [20, 24, 16] and data["spacing"] == pytest.approx([9.6, 8.0, 12.0])  # 192 mm FOV
    with pytest.raises(PermissionDenied):
        service.viewer_payload(reader, 1)  # never a case ahead
    with study_db.write_session(service.factory) as s:
        s.execute(delete(ViewerStream))
    assert service.prefetch_next(reader) is None  # nothing of the next case reaches the caller ...
    with study_db.read_session(service.factory) as s:
        assert len(list(s.scalars(select(ViewerStream.case_id)))) == 4  # ... but its stream is stored
    service.submit(reader, 0, {"called_synthetic": True})
    monkeypatch.setattr(rendering, "load_display_volume", lambda *a, **k: pytest.fail("image work on serving"))
    second = service.viewer_payload(reader, 1)  # a read of the stored stream, padded
    assert parse_message(second)[0]["shape"] == [20, 24, 16] and len(second) == len(first)
    study_db.dispose_engines()


def test_a_study_from_before_viewer_streams_is_upgraded_and_served(tmp_path):
    """tests/data/study_rev0001.sqlite was written by medsynth at schema 0001: migration 0003 adds
    the stream table, and the first viewer request fixes the coding and length and codes every case."""
    import shutil
    import sqlite3
    from pathlib import Path

    from sqlalchemy import select

    from medsynth.study import db as study_db
    from medsynth.study.demo import make_phantoms
    from medsynth.study.models import Case, Study, ViewerStream
    from medsynth.study.service import StudyService

    data = Path(__file__).resolve().parent / "data"
    path = tmp_path / "old.sqlite"
    shutil.copy(data / "study_rev0001.sqlite", path)
    with sqlite3.connect(path) as conn:  # its volumes lived in a temporary folder: new ones in their place
        ids = [row[0] for row in conn.execute("select id from study_case order by id")]
        files = make_phantoms(tmp_path / "cases", len(ids), (16, 16, 16), seed=2)
        conn.executemany("update study_case set source_path = ? where id = ?", [(str(f), i) for f, i in zip(files, ids, strict=True)])
    tokens = json.loads((data / "study_rev0001_tokens.json").read_text())
    service = StudyService(f"sqlite:///{path}")  # upgrades to head
    reader = service.login(tokens["dr_a"])
    position = service.current_case(reader).position
    message = service.viewer_payload(reader, position)
    with study_db.read_session(service.factory) as s:
        viewer = s.scalar(select(Study.render))["viewer"]
        assert s.scalar(select(ViewerStream).limit(1)) is not None
        assert len(list(s.scalars(select(ViewerStream.case_id)))) == len(list(s.scalars(select(Case.id))))
    assert len(message) == viewer["message_bytes"] and inflate(message)[1].shape == (16, 16, 16)
    study_db.dispose_engines()


def test_audit_channel_sees_the_padded_message(volume):
    from medsynth.study.audit import CHANNELS, CaseRender

    assert CHANNELS["viewer_payload_bytes"].group == "format"
    unsettled = CaseRender(volume=volume, slices={}, render_seconds=0.0, render=RENDER)
    sent = build_payload(volume, (1.0, 1.0, 1.0), RENDER, "mr").message(0)
    assert CHANNELS["viewer_payload_bytes"].compute(unsettled) == {"bytes": float(len(sent))}
    settled = {**RENDER, "viewer": {**RENDER["viewer"], "coding": "planes", "message_bytes": 99_999}}
    case = CaseRender(volume=volume, slices={}, render_seconds=0.0, render=settled)
    assert CHANNELS["viewer_payload_bytes"].compute(case) == {"bytes": 99_999.0}


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("levels", [256, 4096, 8192])
def test_coding_round_trips_bit_exact(coding, levels):
    rng = np.random.default_rng(levels)
    stack = rng.integers(0, levels, size=(5, 3, 7)).astype(np.uint16)
    stack[0, 0, 0], stack[-1, -1, -1] = 0, levels - 1  # the extremes: largest differences
    coded = encode_stack(stack, coding)
    assert len(coded) == 2 * stack.size
    assert np.array_equal(decode_stack(coded + bytes(40), stack.shape, coding), stack)  # padding ignored


@pytest.mark.parametrize("extra", [0, 1, 4, 5, 9, 65_535, 65_540, 65_541, 200_000])
def test_padded_stream_is_exactly_the_size_asked_and_inflates_with_zlib(volume, extra):
    payload = build_payload(volume, (1, 1, 1), RENDER, "mr")
    size = payload.smallest_message() + extra
    message = payload.message(2, size)
    assert len(message) == size
    assert np.array_equal(inflate(message)[1], quantise(volume, 4096)[0])  # zlib checks Adler-32 too
    with pytest.raises(PayloadTooLarge):
        payload.message(2, payload.smallest_message() - 1)


def test_study_settings_pad_smooth_and_noisy_cases_to_one_size(tmp_path):
    """A study whose cases compress very differently: one coding, one message length for all, and
    the audit's viewer channel sees no difference."""
    from medsynth.errors import ConfigError
    from medsynth.study.audit import CHANNELS, CaseRender

    rng = np.random.default_rng(1)
    noisy = rng.normal(0, 1, (24, 24, 24)).astype(np.float32)
    smooth = np.fromfunction(lambda x, y, z: np.sin(x / 5) + y / 10 + z / 20, (24, 24, 24), dtype=np.float32)
    paths = []
    for name, v in [("smooth", smooth), ("noisy", noisy)]:
        paths.append(str(tmp_path / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(v, np.eye(4)), paths[-1])
    render = {**RENDER, "grid": [24, 24, 24], "viewer": {**RENDER["viewer"], "coding": "auto", "message_bytes": None}}
    viewer = viewer_settings(paths, render, "mr")
    assert viewer["coding"] in CODINGS
    settled = {**render, "viewer": viewer}
    payloads = [build_payload(load_display_volume(p, [24] * 3), (1, 1, 1), settled, "mr") for p in paths]
    assert payloads[0].smallest_message() < 0.8 * payloads[1].smallest_message()  # very different
    assert viewer["message_bytes"] == max(p.smallest_message() for p in payloads)
    messages = [p.message(0, viewer["message_bytes"]) for p in payloads]
    assert len({len(m) for m in messages}) == 1
    cases = [CaseRender(load_display_volume(p, [24] * 3), {}, 0.0, settled) for p in paths]
    assert len({CHANNELS["viewer_payload_bytes"].compute(c)["bytes"] for c in cases}) == 1
    with pytest.raises(ConfigError, match=r"render.viewer.message_bytes.*noisy.nii.gz needs"):
        viewer_settings(paths, {**render, "viewer": {**render["viewer"], "message_bytes": viewer["message_bytes"] - 1}}, "mr")
    capped = viewer_settings(paths, {**render, "viewer": {**render["viewer"], "message_bytes": 10**6}}, "mr")
    assert capped["message_bytes"] == 10**6
    with pytest.raises(ConfigError, match="render.viewer.coding"):
        viewer_settings(paths, {**render, "viewer": {**render["viewer"], "coding": "diff3d", "levels": 65536}}, "mr")


def test_coding_benchmark_runs_on_a_small_folder(tmp_path, capsys):
    """benchmarks/viewer_coding.py (the sizes per coding in docs/study.md) cannot rot."""
    import importlib.util
    from pathlib import Path

    from medsynth.study.demo import make_phantoms

    make_phantoms(tmp_path, 2, (12, 12, 12), seed=3)
    spec = importlib.util.spec_from_file_location(
        "viewer_coding", Path(__file__).resolve().parents[1] / "benchmarks" / "viewer_coding.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path), "--grid", "16", "--noise", "0.1"]) == 0
    table = capsys.readouterr().out.strip().splitlines()[-2:]
    assert table[0].startswith(f"| {tmp_path.name} (n=2) |") and "+ noise 0.1" in table[1]
