"""The preprocessing fingerprint: written by prepare, compared by one shared check."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medsynth.config import compose_stage
from medsynth.data.phantom import make_phantom
from medsynth.data.prepare import overrides_from_fingerprint, prepare_dataset
from medsynth.io.fingerprint import (
    FingerprintError,
    differing_field,
    read_fingerprint,
    require_same_fingerprint,
)


def _raw(folder, n=3, seed=0, scale=1000.0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        volume, affine, _ = make_phantom((16, 16, 16), rng)
        nib.save(nib.Nifti1Image((volume * scale).astype(np.float32), affine), folder / f"s{i}.nii.gz")
    return folder


def _prepare(src, out, *overrides):
    cfg = compose_stage(
        "data_prepare", [f"input={src}", f"out_dir={out}", "num_workers=1", "progress=false", *overrides]
    )
    prepare_dataset(cfg)
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp")
    raw = _raw(root / "raw")
    return {
        "raw": raw,
        "a": _prepare(raw, root / "a", "shape=[16,16,16]", "spacing=[4,4,4]"),
        "ct": _prepare(raw, root / "ct", "shape=[16,16,16]", "spacing=[4,4,4]", "intensity.mode=ct"),
    }


def test_prepare_writes_the_fingerprint_block(prepared):
    record = json.loads((prepared["a"] / "preprocessing.json").read_text())
    fp = record["fingerprint"]
    assert set(fp) == {"shape", "spacing", "orientation", "intensity", "crop_foreground"}
    assert fp["shape"] == [16, 16, 16] and fp["spacing"] == [4.0, 4.0, 4.0] and fp["orientation"] == "RAS"
    assert fp["intensity"]["mode"] == "mr" and fp["intensity"]["upper_percentile"] == 99.5
    assert read_fingerprint(prepared["a"], "real_dir") == fp
    assert read_fingerprint(prepared["raw"], "real_dir") is None


def test_one_check_names_the_set_and_the_field(prepared):
    assert require_same_fingerprint({"real_dir": prepared["a"], "train_dir": prepared["a"]})["shape"] == [16] * 3
    with pytest.raises(FingerprintError) as err:
        require_same_fingerprint({"synthetic_dir": prepared["a"], "real_dir": prepared["ct"]})
    line = str(err.value)
    assert line.startswith("real_dir: preprocessing fingerprint differs from synthetic_dir's in intensity.")
    assert "\n" not in line
    with pytest.raises(FingerprintError, match=r"^real_dir: .* has no preprocessing.json"):
        require_same_fingerprint({"synthetic_dir": prepared["a"], "real_dir": prepared["raw"]})


def test_float_fields_compare_with_tolerance_and_lists_exactly():
    a = {"spacing": [3.0, 3.0, 3.0], "shape": [8, 8, 8]}
    assert differing_field(a, {"spacing": [3.0000000001, 3.0, 3.0], "shape": [8, 8, 8]}) is None
    assert differing_field(a, {"spacing": [3.0, 3.0, 3.0], "shape": [8, 8, 9]}) == ("shape", [8, 8, 8], [8, 8, 9])


def test_overrides_reproduce_the_fingerprint(prepared, tmp_path):
    for name in ("a", "ct"):
        reference = read_fingerprint(prepared[name], "x")
        out = _prepare(prepared["raw"], tmp_path / name, *overrides_from_fingerprint(reference))
        assert read_fingerprint(out, "x") == reference
