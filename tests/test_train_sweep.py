"""Sweeps on Hydra's basic launcher: Optuna honours optimized_metric; bad searches are refused up front."""

import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, run_train  # noqa: E402

from medsynth.train import check_search_metric, objective, split_argv, sweep_points  # noqa: E402

STEPS = ["trainer.max_steps=2", "trainer.val_every_n_steps=2", "callbacks.checkpoint.every_n_steps=2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), n=6)


def _checkpoint_metric(run_dir: Path) -> float:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    return next(float(v["best_model_score"]) for k, v in state.items() if "'monitor': 'val/loss'" in k)


def test_optuna_minimises_optimized_metric_on_the_basic_launcher(prepared, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install "medsynth[optuna]"')
    sweep = tmp_path / "optuna"
    rc = run_train(
        [
            "-m", "hparams_search=optuna", f"data.root={prepared}", f"hydra.sweep.dir={sweep}", *TINY_OVERRIDES,
            *STEPS, "callbacks.preview.num_samples=0", "hydra.sweeper.n_trials=2",
        ]
    )  # fmt: skip
    assert rc == 0
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    scores = {job: _checkpoint_metric(sweep / job) for job in ("0", "1")}
    assert result["best_value"] == pytest.approx(min(scores.values()), rel=1e-6)
    best_job = min(scores, key=scores.get)
    overrides = yaml.safe_load((sweep / best_job / ".hydra" / "overrides.yaml").read_text())
    assert f"optim.lr={result['best_params']['optim.lr']}" in overrides


@pytest.mark.parametrize(
    "args, key",
    [
        (["hparams_search=optuna", "diffusion.prediction_type=choice(epsilon,v_prediction)"], "optimized_metric"),
        (["+optimized_metric=val/loss", "diffusion.prediction_type=epsilon,v_prediction"], "optimized_metric"),
        (["hparams_search=optuna", "optim.lrr=interval(0.001,0.01)"], "optim.lrr"),
        (["optim.lrr=1e-3,2e-3"], "optim.lrr"),
        (["model.ema_decay=0.99,1.5"], "model.ema_decay"),
    ],
)  # fmt: skip
def test_bad_searches_fail_in_one_line_before_any_job(capsys, prepared, tmp_path, args, key):
    if "hparams_search=optuna" in args:
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install "medsynth[optuna]"')
    rc = run_train(["-m", f"data.root={prepared}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY_OVERRIDES, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"medsynth train: error: {key}: "), err
    assert not (tmp_path / "sweep").exists()


def test_prediction_type_search_is_allowed_on_a_comparable_metric():
    check_search_metric("quality/score", ["diffusion.prediction_type"])
    check_search_metric("val/loss", ["optim.lr", "model.ema_decay"])
    with pytest.raises(Exception, match="not comparable"):
        check_search_metric("val/loss_best", ["diffusion.min_snr_gamma"])


def test_objective_names_the_metric():
    assert objective({"val/loss_best": 0.5, "train/loss": 0.7}, "train/loss") == 0.7
    with pytest.raises(Exception, match="'val/fid' was not logged"):
        objective({"val/loss": 0.5}, "val/fid")


def test_argv_split_and_sweep_points():
    flags, overrides = split_argv(["-m", "--cfg", "job", "a=1", "~b", "c=x,y"])
    assert flags == {"-m", "--cfg"} and overrides == ["a=1", "~b", "c=x,y"]
    points, keys = sweep_points(["a=1", "b=2,3", "c=4,5,6", "d=interval(0,1)"])
    assert keys == ["b", "c", "d"]
    assert points == [["a=1", "b=2", "c=4"], ["a=1", "b=3", "c=4"], ["a=1", "b=2", "c=5"], ["a=1", "b=2", "c=6"]]
