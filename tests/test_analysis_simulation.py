"""Simulated reader studies: known skill is recovered, every rating is marked simulated, the latent
realism is no metric's value, the whole loop runs through the CLI, and the experts' model ranking
is compared with set-level metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medsynth import cli
from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.summary import AnalysisSettings, analyze
from medsynth.study.simulate import latent_realism, reader_models, simulate_ratings

FAST = AnalysisSettings(bootstrap=BootstrapSettings(n_resamples=200))


def cases(n_synthetic: int, n_real: int, model=None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "case_id": [f"syn_{i:03d}" for i in range(n_synthetic)]
            + [f"real_{i:03d}" for i in range(n_real)],
            "is_synthetic": [1] * n_synthetic + [0] * n_real,
        }
    )
    if model is not None:
        frame["model"] = list(model) + [""] * n_real
    return frame


def simulate(table, readers, skill, seed=0, repeat_fraction=0.1, latent=None, **params):
    return simulate_ratings(table, reader_models(skill, readers, params), repeat_fraction, seed, latent)


def test_simulated_skill_is_recovered_and_reproducible():
    table = cases(60, 60)
    ratings = simulate(table, 4, 0.8, seed=3, difficulty=0.0)
    assert ratings.equals(simulate(table, 4, 0.8, seed=3, difficulty=0.0))
    assert not ratings.equals(simulate(table, 4, 0.8, seed=4, difficulty=0.0))
    assert len(ratings) == 4 * 120 + 4 * 12
    assert set(ratings["repeat"]) == {0, 1} and (ratings["simulated"] == 1).all()
    assert ratings["confidence"].between(1, 5).all() and ratings["realism"].between(1, 5).all()
    summary = analyze(ratings, None, None, FAST).summary
    pooled = summary["pooled"]
    low, high = pooled["accuracy_ci"]
    assert low <= 0.8 <= high  # 480 calls with true accuracy 0.8
    assert pooled["auc"] > 0.75 and pooled["binom_p"] < 1e-6
    assert summary["realism"]["mean_real"] > summary["realism"]["mean_synthetic"]
    assert summary["intra_reader"]["pooled"]["n_pairs"] == 48
    assert summary["simulated_readers"] == ["reader_01", "reader_02", "reader_03", "reader_04"]
    assert summary["plain_language"][0].startswith("SIMULATED READERS: 4 of 4")
    m = summary["mrmc"]
    assert m["p"] < 0.01 and m["auc_ci"][0] > 0.6 and m["equivalence"]["equivalent"] is False


def test_chance_readers_are_not_better_than_chance_and_large_studies_show_equivalence():
    ratings = simulate(cases(50, 50), 3, [0.5, 0.5, 0.5], repeat_fraction=0.0, difficulty=0.0)
    summary = analyze(ratings, None, None, FAST).summary
    assert abs(summary["pooled"]["accuracy"] - 0.5) < 0.1
    assert summary["intra_reader"] is None
    # 8 chance readers x 400 cases: the AUC is pinned near 0.5, so TOST shows equivalence
    big = simulate(cases(200, 200), 8, 0.5, seed=2, repeat_fraction=0.0, difficulty=0.0, reader_bias_sd=0.0)
    summary = analyze(big, None, None, AnalysisSettings(bootstrap=BootstrapSettings(n_resamples=0))).summary
    m = summary["mrmc"]
    assert m["p"] > 0.05 and m["equivalence"]["equivalent"] is True
    assert any("indistinguishable from real ones within +-0.05" in line for line in summary["plain_language"])


def test_latent_realism_is_seeded_shared_and_not_a_metric():
    ids = [f"syn_{i:03d}" for i in range(200)]
    z = latent_realism(ids, 0)
    assert z == latent_realism(list(reversed(ids)), 0) and z != latent_realism(ids, 1)
    values = np.array(list(z.values()))
    assert abs(values.mean()) < 0.2 and 0.8 < values.std() < 1.2
    steps = {c: float(i % 4) for i, c in enumerate(ids)}  # a generation parameter, e.g. sampler steps
    driven = latent_realism(ids, 0, steps, 0.5)
    rho = stats.spearmanr([steps[c] for c in ids], [driven[c] for c in ids]).statistic
    assert 0.3 < rho < 0.7  # the parameter drives half, noise the rest


def test_metric_correlation_recovers_a_metric_that_tracks_the_latent_realism():
    rng = np.random.default_rng(0)
    table = cases(40, 20)
    latent = dict(zip(table.case_id[:40], rng.normal(size=40), strict=True))
    ratings = simulate(table, 5, 0.7, seed=1, latent=latent)
    z = np.array([latent[c] for c in table.case_id[:40]])
    per_image = pd.DataFrame(
        {"distance": -z, "noise": rng.normal(size=40)},
        index=pd.Index(table.case_id[:40], name="case_id"),
    )
    summary = analyze(ratings, per_image, None, FAST).summary
    good, noise = summary["metric_correlation"]["distance"], summary["metric_correlation"]["noise"]
    assert good["spearman_rho"] < -0.6 and good["spearman_p_holm"] < 0.01
    assert good["spearman_ci"][0] <= good["spearman_rho"] <= good["spearman_ci"][1] < 0
    assert good["kendall_ci"][0] <= good["kendall_tau"] <= good["kendall_ci"][1]
    assert noise["spearman_p_holm"] > 0.01
    assert good["n"] == 40


def write_model_study(tmp_path):
    """3 models of decreasing realism; frd follows it (lower = better), 'bogus' inverts it."""
    offset = {"good": 1.5, "mid": 0.0, "bad": -1.5}
    models = [m for m in offset for _ in range(20)]
    table = cases(60, 30, models)
    rng = np.random.default_rng(5)
    latent = {c: offset[m] + 0.3 * rng.normal() for c, m in zip(table.case_id[:60], models, strict=True)}
    ratings = simulate(table, 4, 0.65, seed=2, latent=latent)
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
    summary = json.loads((out / "summary.json").read_text())
    ranking = summary["model_ranking"]
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
    # MRMC treatment comparison: readers tell the realistic model's scans from real ones less well
    models = summary["mrmc"]["models"]
    assert models["auc"]["good"] < models["auc"]["mid"] < models["auc"]["bad"]
    assert models["df1"] == 2 and models["p"] < 0.05


def test_simulate_command_writes_a_marked_ratings_csv(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    for i in range(6):
        (real / f"phantom_{i:04d}.nii.gz").write_bytes(b"")
    (real / "manifest.csv").write_text("file\n")
    per_image = tmp_path / "per_image.csv"
    per_image.write_text(
        "case_id,frd_local,label\n" + "".join(f"sample_{i:05d},{i * 0.1},x\n" for i in range(8))
    )
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,steps\n" + "".join(f"sample_{i:05d}.nii.gz,{10 * (i + 1)}\n" for i in range(8)))
    out = tmp_path / "ratings.csv"
    args = [f"per_image={per_image}", f"real_dir={real}", f"out={out}", "readers=2", "skill=0.9", "seed=5"]
    extra = [f"manifest={manifest}", "latent_column=steps", "latent_weight=1.0", "reader.realism_sd=0.2", "model=ddim50"]
    assert cli.main(["analyze", "simulate", *args, *extra]) == 0
    assert "simulated=1" in capsys.readouterr().out
    ratings = pd.read_csv(out)
    assert set(ratings["case_id"]) == {f"sample_{i:05d}" for i in range(8)} | {
        f"phantom_{i:04d}" for i in range(6)
    }
    assert ratings["reader_id"].nunique() == 2 and (ratings["simulated"] == 1).all()
    assert (ratings.loc[ratings.is_synthetic == 1, "model"] == "ddim50").all()
    # latent_weight=1: more steps (a generation parameter) -> higher latent realism -> higher realism
    means = ratings[(ratings.is_synthetic == 1) & (ratings.repeat == 0)].groupby("case_id")["realism"].mean()
    assert means[[f"sample_{i:05d}" for i in range(5, 8)]].mean() > means[[f"sample_{i:05d}" for i in range(3)]].mean()
    # and analyze reads it, with the banner
    code = cli.main(
        ["analyze", f"ratings={out}", f"per_image={per_image}", f"out_dir={tmp_path / 'an'}", "bootstrap.n_resamples=50"]
    )
    assert code == 0
    err = capsys.readouterr()
    assert "id=simulated-banner" in (tmp_path / "an" / "report.html").read_text()
    code = cli.main(
        ["analyze", "simulate", f"per_image={per_image}", f"real_dir={tmp_path / 'nope'}", f"out={out}"]
    )
    assert code == 2 and "real_dir" in capsys.readouterr().err, err
    code = cli.main(["analyze", "simulate", *args, "latent_column=steps"])
    assert code == 2 and "manifest" in capsys.readouterr().err
    code = cli.main(["analyze", "simulate", *args, "reader.nonsense=1"])
    assert code == 2
