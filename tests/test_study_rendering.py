"""Display preprocessing: same grid whatever the spacing, radiological orientation, windows, PNGs."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medsynth.errors import InputFileError
from medsynth.study.rendering import (
    Window,
    auto_window,
    load_display_volume,
    plane_image,
    render_png,
    resolve_window,
)


def _save(path, array, zooms, flip_x=False):
    affine = np.diag([*zooms, 1.0])
    if flip_x:  # stored in LAS order: the loader must put it back to RAS
        affine[0, 0] = -zooms[0]
        array = array[::-1]
    nib.save(nib.Nifti1Image(array.astype(np.float32), affine), str(path))
    return path


def test_different_spacings_and_orientations_reach_the_same_grid(tmp_path):
    base = np.zeros((20, 24, 12), np.float32)
    base[15, 12, 6] = 100.0  # a bright voxel to the patient's right (high x)
    a = load_display_volume(_save(tmp_path / "a.nii.gz", base, (1.0, 1.0, 2.0)), [16, 16, 16])
    b = load_display_volume(_save(tmp_path / "b.nii", base, (0.5, 0.7, 3.0), flip_x=True), [16, 16, 16])
    assert a.shape == b.shape == (16, 16, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.unravel_index(np.argmax(a), a.shape)[0] > 8


def test_radiological_display_orientation():
    vol = np.zeros((10, 10, 10), np.float32)
    vol[9, 5, 5] = 1.0  # patient's right
    vol[5, 9, 4] = 2.0  # anterior
    vol[4, 4, 9] = 3.0  # superior
    axial_right = plane_image(vol, "axial", 5)
    assert np.argwhere(axial_right == 1.0)[0][1] == 0  # right on the viewer's left
    coronal = plane_image(vol, "coronal", 4)
    assert np.argwhere(coronal == 3.0)[0][0] == 0  # superior at the top
    sagittal = plane_image(vol, "sagittal", 5)
    assert np.argwhere(sagittal == 2.0)[0][1] == 0  # anterior on the left
    axial = plane_image(vol, "axial", 4)
    assert np.argwhere(axial == 2.0)[0][0] == 0  # anterior at the top


def test_windows_and_png_without_metadata():
    rng = np.random.default_rng(0)
    vol = rng.normal(100, 10, (12, 12, 12)).astype(np.float32)
    auto = auto_window(vol, (1, 99))
    assert 60 < auto.level < 140 and 20 < auto.width < 80
    render = {"presets": {"ct_bone": {"level": 400, "width": 1800}}, "auto_percentiles": [1, 99]}
    assert resolve_window(vol, "ct_bone", render) == Window(400.0, 1800.0)
    assert resolve_window(vol, "manual", render, Window(5, 6)) == Window(5, 6)
    assert Window(0, 10).apply(np.array([-10.0, 0.0, 10.0])).tolist() == [0, 128, 255]
    data = render_png(vol, "coronal", 6, auto, 48)
    image = Image.open(io.BytesIO(data))
    assert image.size == (48, 48) and image.mode == "L"
    assert not image.info.get("dpi") and not getattr(image, "text", {})


def test_bad_volume_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputFileError, match="broken.nii.gz"):
        load_display_volume(bad, [8, 8, 8])
