"""Atomic writes leave either the whole file or nothing."""

import pytest

from medsynth.io.atomic import atomic_path, atomic_write_text, remove_stale_temporaries


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "vol.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".tmp-dead-x.nii.gz").write_bytes(b"x")
    (tmp_path / "keep.nii.gz").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]
