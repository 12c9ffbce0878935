"""Model ranking reads direction and target from metrics.json (schema 2), never from names or settings.

The case from issue 13: three models, one mode-collapsed. Ranked by names, the collapsed model came
first on ``ms_ssim_synthetic`` and on ``density`` (best near 1), and settings such as ``z_clip``
were "ranked exactly as the experts did" by alphabetical tie-breaking.
"""

from __future__ import annotations

import json

import pytest

from medsynth import cli
from medsynth.io.metrics_schema import read_metrics_file
from tests.test_analysis_simulation import write_model_study

# experts: good > mid > collapsed (simulated readers find the collapsed model's cases least real)
REAL_MS_SSIM = 0.30
METRICS = {  # (frd_d2, ms_ssim_synthetic, density, precision)
    "good": (900.0, 0.32, 1.05, 0.80),
    "mid": (2500.0, 0.45, 0.60, 0.80),
    "collapsed": (9000.0, 0.92, 3.10, 0.80),
}


def _entry(value, better, target=None):
    return {"value": value, "better": better, "target": target, "ci": [value * 0.9, value * 1.1], "floor": None}


def _write_sets(root):
    for model, (d2, ms, density, precision) in METRICS.items():
        folder = root / "sets" / model
        folder.mkdir(parents=True)
        data = {
            "schema": 2,
            "metrics": {
                "frd_d2": _entry(d2, "lower"),
                "ms_ssim_real": _entry(REAL_MS_SSIM, "target", REAL_MS_SSIM),
                "ms_ssim_synthetic": _entry(ms, "target", REAL_MS_SSIM),
                "density": _entry(density, "target", 1.0),
                "precision": _entry(precision, "higher"),
            },
            "settings": {"z_clip": 10.0, "kid": {"degree": 3}, "n_real": 40},
        }
        (folder / "metrics.json").write_text(json.dumps(data))
    return root / "sets"


def _ratings(root):
    """Simulated readers rating 3 models of decreasing realism, named good, mid, collapsed."""
    study = root / "study"
    study.mkdir(exist_ok=True)
    ratings = (study / "ratings.csv") if (study / "ratings.csv").exists() else write_model_study(study)
    text = ratings.read_text().replace(",bad,", ",collapsed,").replace(",bad\n", ",collapsed\n")
    (root / "ratings.csv").write_text(text)
    return root / "ratings.csv"


def _analyze(capsys, root, sets, *extra):
    code = cli.main(
        ["analyze", f"ratings={_ratings(root)}", f"set_metrics={sets}", f"out_dir={root / 'out'}",
         "bootstrap.n_resamples=50", "report.dpi=30", "report.save_png=false", *extra]
    )  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_three_models_rank_by_direction_and_target_and_say_tied(tmp_path, capsys):
    code, out, err = _analyze(capsys, tmp_path, _write_sets(tmp_path))
    assert code == 0, err
    ranking = json.loads((tmp_path / "out" / "summary.json").read_text())["model_ranking"]
    assert ranking["expert_ranking"] == ["good", "mid", "collapsed"]
    metrics = ranking["metrics"]
    assert set(metrics) == {"frd_d2", "ms_ssim_real", "ms_ssim_synthetic", "density", "precision"}
    # diversity by distance to the real value: the mode-collapsed model is last, not first
    assert metrics["ms_ssim_synthetic"]["ranking"] == ["good", "mid", "collapsed"]
    assert metrics["ms_ssim_synthetic"]["spearman_rho"] == pytest.approx(1.0)
    # density is best near 1: 1.05 beats 0.60 beats 3.10
    assert metrics["density"]["ranking"] == ["good", "mid", "collapsed"] and metrics["density"]["better"] == "target"
    assert metrics["frd_d2"]["ranking"] == ["good", "mid", "collapsed"]
    # equal values are ties, not an alphabetical order
    assert metrics["precision"]["ranking"] == ["collapsed = good = mid"] and metrics["precision"]["tied"]
    assert metrics["precision"]["spearman_rho"] is None
    assert "precision tied all 3 models" in out
    assert "ms_ssim_synthetic (target is better) ranked the 3 models exactly as the experts did" in out
    assert "z_clip" not in out and "degree" not in out  # settings are never metrics


def test_partial_ties_are_named(tmp_path, capsys):
    sets = _write_sets(tmp_path)
    path = sets / "mid" / "metrics.json"
    data = json.loads(path.read_text())
    data["metrics"]["frd_d2"]["value"] = 900.0  # as good as "good"
    path.write_text(json.dumps(data))
    code, out, err = _analyze(capsys, tmp_path, sets)
    assert code == 0, err
    frd = json.loads((tmp_path / "out" / "summary.json").read_text())["model_ranking"]["metrics"]["frd_d2"]
    assert frd["ranking"] == ["good = mid", "collapsed"] and frd["tied"]
    assert "tied: good = mid" in out


def test_schema_1_is_read_with_medsynth_directions(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({
        "frd": 14.7, "density": 0.9, "ms_ssim_real": 0.3, "ms_ssim_synthetic": 0.5, "n_real": 40,
        "settings": {"z_clip": 10.0},
    }))  # fmt: skip
    read = read_metrics_file(path)
    assert read.schema == 1 and set(read.metrics) == {"frd", "density", "ms_ssim_synthetic"}
    assert read.metrics["ms_ssim_synthetic"].target == 0.3 and read.metrics["density"].target == 1.0
    assert read.metrics["frd"].better == "lower"


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("schema1", "schema-1 metrics.json (frd = ln(1 + d^2)) cannot be ranked against schema-2"),
        ({"schema": 2, "metrics": {"frd": {"value": 1.0}}, "settings": {}}, "metrics.frd.better must be one of"),
        ({"schema": 3, "metrics": {}}, "unknown metrics.json schema 3"),
        ({"schema": 2, "metrics": {"d": {"value": "x", "better": "lower"}}}, "metrics.d.value must be a finite"),
    ],
)
def test_bad_metrics_files_are_one_line_errors_and_nothing_is_written(tmp_path, capsys, content, fragment):
    sets = _write_sets(tmp_path)
    bad = sets / "mid" / "metrics.json"
    bad.write_text(json.dumps({"frd": 14.7, "kid": 0.1} if content == "schema1" else content))
    code, out, err = _analyze(capsys, tmp_path, sets)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "mid/metrics.json" in lines[0] and fragment in lines[0], err
    assert not (tmp_path / "out" / "summary.json").exists()
