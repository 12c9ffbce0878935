"""``medsynth train`` config errors: one line naming the key, exit 2, before any training; --help."""

import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, run_train  # noqa: E402

from medsynth.data.datamodule import ResumableDistributedSampler, split_subjects  # noqa: E402


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), n=4)


def _error_line(capsys, args, run_dir):
    rc = run_train([*TINY_OVERRIDES, f"hydra.run.dir={run_dir}", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    assert not (run_dir / "checkpoints").exists()
    return err[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "data.root: is required"),
        (["data.root=/nonexistent/prepared"], "data.root: /nonexistent/prepared does not exist"),
        (["experiment=nope"], "experiment"),
        (["diffusion.prediction_type=noise"], "diffusion.prediction_type: unknown 'noise'"),
        (["model.wavelet_scaling=highband"], "model.wavelet_scaling: unknown 'highband'"),
        (["model.wavelet_detail_gain=0"], "model.wavelet_detail_gain: must be a finite number > 0"),
        (["diffusion.sigma_data=-1"], "diffusion.sigma_data: must be a finite number > 0"),
        (["diffusion.sigma_data=[0.1,-1]"], "diffusion.sigma_data: must be a finite number > 0 or a list of them, got [0.1, -1]"),
        (["diffusion.time_sampling=beta"], "diffusion.time_sampling: unknown 'beta'"),
        (["diffusion.prediction_type=x0"], "diffusion.prediction_type: unknown 'x0' (choose from epsilon, v_prediction, sample, flow, edm)"),
        (["model.norm_num_groups=5"], "model.norm_num_groups"),
        (["data.shape=[17,16,16]"], "data.shape: [17, 16, 16] is not divisible by 2"),
        (["model.representation=wavelet", "data.shape=[18,18,18]"], "is not divisible by 4"),
        (["trainer.max_steps=0"], "trainer.max_steps: must be >= 1"),
        (["ckpt_path=/nonexistent.ckpt"], "ckpt_path"),
    ],
)
def test_config_errors_fail_before_training(capsys, tmp_path, prepared, args, expected):
    needs_root = args and not any(a.startswith("data.root") for a in args)
    root = [f"data.root={prepared}"] if needs_root else []
    line = _error_line(capsys, [*root, *args], tmp_path / "run")
    assert line.startswith("medsynth train: error: ")
    assert expected in line


def test_prepared_shape_mismatch(capsys, tmp_path, prepared):
    line = _error_line(capsys, [f"data.root={prepared}", "data.shape=[32,32,32]"], tmp_path / "run")
    assert "data.shape: [32, 32, 32] differs from the prepared shape [16, 16, 16]" in line


def test_unprepared_folder_points_to_prepare(capsys, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    line = _error_line(capsys, [f"data.root={raw}"], tmp_path / "run")
    assert "data.root" in line and "medsynth data prepare" in line


def test_bad_volume_file_is_named(capsys, tmp_path):
    root = make_prepared(tmp_path / "prepared", n=4)
    bad = root / "phantom_0002.nii.gz"
    bad.write_bytes(gzip.compress(b"\0" * 4000)[:100])  # truncated gzip
    line = _error_line(capsys, [f"data.root={root}"], tmp_path / "run")
    assert "phantom_0002.nii.gz" in line


def test_missing_label_column(capsys, tmp_path, prepared):
    line = _error_line(capsys, [f"data.root={prepared}", "data.label_key=diagnosis"], tmp_path / "run")
    assert "data.label_key: column 'diagnosis' not in" in line


def test_help_lists_groups_and_keys(capsys):
    assert run_train(["--help"]) == 0
    out = capsys.readouterr().out
    for text in (
        "experiment: brain64, ct128, demo",
        "trainer: cpu, ddp, gpu",
        "logger: csv, mlflow, none, tensorboard",
        "hparams_search: optuna",
        "data.root",
        "hydra.run.dir",
    ):
        assert text in out, text


def test_split_is_deterministic_and_subject_level():
    ids = [f"s{i:02d}" for i in range(20)]
    train, val = split_subjects(ids, 0.2, seed=0)
    assert len(val) == 4 and not train & val and train | val == set(ids)
    assert split_subjects(list(reversed(ids)), 0.2, seed=0) == (train, val)
    # adding a subject (21 -> 5 val subjects) never moves a validation subject into training
    train2, val2 = split_subjects([*ids, "s99"], 0.2, seed=0)
    assert val <= val2 and train2 <= train | {"s99"}


def test_ranks_see_disjoint_data_and_resume_skips_batches():
    data = list(range(10))
    ranks = [
        list(ResumableDistributedSampler(data, num_replicas=2, rank=r, shuffle=True, seed=3)) for r in (0, 1)
    ]
    assert not set(ranks[0]) & set(ranks[1]) and set(ranks[0]) | set(ranks[1]) == set(data)
    sampler = ResumableDistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=3)
    full = list(sampler)
    sampler.skip = 4
    assert list(sampler) == full[4:]
    sampler.set_epoch(1)
    assert list(sampler) != full
