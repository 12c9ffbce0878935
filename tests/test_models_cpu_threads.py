"""The CPU thread policy (trainer.num_threads / sample num_threads)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from medsynth.models import cpu_threads
from medsynth.models.cpu_threads import apply_num_threads, resolve_num_threads


@pytest.mark.parametrize(
    ("cores", "busy", "expected"), [(2, 0.3, 2), (2, 0.9, 1), (2, 1.7, 1), (2, 5.8, 1), (16, 3.2, 13)]
)
def test_auto_is_cores_minus_busy_cores_at_least_one(monkeypatch, cores, busy, expected):
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: cores)
    monkeypatch.setattr(cpu_threads, "busy_cores", lambda: busy)
    assert resolve_num_threads("auto") == expected


def test_busy_cores_reads_the_change_in_proc_stat(tmp_path, monkeypatch):
    """Busy = (non-idle jiffies) / (all jiffies) over the window, times the CPU count; the load average
    (here 1.9, as right after a venv build) does not enter when /proc/stat can be read."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 ...\n")

    def tick(_seconds):  # during the window: 150 busy, 150 idle and 0 iowait jiffies on a 2-CPU machine
        stat.write_text("cpu  200 0 150 950 0 0 0 0 0 0\n")

    monkeypatch.setattr(cpu_threads.time, "sleep", tick)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 1.9, 1.9))
    assert cpu_threads.busy_cores(0.5, str(stat)) == pytest.approx(1.0)


def test_busy_cores_falls_back_to_the_load_average(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (1.4, 1.0, 0.5))
    assert cpu_threads.busy_cores(0.0, str(tmp_path / "missing")) == 1.4


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_busy_cores_sees_a_spinning_process():
    """A child process spinning one core for the whole window is counted (at least 0.6 of a core)."""
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"]
    )
    try:
        cpu_threads.time.sleep(0.5)  # let it start
        assert cpu_threads.busy_cores(1.0) >= 0.6
    finally:
        spinner.kill()
        spinner.wait()


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
