"""Shared fixtures: a real SLURM cluster (munged + slurmctld + slurmd on loopback) for tests/test_slurm_*.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import MISSING_MESSAGE, SlurmCluster, missing_binaries  # noqa: E402


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
