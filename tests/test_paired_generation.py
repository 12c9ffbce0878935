"""Joint image + label diffusion: channel representation, training on label maps, paired `medsynth sample` output."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medsynth import cli
from medsynth.models.paired import build_paired_representation, label_channels, split_image_label
from tests.train_helpers import TINY_OVERRIDES, run_train


@pytest.mark.parametrize("name, latent", [("pixel", (6, 16, 16, 16)), ("wavelet", (48, 8, 8, 8))])
def test_channelwise_representation_round_trip_and_argmax_export(name, latent):
    representation = build_paired_representation(name, 5)
    label = torch.randint(0, 5, (2, 1, 16, 16, 16))
    pair = torch.cat([torch.rand(2, 1, 16, 16, 16) * 2 - 1, label_channels(label, 5)], dim=1)
    assert pair.shape == (2, 6, 16, 16, 16) and set(torch.unique(pair[:, 1:]).tolist()) == {-1.0, 1.0}
    coefficients = representation.encode(pair)
    assert tuple(coefficients.shape[1:]) == representation.latent_shape((16, 16, 16)) == latent
    decoded = representation.decode(coefficients)
    assert torch.allclose(decoded, pair, atol=1e-5)
    image, label_out = split_image_label(decoded)
    assert torch.equal(image, decoded[:, :1]) and label_out.dtype == torch.uint8
    assert torch.equal(label_out.long(), label[:, 0])
    assert build_paired_representation(name, 0).latent_shape((16, 16, 16))[0] == latent[0] // 6


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    assert cli.main(["data", "demo", "n=6", "shape=[16,16,16]", f"out_dir={root / 'raw'}"]) == 0
    prepare = ["spacing=[12,12,12]", "shape=[16,16,16]", "num_workers=1", "progress=false"]
    assert cli.main(["data", "prepare", f"input={root / 'raw'}", f"out_dir={root / 'prep'}", *prepare]) == 0
    args = [f"data.root={root / 'prep'}", "data.label_map_classes=auto", "trainer.max_steps=3", *TINY_OVERRIDES]
    assert run_train([*args, f"hydra.run.dir={root / 'run'}"]) == 0
    return root


def _sample(root: Path, out: Path, *extra: str) -> int:
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    args = [f"ckpt={ckpt}", f"out_dir={out}", "num_samples=3", "sampler=ddim", "steps=3", "progress=false"]
    return cli.main(["sample", *args, *extra])


def test_paired_sample_writes_label_maps_manifest_datalist(paired_run, tmp_path):
    out = tmp_path / "syn"
    assert _sample(paired_run, out, "batch_size=3") == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest["label_file"]) == [f"sample_{i:05d}_label.nii.gz" for i in range(3)]
    datalist = json.loads((out / "datalist.json").read_text())["training"]
    assert [e["label"] for e in datalist] == list(manifest["label_file"])
    for _, row in manifest.iterrows():
        image, label = nib.load(out / row["file"]), nib.load(out / row["label_file"])
        assert label.get_data_dtype() == np.uint8 and label.shape == image.shape == (16, 16, 16)
        assert np.array_equal(label.affine, image.affine)
        assert np.asarray(label.dataobj).max() < 5
    # evaluate/study folder readers never take a label map for a scan
    from medsynth.metrics.volume_folder import list_volume_files

    assert [p.name for p in list_volume_files(out, "synthetic_dir")] == list(manifest["file"])
    # determinism: sample i is the same pair for any batch size; a deleted pair is redone alone
    again = tmp_path / "again"
    assert _sample(paired_run, again, "batch_size=1") == 0
    for name in [*manifest["file"], *manifest["label_file"]]:  # voxels (image headers record the seconds)
        assert np.array_equal(np.asarray(nib.load(out / name).dataobj), np.asarray(nib.load(again / name).dataobj)), name
    (again / "sample_00001.nii.gz").unlink()
    (again / "sample_00001_label.nii.gz").unlink()
    kept = (again / "sample_00000_label.nii.gz").stat().st_mtime_ns
    assert _sample(paired_run, again, "batch_size=1") == 0
    assert (again / "sample_00001_label.nii.gz").read_bytes() == (out / "sample_00001_label.nii.gz").read_bytes()
    assert (again / "sample_00000_label.nii.gz").stat().st_mtime_ns == kept


def test_paired_samples_feed_utility(paired_run, tmp_path):
    out = tmp_path / "syn"
    assert _sample(paired_run, out) == 0
    args = [
        f"real_dir={paired_run / 'prep'}",
        f"synthetic_dir={out}",
        f"out_dir={tmp_path / 'u'}",
        "test_fraction=0.34",
        "n_real=[2]",
        "seeds=[0]",
        "train.max_steps=2",
        "train.batch_size=2",
        "bootstrap.n_resamples=50",
        "progress=false",
        "figures=false",
    ]
    assert cli.main(["utility", *args]) == 0
    summary = json.loads((tmp_path / "u" / "utility.json").read_text())
    assert {r["arm"] for r in summary["results"]} == {"real", "synthetic", "real+synthetic"}
    assert next(r for r in summary["results"] if r["arm"] == "synthetic")["n_synthetic"] == 3


def test_condition_mode_without_label_maps_is_refused(paired_run):
    from medsynth.data.datamodule import VolumeDataModule
    from medsynth.errors import ConfigError

    with pytest.raises(ConfigError, match="joint or condition"):
        VolumeDataModule(root=str(paired_run / "prep"), label_map_mode="control")
    with pytest.raises(ConfigError, match="condition needs label maps"):
        VolumeDataModule(root=str(paired_run / "prep"), label_map_mode="condition").setup("fit")


def test_label_map_classes_too_few_is_one_line(paired_run, tmp_path):
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsynth.cli",
            "train",
            f"data.root={paired_run / 'prep'}",
            "data.label_map_classes=3",
            "trainer.max_steps=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            *TINY_OVERRIDES,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert code.returncode != 0
    last = code.stderr.strip().splitlines()[-1]
    assert "label values" in last and "outside 0..2 (data.label_map_classes=3)" in last and "Traceback" not in code.stderr


@pytest.fixture(scope="module")
def conditioned_run(paired_run, tmp_path_factory):
    """A mask-conditioned model trained on the paired fixture's data, and a folder of its label maps."""
    root = tmp_path_factory.mktemp("conditioned")
    args = [f"data.root={paired_run / 'prep'}", "data.label_map_classes=auto", "data.label_map_mode=condition"]
    assert run_train([*args, "trainer.max_steps=3", *TINY_OVERRIDES, f"hydra.run.dir={root / 'run'}"]) == 0
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    affine = torch.load(ckpt, map_location="cpu", weights_only=False)["medsynth"]["geometry"]["affine"]
    masks = root / "masks"
    masks.mkdir()
    for i, source in enumerate(sorted((paired_run / "prep" / "labels").glob("*.nii.gz"))[:3]):
        label = np.asarray(nib.load(source).dataobj).astype(np.uint8)
        nib.save(nib.Nifti1Image(label, np.asarray(affine)), masks / f"case_{i}.nii.gz")
    return ckpt, masks


def _sample_masks(ckpt: Path, out: Path, *extra: str) -> int:
    args = [f"ckpt={ckpt}", f"out_dir={out}", "sampler=ddim", "steps=3", "progress=false"]
    return cli.main(["sample", *args, *extra])


def test_mask_conditioned_sample_writes_given_masks_batch_invariant(conditioned_run, tmp_path):
    ckpt, masks = conditioned_run
    out, again = tmp_path / "syn", tmp_path / "again"
    assert _sample_masks(ckpt, out, f"masks_dir={masks}", "batch_size=2") == 0
    manifest = pd.read_csv(out / "manifest.csv")
    given = sorted(masks.glob("*.nii.gz"))
    assert list(manifest["file"]) == [f"sample_{i:05d}.nii.gz" for i in range(3)]
    assert [Path(m).name for m in manifest["mask_source"]] == [p.name for p in given]
    datalist = json.loads((out / "datalist.json").read_text())["training"]
    assert [e["label"] for e in datalist] == list(manifest["label_file"])
    for source, (_, row) in zip(given, manifest.iterrows(), strict=True):
        label, image = nib.load(out / row["label_file"]), nib.load(out / row["file"])
        assert label.get_data_dtype() == np.uint8 and np.array_equal(label.affine, image.affine)
        assert np.array_equal(np.asarray(label.dataobj), np.asarray(nib.load(source).dataobj))
    assert _sample_masks(ckpt, again, f"masks_dir={masks}", "batch_size=1") == 0
    for name in [*manifest["file"], *manifest["label_file"]]:
        assert np.array_equal(np.asarray(nib.load(out / name).dataobj), np.asarray(nib.load(again / name).dataobj)), name
    # the image follows its mask: another mask for sample 0 gives another image from the same seed
    other = tmp_path / "other"
    other.mkdir()
    for source in given:
        nib.save(nib.load(source), other / source.name)
    swapped = nib.load(given[1])
    nib.save(nib.Nifti1Image(np.asarray(swapped.dataobj), swapped.affine), other / given[0].name)
    assert _sample_masks(ckpt, tmp_path / "swap", f"masks_dir={other}", "batch_size=1") == 0
    first = [np.asarray(nib.load(d / "sample_00000.nii.gz").dataobj) for d in (out, tmp_path / "swap")]
    assert not np.array_equal(*first)
    assert np.array_equal(  # sample 1 (same seed, same mask) is unchanged
        np.asarray(nib.load(out / "sample_00001.nii.gz").dataobj),
        np.asarray(nib.load(tmp_path / "swap" / "sample_00001.nii.gz").dataobj),
    )
    # resume: a rerun with the same masks redoes nothing; other masks into the same folder are refused
    kept = (out / "sample_00002.nii.gz").stat().st_mtime_ns
    assert _sample_masks(ckpt, out, f"masks_dir={masks}") == 0
    assert (out / "sample_00002.nii.gz").stat().st_mtime_ns == kept
    assert _sample_masks(ckpt, out, f"masks_dir={other}") != 0


def _one_line_failure(args: list[str], tmp_path: Path) -> str:
    code = subprocess.run(
        [sys.executable, "-m", "medsynth.cli", "sample", *args, f"out_dir={tmp_path / 'bad_out'}", "progress=false"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert code.returncode != 0 and "Traceback" not in code.stderr
    assert not (tmp_path / "bad_out").exists()  # nothing written
    return code.stderr.strip().splitlines()[-1]


def test_mask_conditioned_bad_input_is_one_line(conditioned_run, paired_run, tmp_path):
    ckpt, masks = conditioned_run
    wrong_grid, wrong_values = tmp_path / "grid", tmp_path / "values"
    for folder in (wrong_grid, wrong_values):
        folder.mkdir()
    source = nib.load(sorted(masks.glob("*.nii.gz"))[0])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), source.affine), wrong_grid / "m.nii.gz")
    nib.save(nib.Nifti1Image(np.full(source.shape, 9, np.uint8), source.affine), wrong_values / "m.nii.gz")
    assert "not the checkpoint's grid [16, 16, 16]" in _one_line_failure([f"ckpt={ckpt}", f"masks_dir={wrong_grid}"], tmp_path)
    assert "label values 9 outside 0..4" in _one_line_failure([f"ckpt={ckpt}", f"masks_dir={wrong_values}"], tmp_path)
    assert "masks_dir" in _one_line_failure([f"ckpt={ckpt}", "num_samples=2"], tmp_path)
    joint = paired_run / "run" / "checkpoints" / "last.ckpt"
    assert "masks_dir" in _one_line_failure([f"ckpt={joint}", f"masks_dir={masks}"], tmp_path)
