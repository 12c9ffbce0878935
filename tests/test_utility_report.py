"""`medsynth analyze ... utility=PATH`: the utility section beside experts and metrics."""

import json

from medsynth import cli
from tests.test_analysis_stats import TABLE

UTILITY = {
    "schema": 1,
    "task": "segmentation",
    "score": "dice",
    "better": "higher",
    "n_test": 16,
    "test_subjects": [f"heldout_{i:04d}" for i in range(16)],
    "seeds": [0, 1, 2],
    "results": [
        {"arm": "real", "n_real": 4, "n_synthetic": 0, "score": 0.61, "ci": [0.58, 0.64], "per_seed": [0.6, 0.61, 0.62], "seed_sd": 0.01},
        {"arm": "real+synthetic", "n_real": 4, "n_synthetic": 16, "score": 0.66, "ci": [0.63, 0.69], "per_seed": [0.65, 0.66, 0.67], "seed_sd": 0.01},
        {"arm": "synthetic", "n_real": 0, "n_synthetic": 16, "score": 0.52, "ci": [None, None], "per_seed": [0.5, 0.52, 0.54], "seed_sd": 0.02},
    ],
    "gains": [{"comparison": "real+synthetic - real", "n_real": 4, "gain": 0.05, "ci": [0.03, 0.07], "p_gain_positive": 1.0}],
    "settings": {},
}


def test_analyze_adds_the_utility_section(tmp_path, capsys):
    (tmp_path / "ratings.csv").write_text(TABLE)
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "utility.json").write_text(json.dumps(UTILITY))
    args = [f"ratings={tmp_path / 'ratings.csv'}", f"out_dir={tmp_path / 'a'}", "bootstrap.n_resamples=100", "report.dpi=40"]
    assert cli.main(["analyze", *args, f"utility={tmp_path / 'u'}"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["utility"]["gains"][0]["gain"] == 0.05 and summary["utility"]["n_test"] == 16
    page = (tmp_path / "a" / "report.html").read_text()
    assert "Utility: does synthetic data help" in page and "[0.030, 0.070]" in page and "+0.050" in page
    assert page.index("Utility:") < page.index("</body>")
    # without utility= the report has no such section; a bad file is one line
    assert cli.main(["analyze", *args]) == 0
    assert "Utility:" not in (tmp_path / "a" / "report.html").read_text()
    (tmp_path / "bad.json").write_text(json.dumps({"schema": 7}))
    capsys.readouterr()
    assert cli.main(["analyze", *args, f"utility={tmp_path / 'bad.json'}"]) == 2
    assert "bad.json: not a medsynth utility.json of schema 1" in capsys.readouterr().err
