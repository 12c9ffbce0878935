"""Shared fixtures: a real SLURM cluster (munged + slurmctld + slurmd on loopback) for tests/test_slurm_*.py;
one headless Debian chromium per test module (Playwright) for the browser tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import MISSING_MESSAGE, SlurmCluster, missing_binaries  # noqa: E402

from medsynth.study.local_server import CHROMIUM_ARGS, chromium_path  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """One SLURM cluster for the whole session, started on first use and stopped at the end.

    ``SLURM_CONF`` points at it while it runs, so ``sbatch``/``squeue`` and submitit reach it.
    """
    missing = missing_binaries()
    if missing:
        pytest.skip(f"{MISSING_MESSAGE}; missing: {', '.join(missing)}")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved


@pytest.fixture(scope="module")
def browser():
    """A Playwright Chromium browser (Debian's ``chromium``); skips the module's tests without it."""
    if chromium_path() is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        yield browser
        browser.close()
