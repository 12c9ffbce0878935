"""medsynth utility: splits (no held-out subject ever trains), statistics, scores, bad input, a tiny end-to-end run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from medsynth import cli
from medsynth.config import compose_stage
from medsynth.errors import ConfigError
from medsynth.utility.downstream import segmentation_scores
from medsynth.utility.splits import held_out_split, plan_runs
from medsynth.utility.statistics import paired_gain, set_score

FAST = ["train.max_steps=3", "train.batch_size=2", "bootstrap.n_resamples=200", "progress=false", "figures=true"]


def _cfg(*overrides: str):
    return compose_stage("utility", ["real_dir=r", "out_dir=o", *overrides])


def _prepared(root: Path, name: str, n: int, seed: int, synthetic: bool = False) -> Path:
    raw, out = root / f"raw_{name}", root / name
    demo = ["data", "demo", f"n={n}", "shape=[16,16,16]", f"seed={seed}", f"out_dir={raw}", f"subject_prefix={name}"]
    assert cli.main([*demo, "phantom.lesion_probability=0.5"]) == 0
    args = [f"input={raw}", f"out_dir={out}", "spacing=[12,12,12]", "shape=[16,16,16]", "num_workers=1", "progress=false"]
    assert cli.main(["data", "prepare", *args]) == 0
    if synthetic:  # stand-in for a paired `medsynth sample` folder: label maps named in `label_file`
        manifest = pd.read_csv(out / "manifest.csv").rename(columns={"label": "label_file"})
        manifest["subject_id"] = [f"sample_{i:05d}" for i in range(n)]
        manifest.to_csv(out / "manifest.csv", index=False)
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("utility")
    return {
        "real": _prepared(root, "real", 10, 0),
        "synthetic": _prepared(root, "synthetic", 6, 1, synthetic=True),
        "test": _prepared(root, "test", 4, 2),
        "root": root,
    }


def test_held_out_subjects_never_train_and_subsets_are_nested():
    ids = [f"s{i:02d}" for i in range(30)]
    pool, test = held_out_split(ids, 0.3, seed=0)
    assert len(test) == 9 and not set(pool) & set(test) and sorted(pool + test) == ids
    assert held_out_split(ids + ["s99"], 0.3, seed=0)[1] != [] and set(test) <= set(held_out_split(ids, 0.3, 0)[1])
    synthetic = [f"sample_{i}" for i in range(12)]
    cfg = _cfg("n_real=[2,4,8]", "seeds=[0,1]", "synthetic_per_real=1.0")
    runs = plan_runs(cfg, pool, test, synthetic)
    assert len(runs) == 2 * 3 + 2 + 2 * 3
    for run in runs:
        assert not set(run.real_ids) & set(test)  # the contract: no held-out subject in training
        assert len(run.real_ids) == run.n_real and set(run.synthetic_ids) <= set(synthetic)
        if run.arm == "real":
            assert run.n_synthetic == 0
        if run.arm == "synthetic":
            assert run.n_real == 0 and run.n_synthetic == 12
        if run.arm == "real+synthetic":
            assert run.n_synthetic == run.n_real
    by = {(r.arm, r.n_real, r.seed): r for r in runs}
    assert set(by[("real", 4, 0)].real_ids) <= set(by[("real", 8, 0)].real_ids)  # nested learning curve
    assert by[("real", 4, 0)].real_ids == by[("real+synthetic", 4, 0)].real_ids  # arms paired on the same subjects
    assert by[("real", 4, 0)].real_ids != by[("real", 4, 1)].real_ids


def test_plan_refuses_arms_without_data():
    pool, test = [f"p{i}" for i in range(6)], ["t0", "t1"]
    with pytest.raises(ConfigError, match="synthetic_dir: arm synthetic has no data"):
        plan_runs(_cfg("n_real=[2]"), pool, test, [])
    with pytest.raises(ConfigError, match="n_real: asks for 8 real training subjects, the pool holds 6"):
        plan_runs(_cfg("n_real=[2,8]", "arms=[real]"), pool, test, [])
    with pytest.raises(ConfigError, match="arms"):
        plan_runs(_cfg("arms=[real,augmented]"), pool, test, ["x"])
    with pytest.raises(ConfigError, match="both held out and in the training pool"):
        plan_runs(_cfg("arms=[real]", "n_real=[1]"), pool, ["p0"], [])


def test_paired_gain_is_exact_on_a_shift_and_zero_on_identical_arms():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 0.9, size=(3, 20))
    boot = OmegaConf.create({"n_resamples": 500, "confidence_level": 0.95, "method": "percentile", "seed": 0})
    same = paired_gain(base, base.copy(), None, "segmentation", boot)
    assert same["gain"] == 0.0 and same["ci"] == [0.0, 0.0]
    shifted = paired_gain(base, base + 0.05, None, "segmentation", boot)
    assert shifted["gain"] == pytest.approx(0.05) and shifted["ci"] == pytest.approx([0.05, 0.05])
    assert shifted["p_gain_positive"] == 1.0
    noisy = paired_gain(base, base + rng.normal(0.02, 0.05, size=base.shape), None, "segmentation", boot)
    assert noisy["ci"][0] < noisy["gain"] < noisy["ci"][1]
    # classification: AUC per seed, averaged
    truth = np.array([0, 1] * 10)
    perfect = np.tile(truth.astype(float), (2, 1))
    assert set_score(perfect, truth, "classification") == 1.0
    assert paired_gain(1.0 - perfect, perfect, truth, "classification", boot)["gain"] == pytest.approx(1.0)


def test_segmentation_scores_dice_and_hd95():
    truth = np.zeros((2, 16, 16, 16), dtype=np.uint8)
    truth[:, 4:12, 4:12, 4:12] = 1
    truth[:, 6:9, 6:9, 6:9] = 2
    perfect = segmentation_scores(truth, truth, 3, (2.0, 2.0, 2.0))
    assert np.allclose(perfect.score, 1.0) and np.allclose(perfect.extra["hd95"], 0.0)
    shifted = np.roll(truth, 2, axis=1)
    worse = segmentation_scores(shifted, truth, 3, (2.0, 2.0, 2.0))
    assert np.all(worse.score < 0.8) and np.allclose(worse.extra["hd95"], 4.0)  # 2 voxels of 2 mm
    # a class absent from both maps is skipped, not counted as a perfect 1 or a failed 0
    only_one = truth.copy()
    only_one[only_one == 2] = 1
    assert np.allclose(segmentation_scores(only_one, only_one, 3, (1.0, 1.0, 1.0)).score, 1.0)


def test_utility_end_to_end_table_json_figure(sets, tmp_path, capsys):
    out = tmp_path / "u"
    args = [
        f"real_dir={sets['real']}",
        f"synthetic_dir={sets['synthetic']}",
        f"test_dir={sets['test']}",
        f"out_dir={out}",
        "n_real=[2,4]",
        "seeds=[0,1]",
        *FAST,
    ]
    assert cli.main(["utility", *args]) == 0
    printed = capsys.readouterr().out
    assert "real+synthetic - real" in printed and "held-out real subjects" in printed
    summary = json.loads((out / "utility.json").read_text())
    assert summary["schema"] == 1 and summary["task"] == "segmentation" and summary["n_test"] == 4
    arms = {(r["arm"], r["n_real"]) for r in summary["results"]}
    assert arms == {("real", 2), ("real", 4), ("synthetic", 0), ("real+synthetic", 2), ("real+synthetic", 4)}
    for r in summary["results"]:
        assert 0.0 <= r["score"] <= 1.0 and len(r["per_seed"]) == 2 and r["ci"][0] <= r["ci"][1]
    assert {(g["comparison"], g["n_real"]) for g in summary["gains"]} >= {("real+synthetic - real", 2)}
    per_subject = pd.read_csv(out / "per_subject.csv")
    test_ids = set(summary["test_subjects"])
    assert set(per_subject["subject_id"]) == test_ids == {f"test_{i:04d}" for i in range(4)}
    assert (out / "figures" / "learning_curve.png").stat().st_size > 1000


def test_utility_bad_inputs_one_line(sets, tmp_path, capsys):
    base = [f"real_dir={sets['real']}", f"test_dir={sets['test']}", f"out_dir={tmp_path / 'u'}", *FAST]
    # an arm with no data
    assert cli.main(["utility", *base, "n_real=[2]"]) == 2
    assert "synthetic_dir: arm synthetic has no data" in capsys.readouterr().err
    # label values outside the configured classes (phantom labels go up to 4)
    assert cli.main(["utility", *base, "arms=[real]", "n_real=[2]", "task.num_classes=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels/" in err[0] and "outside 0..2" in err[0]
    # held-out subjects that are also training subjects
    assert cli.main(["utility", *base[1:], f"real_dir={sets['test']}", "arms=[real]", "n_real=[1]"]) == 2
    assert "also in real_dir" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()


def test_utility_label_map_on_another_grid(sets, tmp_path, capsys):
    import shutil

    import nibabel as nib

    broken = tmp_path / "synthetic"
    shutil.copytree(sets["synthetic"], broken)
    manifest = pd.read_csv(broken / "manifest.csv")
    label_path = broken / manifest["label_file"][0]
    image = nib.load(label_path)
    moved = image.affine.copy()
    moved[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), moved), label_path)
    args = [f"real_dir={sets['real']}", f"synthetic_dir={broken}", f"test_dir={sets['test']}", f"out_dir={tmp_path / 'u'}"]
    assert cli.main(["utility", *args, *FAST]) == 2
    err = capsys.readouterr().err
    assert "label map on another grid" in err and str(label_path) in err and not (tmp_path / "u").exists()


def test_classification_task(sets, tmp_path):
    manifest = pd.read_csv(sets["real"] / "manifest.csv")
    lesion = dict(zip(manifest["subject_id"], manifest["lesion"], strict=True))
    split_seed = next(
        s for s in range(50) if len({lesion[i] for i in held_out_split(list(lesion), 0.4, s)[1]}) == 2
    )
    args = [
        f"real_dir={sets['real']}",
        f"out_dir={tmp_path / 'c'}",
        "task=classification",
        "arms=[real]",
        "n_real=[3]",
        "seeds=[0]",
        "test_fraction=0.4",
        f"split_seed={split_seed}",
        *FAST,
    ]
    assert cli.main(["utility", *args]) == 0
    summary = json.loads((tmp_path / "c" / "utility.json").read_text())
    assert summary["task"] == "classification" and summary["score"] == "auc"
    assert 0.0 <= summary["results"][0]["score"] <= 1.0


@pytest.mark.parametrize("task, out_shape", [("segmentation", (2, 5, 16, 16, 16)), ("classification", (2, 2))])
def test_task_configs_build_their_network_and_loss(task, out_shape):
    import torch
    from hydra.utils import instantiate

    cfg = compose_stage("utility", ["real_dir=r", "out_dir=o", f"utility_task@task={task}"])
    net, loss = instantiate(cfg.task.net), instantiate(cfg.task.loss)
    logits = net(torch.randn(2, 1, 16, 16, 16))
    assert tuple(logits.shape) == out_shape
    target = torch.zeros(2, 1, 16, 16, 16, dtype=torch.long) if task == "segmentation" else torch.zeros(2, dtype=torch.long)
    assert torch.isfinite(loss(logits, target))
