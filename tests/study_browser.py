"""Shared by the reader-study browser tests: phantom scans on disk and the sign-in steps (the
Chromium itself is the ``browser`` fixture of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medsynth.data.phantom import make_phantom

IDLE = "[data-test-script-state='notRunning']"


def write_scans(root: Path, n: int, shape: tuple[int, int, int], seed: int) -> list[Path]:
    """``n`` phantom volumes ``root/scan_<i>.nii.gz``."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        vol, affine, _ = make_phantom(shape, rng)
        files.append(root / f"scan_{i}.nii.gz")
        nib.save(nib.Nifti1Image(vol, affine), str(files[-1]))
    return files


def sign_in(page, base: str, token: str) -> None:
    """Open the app and submit ``token`` on the sign-in page."""
    page.goto(base)
    page.wait_for_selector(IDLE, timeout=30_000)
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
