"""The CPU thread policy (trainer.num_threads / sample num_threads)."""

from __future__ import annotations

import os

import pytest
import torch

from medsynth.models import cpu_threads
from medsynth.models.cpu_threads import apply_num_threads, resolve_num_threads


@pytest.mark.parametrize(
    ("cores", "load", "expected"), [(2, 0.3, 2), (2, 1.7, 1), (2, 5.8, 1), (16, 3.2, 13)]
)
def test_auto_is_cores_minus_load_at_least_one(monkeypatch, cores, load, expected):
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert resolve_num_threads("auto") == expected


def test_explicit_and_default_settings():
    assert resolve_num_threads(3) == 3
    assert resolve_num_threads("2") == 2
    assert resolve_num_threads(None) is None
    with pytest.raises(ValueError, match="num_threads"):
        resolve_num_threads(0)


def test_apply_sets_cpu_threads_only():
    before = torch.get_num_threads()
    try:
        assert apply_num_threads(1, "cpu") == 1
        assert apply_num_threads(2, "cuda") == 1  # a GPU run leaves the CPU setting alone
        assert apply_num_threads(None, "cpu") == 1
    finally:
        torch.set_num_threads(before)
