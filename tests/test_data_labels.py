"""Label maps: demo phantoms and brains with labels, and their transport through `medsynth data prepare`."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from medsynth import cli
from medsynth.config import compose_stage
from medsynth.data.phantom import (
    PHANTOM_CLASSES,
    grid_affine,
    make_phantom,
    make_phantom_pair,
    phantom_label_map,
    render_phantom,
)

SMALL = ["num_workers=1", "progress=false"]


def _prepare(src, out, *extra: str) -> int:
    return cli.main(["data", "prepare", f"input={src}", f"out_dir={out}", *SMALL, *extra])


def test_phantom_label_map_is_the_drawn_anatomy_and_leaves_the_image_unchanged():
    shape = (32, 32, 32)
    volume, label, affine, params = make_phantom_pair(shape, np.random.default_rng([3, 1]))
    alone, _, _ = make_phantom(shape, np.random.default_rng([3, 1]))
    assert np.array_equal(volume, alone)  # labels draw no random numbers
    assert label.dtype == np.uint8 and label.shape == shape and label.max() < len(PHANTOM_CLASSES)
    mean = {k: float(volume[label == k].mean()) for k in range(4)}
    # skull ~1 > brain ~0.6 > ventricles ~0.2 > background ~0
    assert mean[1] > mean[2] > mean[3] > mean[0]
    lesion = PHANTOM_CLASSES.index("lesion")
    assert bool((label == lesion).any()) == bool(params.has_lesion and (label == lesion).sum())


def test_demo_writes_label_maps_on_the_image_grid(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["data", "demo", "n=3", "shape=[16,16,16]", "phantom.lesion_probability=1.0", f"out_dir={out}"]) == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns[:3]) == ["file", "subject_id", "lesion"]
    for _, row in manifest.iterrows():
        image, label = nib.load(out / row["file"]), nib.load(out / row["label"])
        assert row["label"] == f"labels/{row['subject_id']}.nii.gz"
        assert label.get_data_dtype() == np.uint8 and label.shape == image.shape
        assert np.array_equal(label.affine, image.affine)
    # no label map directly in the folder: evaluate/study list only the scans
    assert sorted(p.name for p in out.glob("*.nii.gz")) == list(manifest["file"])


def test_brain_tissue_labels_follow_the_deformed_image():
    pytest.importorskip("nilearn")
    from medsynth.data.brain import BRAIN_CLASSES, make_brain, make_brain_pair

    cfg = compose_stage("data_demo").brain
    shape = (24, 24, 24)
    volume, label, affine, _ = make_brain_pair(shape, np.random.default_rng([0, 2]), cfg)
    alone, affine_alone, _ = make_brain(shape, np.random.default_rng([0, 2]), cfg)
    assert np.array_equal(volume, alone) and np.array_equal(affine, affine_alone)
    assert label.dtype == np.uint8 and set(np.unique(label)) == set(range(len(BRAIN_CLASSES)))
    mean = {name: float(volume[label == k].mean()) for k, name in enumerate(BRAIN_CLASSES)}
    # T1 contrast: white matter > grey matter > CSF > background
    assert mean["white_matter"] > mean["gray_matter"] > mean["csf"] > mean["background"]
    # a different subject's deformation moves the labels with it
    other, other_label, _, _ = make_brain_pair(shape, np.random.default_rng([0, 3]), OmegaConf.create(cfg))
    assert not np.array_equal(label, other_label)


def _write(path: Path, array: np.ndarray, affine: np.ndarray, dtype=np.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(dtype), affine), path)


def _lps_pair(tmp_path: Path, n: int = 3) -> Path:
    """Phantoms stored in LPS voxel order with 4 mm voxels, with their labels, listed in a CSV."""
    rows = []
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    for i in range(n):
        _, _, _, params = make_phantom_pair((48, 48, 48), np.random.default_rng([5, i]))
        # a grid off the head's centre, so a label mirrored in voxel space would miss its anatomy
        affine = grid_affine((48, 48, 48), (192.0, 192.0, 192.0))
        affine[:3, 3] += [30.0, -20.0, 10.0]
        volume = render_phantom(params, (48, 48, 48), np.random.default_rng(i), affine)
        label = phantom_label_map(params, (48, 48, 48), affine)
        # reverse the first two voxel axes; the affine keeps each voxel at the same world point
        lps_affine = affine.copy()
        lps_affine[:3, :3] = affine[:3, :3] @ flip[:3, :3]
        lps_affine[:3, 3] = affine[:3, :3] @ np.array([47.0, 47.0, 0.0]) + affine[:3, 3]
        _write(tmp_path / "src" / f"s{i}.nii.gz", volume[::-1, ::-1], lps_affine)
        _write(tmp_path / "src" / "seg" / f"s{i}.nii.gz", label[::-1, ::-1], lps_affine, np.uint8)
        rows.append({"path": f"s{i}.nii.gz", "label": f"seg/s{i}.nii.gz", "subject_id": f"s{i}"})
    pd.DataFrame(rows).to_csv(tmp_path / "src" / "list.csv", index=False)
    return tmp_path / "src" / "list.csv"


def test_label_voxels_stay_on_their_anatomy_through_reorientation_and_resampling(tmp_path):
    csv = _lps_pair(tmp_path)
    out = tmp_path / "out"
    assert _prepare(csv, out, "spacing=[6,6,6]", "shape=[32,32,32]") == 0
    manifest = pd.read_csv(out / "manifest.csv")
    info = json.loads((out / "preprocessing.json").read_text())
    assert info["label_map"]["dir"] == "labels" and info["label_map"]["interpolation"] == "nearest"
    for i, row in manifest.iterrows():
        image, label = nib.load(out / row["file"]), nib.load(out / row["label"])
        assert nib.aff2axcodes(label.affine) == ("R", "A", "S")
        assert np.array_equal(label.affine, image.affine) and label.shape == image.shape == (32, 32, 32)
        assert label.get_data_dtype() == np.uint8
        # the truth: the same phantom's anatomy drawn directly on the prepared grid (world mm)
        _, _, _, params = make_phantom_pair((48, 48, 48), np.random.default_rng([5, i]))
        truth = phantom_label_map(params, (32, 32, 32), label.affine)
        got = np.asarray(label.dataobj)
        for k in (1, 2, 3):
            dice = 2 * np.sum((got == k) & (truth == k)) / (np.sum(got == k) + np.sum(truth == k))
            assert dice > 0.8, (i, PHANTOM_CLASSES[k], dice)
        data = image.get_fdata()
        assert data[got == 1].mean() > data[got == 2].mean() > data[got == 3].mean() > data[got == 0].mean()


def test_decathlon_labels_are_carried(tmp_path):
    assert cli.main(["data", "demo", "n=2", "shape=[16,16,16]", f"out_dir={tmp_path / 'demo'}"]) == 0
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {"training": [{"image": f"./demo/phantom_000{i}.nii.gz", "label": f"./demo/labels/phantom_000{i}.nii.gz"} for i in range(2)]}
        )
    )
    out = tmp_path / "out"
    assert _prepare(tmp_path / "dataset.json", out, "spacing=[12,12,12]", "shape=[16,16,16]") == 0
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest["label"]) == ["labels/phantom_0000.nii.gz", "labels/phantom_0001.nii.gz"]
    source = nib.load(tmp_path / "demo" / "labels" / "phantom_0000.nii.gz")
    prepared = nib.load(out / "labels" / "phantom_0000.nii.gz")
    assert set(np.unique(prepared.dataobj)) <= set(np.unique(source.dataobj))
    # a rerun finds both outputs done
    assert _prepare(tmp_path / "dataset.json", out, "spacing=[12,12,12]", "shape=[16,16,16]") == 0


@pytest.mark.parametrize(
    "case, reason",
    [
        ("shape", "label map on another grid than its image"),
        ("shift", "voxel positions differ by up to 3 mm"),
        ("classes", "label values 4 outside 0..3 (label_map.num_classes=4)"),
        ("float", "non-integer values"),
    ],
)
def test_bad_label_maps_one_line_nothing_written(tmp_path, capsys, case, reason):
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    volume, label, _, _ = make_phantom_pair((20, 20, 20), np.random.default_rng(0))
    _write(tmp_path / "src" / "a.nii.gz", volume, affine)
    label = label.astype(np.float32)
    bad_affine = affine
    if case == "shape":
        label = label[:-2]
    elif case == "shift":
        bad_affine = affine.copy()
        bad_affine[0, 3] += 3.0
    elif case == "classes":
        label[0, 0, 0] = 4
    else:
        label = label + 0.5
    _write(tmp_path / "src" / "a_seg.nii.gz", label, bad_affine)
    pd.DataFrame([{"path": "a.nii.gz", "label": "a_seg.nii.gz"}]).to_csv(tmp_path / "src" / "m.csv", index=False)
    out = tmp_path / "out"
    assert _prepare(tmp_path / "src" / "m.csv", out, "spacing=[4,4,4]", "shape=[20,20,20]", "label_map.num_classes=4") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "bad input" in line]
    assert len(err) == 1 and "a_seg.nii.gz" in err[0] and reason in err[0]
    assert not out.exists()


def test_missing_label_map_is_a_bad_input(tmp_path, capsys):
    assert cli.main(["data", "demo", "n=1", "shape=[16,16,16]", f"out_dir={tmp_path / 'demo'}"]) == 0
    (tmp_path / "demo" / "labels" / "phantom_0000.nii.gz").unlink()
    assert _prepare(tmp_path / "demo", tmp_path / "out", "spacing=[12,12,12]", "shape=[16,16,16]") == 2
    assert "label map" in capsys.readouterr().err and not (tmp_path / "out").exists()
