"""Simulated reader studies: known skill is recovered, the whole loop runs through the CLI, and the
experts' model ranking is compared with set-level metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medsynth import cli
from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.simulation import simulate_ratings
from medsynth.analysis.summary import AnalysisSettings, analyze

FAST = AnalysisSettings(bootstrap=BootstrapSettings(n_resamples=200))


def cases(n_synthetic: int, n_real: int, quality=None, model=None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "case_id": [f"syn_{i:03d}" for i in range(n_synthetic)]
            + [f"real_{i:03d}" for i in range(n_real)],
            "is_synthetic": [1] * n_synthetic + [0] * n_real,
        }
    )
    if quality is not None:
        frame["quality"] = list(quality) + [np.nan] * n_real
    if model is not None:
        frame["model"] = list(model) + [""] * n_real
    return frame


def test_simulated_skill_is_recovered_and_reproducible():
    table = cases(60, 60)
    ratings = simulate_ratings(table, n_readers=4, skill=0.8, repeat_fraction=0.1, seed=3)
    assert ratings.equals(simulate_ratings(table, n_readers=4, skill=0.8, repeat_fraction=0.1, seed=3))
    assert not ratings.equals(simulate_ratings(table, n_readers=4, skill=0.8, repeat_fraction=0.1, seed=4))
    assert len(ratings) == 4 * 120 + 4 * 12
    assert set(ratings["repeat"]) == {0, 1}
    assert ratings["confidence"].between(1, 5).all() and ratings["realism"].between(1, 5).all()
    summary = analyze(ratings, None, None, FAST).summary
    pooled = summary["pooled"]
    low, high = pooled["accuracy_ci"]
    assert low <= 0.8 <= high  # 480 calls with true accuracy 0.8
    assert pooled["auc"] > 0.75 and pooled["binom_p"] < 1e-6
    assert summary["realism"]["mean_real"] > summary["realism"]["mean_synthetic"]
    assert summary["intra_reader"]["pooled"]["n_pairs"] == 48
    assert summary["agreement"]["fleiss_kappa_call"] > 0.2


def test_chance_readers_are_not_better_than_chance():
    ratings = simulate_ratings(cases(50, 50), n_readers=3, skill=[0.5, 0.5, 0.5], repeat_fraction=0.0, seed=0)
    summary = analyze(ratings, None, None, FAST).summary
    assert abs(summary["pooled"]["accuracy"] - 0.5) < 0.1
    assert summary["intra_reader"] is None


def test_metric_correlation_recovers_a_metric_that_drives_realism():
    rng = np.random.default_rng(0)
    quality = rng.uniform(0, 1, 40)
    ratings = simulate_ratings(cases(40, 20, quality), n_readers=5, skill=0.7, seed=1)
    per_image = pd.DataFrame(
        {"distance": 1.0 - quality, "noise": rng.normal(size=40)},
        index=pd.Index([f"syn_{i:03d}" for i in range(40)], name="case_id"),
    )
    summary = analyze(ratings, per_image, None, FAST).summary
    good, noise = summary["metric_correlation"]["distance"], summary["metric_correlation"]["noise"]
    assert good["spearman_rho"] < -0.6 and good["spearman_p_holm"] < 0.01
    assert good["spearman_ci"][0] <= good["spearman_rho"] <= good["spearman_ci"][1] < 0
    assert good["kendall_ci"][0] <= good["kendall_tau"] <= good["kendall_ci"][1]
    assert noise["spearman_p_holm"] > 0.01
    assert good["n"] == 40


def write_model_study(tmp_path):
    """3 models of decreasing quality; frd follows quality (lower = better), 'bogus' inverts it."""
    quality = {"good": 0.95, "mid": 0.5, "bad": 0.05}
    models = [m for m in quality for _ in range(20)]
    table = cases(60, 30, [quality[m] for m in models], models)
    ratings = simulate_ratings(table, n_readers=4, skill=0.65, seed=2)
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    metrics = {"good": (5.0, 0.2), "mid": (9.0, 0.5), "bad": (20.0, 0.1)}
    for model, (frd, bogus) in metrics.items():
        (tmp_path / "sets" / model).mkdir(parents=True)
        entry = {"target": None, "ci": None, "floor": None}
        (tmp_path / "sets" / model / "metrics.json").write_text(
            json.dumps(
                {
                    "schema": 2,
                    "metrics": {
                        "frd": {"value": frd, "better": "lower", **entry},
                        "kid": {"value": 0.01, "better": "lower", **entry},  # the same for every model
                        "bogus_score": {"value": bogus, "better": "higher", **entry},
                    },
                    "settings": {"n_real": 30, "z_clip": 10.0},
                }
            )
        )
    per_image = pd.DataFrame({"case_id": [f"syn_{i:03d}" for i in range(60)], "m": np.arange(60.0)})
    per_image.to_csv(tmp_path / "per_image.csv", index=False)
    return tmp_path / "ratings.csv"


@pytest.mark.parametrize("form", ["folder", "dict"])
def test_model_ranking_through_the_cli(tmp_path, capsys, form):
    ratings = write_model_study(tmp_path)
    sets = tmp_path / "sets"
    spec = (
        str(sets)
        if form == "folder"
        else "{" + ",".join(f"{m}:{sets / m / 'metrics.json'}" for m in ("good", "mid", "bad")) + "}"
    )
    out = tmp_path / "out"
    args = [
        f"ratings={ratings}",
        f"per_image={tmp_path / 'per_image.csv'}",
        f"set_metrics={spec}",
        f"out_dir={out}",
    ]
    assert cli.main(["analyze", *args, "bootstrap.n_resamples=100", "report.dpi=40"]) == 0, (
        capsys.readouterr().err
    )
    ranking = json.loads((out / "summary.json").read_text())["model_ranking"]
    assert {p.name for p in (out / "figures").glob("*.png")} == {"roc.png", "realism.png", "metrics.png"}
    assert ranking["expert_ranking"] == ["good", "mid", "bad"]
    assert set(ranking["metrics"]) == {"frd", "kid", "bogus_score"}  # settings are never ranked
    frd = ranking["metrics"]["frd"]
    assert frd["better"] == "lower" and frd["ranking"] == ["good", "mid", "bad"]
    assert frd["spearman_rho"] == pytest.approx(1.0) and frd["kendall_tau"] == pytest.approx(1.0)
    bogus = ranking["metrics"]["bogus_score"]
    expert = [ranking["models"][m]["mean_realism"] for m in ("good", "mid", "bad")]
    assert bogus["spearman_rho"] == pytest.approx(stats.spearmanr([0.2, 0.5, 0.1], expert).statistic)
    assert ranking["metrics"]["kid"]["spearman_rho"] is None  # constant across models
    assert ranking["metrics"]["kid"]["ranking"] == ["bad = good = mid"]
    out = capsys.readouterr().out
    assert "frd (lower is better) ranked the 3 models exactly as the experts did" in out
    assert "kid tied all 3 models" in out


def test_simulate_command_writes_a_valid_ratings_csv(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    for i in range(6):
        (real / f"phantom_{i:04d}.nii.gz").write_bytes(b"")
    (real / "manifest.csv").write_text("file\n")
    per_image = tmp_path / "per_image.csv"
    per_image.write_text(
        "case_id,frd_local,label\n" + "".join(f"sample_{i:05d},{i * 0.1},x\n" for i in range(8))
    )
    out = tmp_path / "ratings.csv"
    args = [f"per_image={per_image}", f"real_dir={real}", f"out={out}", "readers=2", "skill=0.9", "seed=5"]
    assert cli.main(["analyze", "simulate", *args, "quality_metric=frd_local", "model=ddim50"]) == 0
    ratings = pd.read_csv(out)
    assert set(ratings["case_id"]) == {f"sample_{i:05d}" for i in range(8)} | {
        f"phantom_{i:04d}" for i in range(6)
    }
    assert ratings["reader_id"].nunique() == 2
    assert (ratings.loc[ratings.is_synthetic == 1, "model"] == "ddim50").all()
    # lower frd_local -> higher simulated quality -> higher realism, on average
    means = ratings[(ratings.is_synthetic == 1) & (ratings.repeat == 0)].groupby("case_id")["realism"].mean()
    assert (
        means[[f"sample_{i:05d}" for i in range(3)]].mean()
        > means[[f"sample_{i:05d}" for i in range(5, 8)]].mean()
    )
    # and analyze reads it
    code = cli.main(
        [
            "analyze",
            f"ratings={out}",
            f"per_image={per_image}",
            f"out_dir={tmp_path / 'an'}",
            "bootstrap.n_resamples=50",
        ]
    )
    assert code == 0
    err = capsys.readouterr()
    code = cli.main(
        ["analyze", "simulate", f"per_image={per_image}", f"real_dir={tmp_path / 'nope'}", f"out={out}"]
    )
    assert code == 2 and "real_dir" in capsys.readouterr().err, err
