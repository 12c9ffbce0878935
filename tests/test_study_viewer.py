"""The viewer payload (medsynth/study/viewer_payload.py): lossless, source-free, modality presets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsynth.study.rendering import Window, auto_window, load_display_volume
from medsynth.study.viewer_payload import (
    build_payload,
    cached_payload,
    decode_stack,
    display_spacing,
    encode_stack,
    parse_message,
    quantise,
    to_stack_window,
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


def test_stack_round_trips_within_one_level(volume):
    payload = build_payload(volume, (1.0, 1.0, 2.0), RENDER, "mr")
    stack = decode_stack(payload.stack, payload.shape, 4096)
    q, lo, hi = quantise(volume, 4096)
    assert stack.dtype == np.uint16 and stack.shape == volume.shape and stack.max() == 4095
    assert np.array_equal(stack, q)
    step = (hi - lo) / 4095
    assert np.abs(lo + stack * step - volume).max() <= step / 2 + 1e-3  # lossless to half a level


def test_integer_volume_with_fewer_values_than_levels_is_exact():
    hu = np.arange(-1024, 1024, dtype=np.float32).reshape(16, 8, 16)  # 2048 distinct HU values
    payload = build_payload(hu, (1, 1, 1), RENDER, "ct")
    stack = decode_stack(payload.stack, payload.shape, 4096).astype(np.float64)
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
    payload = cached_payload(volume, (1.5, 1.5, 3.0), RENDER, "mr")
    header, stack = parse_message(payload.message(7))
    assert set(header) == {"showing", "shape", "spacing", "levels", "bits", "presets", "default_preset"}
    assert header["showing"] == 7 and header["spacing"] == [1.5, 1.5, 3.0]
    text = json.dumps(header)
    for number in (float(volume.min()), float(volume.max())):
        assert f"{number:.3f}"[:6] not in text  # the range of source units never travels
    assert len(stack) == 20 * 24 * 16 * 3 // 2  # 12 bit
    assert np.array_equal(decode_stack(stack, header["shape"], 4096), quantise(volume, 4096)[0])
    assert cached_payload(volume, (1.5, 1.5, 3.0), RENDER, "mr") is payload  # built once per case


def test_display_spacing_is_the_field_of_view_over_the_grid(tmp_path):
    affine = np.diag([-2.0, 3.0, 1.5, 1.0])  # LAS storage order: RAS axes are the same, flipped X
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 20, 30), np.float32), affine), str(path))
    assert display_spacing(path, (20, 30, 45)) == pytest.approx((1.0, 2.0, 1.0))
    permuted = np.array([[0, 0, 2.0, 0], [3.0, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 0, 1]])  # stored (Y, Z, X)
    nib.save(nib.Nifti1Image(np.zeros((20, 30, 10), np.float32), permuted), str(path))
    assert display_spacing(path, (10, 20, 30)) == pytest.approx((2.0, 3.0, 1.5))
    assert load_display_volume(path, (10, 20, 30)).shape == (10, 20, 30)


def test_service_payload_is_reachable_only_and_the_next_one_is_warmed(tmp_path):
    from medsynth.study import db as study_db
    from medsynth.study.demo import make_phantoms
    from medsynth.study.service import PermissionDenied, StudyService
    from medsynth.study.viewer_payload import _cached_payload

    files = make_phantoms(tmp_path / "cases", 4, (16, 16, 16), seed=5)
    service = StudyService(f"sqlite:///{tmp_path / 'study.db'}")
    questions = [{"key": "called_synthetic", "type": "bool", "text": "?", "labels": {"true": "S", "false": "R"}}]
    service.create_study("s", files[:2], files[2:], questions, RENDER, repeat_fraction=0.0)
    reader = service.login(service.add_reader("s", "ann"))
    data, _ = parse_message(service.viewer_payload(reader, 0))
    assert data["showing"] == 0 and data["shape"] == [20, 24, 16] and data["spacing"] == pytest.approx([9.6, 8.0, 12.0])  # 192 mm FOV
    with pytest.raises(PermissionDenied):
        service.viewer_payload(reader, 1)  # never a case ahead
    _cached_payload.cache_clear()  # other tests' payloads may fill it
    assert service.prefetch_next(reader) is None  # nothing of the next case reaches the caller
    assert _cached_payload.cache_info().currsize == 1
    service.submit(reader, 0, {"called_synthetic": True})
    hits = _cached_payload.cache_info().hits
    assert parse_message(service.viewer_payload(reader, 1))[0]["shape"] == [20, 24, 16]
    assert _cached_payload.cache_info().hits == hits + 1  # Submit found the next case ready
    study_db.dispose_engines()


def test_audit_has_a_channel_for_the_viewer_payload(volume):
    from medsynth.study.audit import CHANNELS, CaseRender

    assert CHANNELS["viewer_payload_bytes"].group == "format"
    case = CaseRender(volume=volume, slices={}, render_seconds=0.0, render=RENDER)
    sent = build_payload(volume, (1.0, 1.0, 1.0), RENDER, "mr").message(0)
    assert CHANNELS["viewer_payload_bytes"].compute(case) == {"bytes": float(len(sent))}


def test_smooth_and_noisy_cases_send_the_same_bytes(volume):
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(volume, 2.0)
    assert len({len(build_payload(v, (1, 1, 1), RENDER, "mr").message(0)) for v in (volume, smooth)}) == 1


@pytest.mark.parametrize("levels", [256, 4096, 65536])
def test_packing_round_trips_for_every_width(levels):
    rng = np.random.default_rng(levels)
    stack = rng.integers(0, levels, size=(5, 3, 7)).astype(np.uint16)  # odd voxel count
    blob = encode_stack(stack, levels)
    assert len(blob) == {256: 105, 4096: 159, 65536: 210}[levels]
    assert np.array_equal(decode_stack(blob, stack.shape, levels), stack)
