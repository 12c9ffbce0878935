"""``medsynth sample`` end to end on real (freshly initialised) medsynth checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from medsynth.cli import main as medsynth_main

ROOT = Path(__file__).resolve().parents[1]
SPACING = [1.5, 1.25, 2.0]
FAST = ["sampler=dpmpp", "steps=3", "precision=32", "progress=false", "contact_sheet.num_samples=2"]


FINGERPRINT = {
    "shape": [16, 16, 16],
    "spacing": SPACING,
    "orientation": "RAS",
    "intensity": {"mode": "ct", "unit": "HU", "window_low": -1000.0, "window_high": 1000.0, "clip": True},
    "crop_foreground": {"enabled": True, "threshold": 0.1, "margin_mm": 6.0},
}


def _affine() -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-12.0, -10.0, -16.0]
    return affine


def _save_checkpoint(path: Path, conditioning: dict | None) -> Path:
    """Save a freshly initialised DiffusionModule (tiny UNet, 16^3) with Lightning's Trainer."""
    import lightning.pytorch as pl

    from medsynth.models.diffusion_module import DiffusionModule

    model = yaml.safe_load((ROOT / "conf/model/unet_tiny.yaml").read_text())
    model["representation"] = "pixel"
    diffusion = yaml.safe_load((ROOT / "conf/diffusion/ddpm.yaml").read_text())
    torch.manual_seed(0)
    module = DiffusionModule(
        {"model": model, "diffusion": diffusion, "optim": {}, "trainer": {}, "seed": 0},
        geometry={"shape": [16, 16, 16], "spacing": SPACING, "affine": _affine().tolist(), "fingerprint": FINGERPRINT},
        conditioning=conditioning,
        intensity={"mode": "ct", "low": -1000.0, "high": 1000.0, "unit": "HU"},
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    conditional = {
        "num_classes": 2,
        "class_names": ["0", "1"],
        "label_key": "lesion",
        "guidance_trained": True,
    }
    return {
        "unconditional": _save_checkpoint(folder / "uncond.ckpt", None),
        "conditional": _save_checkpoint(folder / "cond.ckpt", conditional),
    }


def sample(*args: str) -> int:
    return medsynth_main(["sample", *args])


def _state(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.glob("sample_*.nii.gz"))
    }


def _voxels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_help_prints_description_and_defaults(capsys):
    assert sample("--help") == 0
    out = capsys.readouterr().out
    assert "medsynth sample" in out and "ckpt:" in out and "guidance_scale:" in out and "name: dpmpp3m" in out


def test_outputs_carry_training_geometry_manifest_and_datalist(checkpoints, tmp_path, capsys):
    from monai.data import load_decathlon_datalist

    ckpt, out = checkpoints["unconditional"], tmp_path / "synth"
    assert sample(f"ckpt={ckpt}", "num_samples=3", f"out_dir={out}", "batch_size=2", *FAST) == 0
    assert "3 generated, 0 already there" in capsys.readouterr().out
    files = sorted(out.glob("sample_*.nii.gz"))
    assert [f.name for f in files] == ["sample_00000.nii.gz", "sample_00001.nii.gz", "sample_00002.nii.gz"]
    for f in files:
        image = nib.load(str(f))
        assert image.shape == (16, 16, 16) and image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.header.get_zooms(), SPACING)  # not the identity affine
        np.testing.assert_allclose(image.affine, _affine())
        assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
        data = image.get_fdata()
        assert data.min() >= -1 and data.max() <= 1 and data.std() > 0

    manifest = pd.read_csv(out / "manifest.csv")
    required = ["file", "seed", "sampler", "steps", "guidance_scale", "checkpoint", "checkpoint_sha256"]
    assert set(required + ["config_hash", "seconds", "eta", "use_ema"]) <= set(manifest.columns)
    assert list(manifest.file) == [f.name for f in files]
    assert set(manifest.sampler) == {"dpmpp"} and set(manifest.steps) == {3}
    assert manifest.seed.nunique() == 3 and (manifest.seconds > 0).all() and manifest.use_ema.all()
    assert set(manifest.checkpoint_sha256) == {hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    assert "lesion" not in manifest.columns  # unconditional: no label column

    datalist = load_decathlon_datalist(
        str(out / "datalist.json"), data_list_key="training", base_dir=str(out)
    )
    assert [Path(d["image"]) for d in datalist] == files
    # figures stay out of the volume folder (tools that glob *.png / *.nii.gz see only volumes)
    assert (out / "figures" / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.png"))
    from medsynth.io.fingerprint import read_fingerprint

    assert read_fingerprint(out, "synthetic_dir") == FINGERPRINT  # the checkpoint's, carried over
    assert not list(out.glob(".tmp-*"))


def test_resume_regenerates_only_the_deleted_file(checkpoints, tmp_path, capsys):
    out = tmp_path / "synth"
    args = [f"ckpt={checkpoints['unconditional']}", "num_samples=3", f"out_dir={out}", *FAST]
    assert sample(*args) == 0
    before = _state(out)
    original = _voxels(out / "sample_00001.nii.gz")
    (out / "sample_00001.nii.gz").unlink()
    assert sample(*args, "batch_size=3") == 0
    assert "1 generated, 2 already there" in capsys.readouterr().out
    after = _state(out)
    for name in ("sample_00000.nii.gz", "sample_00002.nii.gz"):
        assert after[name] == before[name]  # untouched: same mtime, same bytes
    np.testing.assert_array_equal(_voxels(out / "sample_00001.nii.gz"), original)
    assert len(pd.read_csv(out / "manifest.csv")) == 3

    assert sample(*args, "overwrite=true") == 0
    redone = _state(out)
    assert all(redone[name][0] != after[name][0] for name in after)
    np.testing.assert_array_equal(_voxels(out / "sample_00001.nii.gz"), original)

    # other settings into the same folder: refused, nothing touched
    assert sample(*args[:-4], "sampler=ddim", "steps=2", "precision=32", "progress=false") == 2
    assert "overwrite=true" in capsys.readouterr().err
    assert _state(out) == redone


def test_conditional_counts_and_source_units(checkpoints, tmp_path):
    out = tmp_path / "synth"
    args = [f"ckpt={checkpoints['conditional']}", "labels={0:2,1:1}", f"out_dir={out}", "guidance_scale=2.0"]
    assert sample(*args, "intensity=source", "dtype=int16", *FAST) == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.lesion) == [0, 0, 1] and list(manifest.guidance_scale) == [2.0] * 3
    image = nib.load(str(out / "sample_00000.nii.gz"))
    assert image.get_data_dtype() == np.int16
    data = np.asarray(image.dataobj)
    assert data.min() >= -1000 and data.max() <= 1000 and data.max() - data.min() > 100
    entries = json.loads((out / "datalist.json").read_text())["training"]
    assert [(e["label"], e["lesion"]) for e in entries] == [(0, 0), (0, 0), (1, 1)]


@pytest.mark.parametrize(
    "which,extra,message",
    [
        ("missing", [], "checkpoint"),
        ("random", [], "not a readable PyTorch checkpoint"),
        ("foreign", [], "not a medsynth training checkpoint"),
        ("conditional", ["label=7"], "label: 7 is not a lesion value"),
        ("unconditional", ["guidance_scale=3"], "guidance_scale"),
        ("unconditional", ["label=1"], "without class labels"),
        ("unconditional", ["sampler=unipc"], "sampler"),
        ("unconditional", ["dtype=int16"], "dtype"),
        ("unconditional", ["steps=0"], "steps"),
        ("unconditional", ["device=cuda:0"] if not torch.cuda.is_available() else ["device=tpu"], "device"),
    ],
)
def test_bad_input_one_line_nonzero_exit_nothing_written(
    checkpoints, tmp_path, capsys, which, extra, message
):
    paths = {
        "missing": tmp_path / "nope.ckpt",
        "random": tmp_path / "random.ckpt",
        "foreign": tmp_path / "f.ckpt",
    }
    paths["random"].write_bytes(np.random.default_rng(0).bytes(2048))
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 0}, paths["foreign"])
    ckpt = checkpoints.get(which, paths.get(which))
    out = tmp_path / "synth"
    assert sample(f"ckpt={ckpt}", "num_samples=2", f"out_dir={out}", *FAST[1:], *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("medsynth sample: error:") and message in err
    assert not out.exists()


def test_missing_required_keys(capsys, tmp_path):
    assert sample(f"out_dir={tmp_path / 'x'}") == 2
    assert "ckpt" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_two_processes_write_the_same_voxels_as_one(checkpoints, tmp_path):
    ckpt = checkpoints["conditional"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert sample(f"ckpt={ckpt}", "num_samples=5", f"out_dir={one}", "batch_size=3", *FAST) == 0
    assert (
        sample(f"ckpt={ckpt}", "num_samples=5", f"out_dir={two}", "devices=2", "accelerator=cpu", *FAST) == 0
    )
    for f in sorted(one.glob("sample_*.nii.gz")):
        np.testing.assert_array_equal(_voxels(f), _voxels(two / f.name))
    m1, m2 = pd.read_csv(one / "manifest.csv"), pd.read_csv(two / "manifest.csv")
    pd.testing.assert_frame_equal(m1.drop(columns="seconds"), m2.drop(columns="seconds"))
