"""medsynth analyze edge cases and bad input: one clear line, non-zero exit, nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medsynth import cli
from medsynth.analysis.bootstrap import BootstrapSettings
from medsynth.analysis.io import load_ratings
from medsynth.analysis.summary import AnalysisSettings, analyze
from tests.test_analysis_stats import TABLE, fleiss_textbook

FAST = AnalysisSettings(bootstrap=BootstrapSettings(n_resamples=100))
CLI_FAST = ["bootstrap.n_resamples=100", "report.dpi=40"]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def frame(text: str, tmp_path) -> pd.DataFrame:
    return load_ratings(write(tmp_path, "r.csv", text))


def run(capsys, *args: str) -> tuple[int, list[str], str]:
    code = cli.main(["analyze", *args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def test_one_reader_gives_null_agreement_and_a_note(tmp_path):
    ratings = frame(TABLE, tmp_path)
    summary = analyze(ratings[ratings["reader_id"] == "A"], None, None, FAST).summary
    agreement = summary["agreement"]
    assert [
        agreement[k]
        for k in ("fleiss_kappa_call", "cohen_kappa_call", "krippendorff_alpha_realism", "icc2_realism")
    ] == [None] * 4
    assert any("one reader" in n for n in summary["notes"])
    assert summary["per_reader"]["A"]["accuracy"] == 0.75
    json.dumps(summary, allow_nan=False)


def test_cases_not_rated_by_every_reader(tmp_path):
    lines = TABLE.splitlines()
    kept = [line for line in lines if not line.startswith(("B,s3,", "C,r2,"))]
    ratings = frame("\n".join(kept) + "\n", tmp_path)
    summary = analyze(ratings, None, None, FAST).summary
    assert summary["agreement"]["n_complete_cases"] == 6
    assert any("2 case(s) were not rated by every reader" in n for n in summary["notes"])
    firsts = ratings[ratings["repeat"] == 0]
    calls = firsts.pivot(index="case_id", columns="reader_id", values="called_synthetic").dropna().to_numpy()
    assert summary["agreement"]["fleiss_kappa_call"] == pytest.approx(fleiss_textbook(calls))
    # detection figures still use every first showing
    assert summary["pooled"]["n"] == 22


def test_constant_ratings_are_null_with_notes_not_a_crash(tmp_path, capsys):
    rows = ["reader_id,case_id,is_synthetic,called_synthetic,confidence,realism,repeat"]
    rows += [
        f"{r},{c},{int(c.startswith('s'))},1,3,3,0" for r in ("A", "B") for c in ("s1", "s2", "r1", "r2")
    ]
    ratings = write(tmp_path, "const.csv", "\n".join(rows) + "\n")
    per_image = write(tmp_path, "pi.csv", "case_id,m\ns1,1.0\ns2,2.0\n")
    out = tmp_path / "out"
    code, err, _ = run(capsys, f"ratings={ratings}", f"per_image={per_image}", f"out_dir={out}", *CLI_FAST)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    agreement = summary["agreement"]
    assert agreement["fleiss_kappa_call"] is None and agreement["cohen_kappa_call"] is None
    assert agreement["krippendorff_alpha_realism"] is None and agreement["icc2_realism"] is None
    assert summary["pooled"]["sensitivity"] == 1.0 and summary["pooled"]["specificity"] == 0.0
    assert summary["metric_correlation"]["m"]["spearman_rho"] is None
    assert summary["metric_correlation"]["m"]["n"] == 2
    assert any("same call" in n for n in summary["notes"])
    assert any("same value" in n for n in summary["notes"])
    assert (out / "report.html").is_file()


def test_nan_in_metric_columns_is_dropped_pairwise(tmp_path):
    ratings = frame(TABLE, tmp_path)
    per_image = pd.DataFrame(
        {"a": [1.0, np.nan, 3.0, 4.0], "b": [np.inf, 2.0, 1.0, 0.5]},
        index=pd.Index(["s1", "s2", "s3", "s4"], name="case_id"),
    )
    summary = analyze(ratings, per_image.replace([np.inf], np.nan), None, FAST).summary
    assert summary["metric_correlation"]["a"]["n"] == 3
    assert summary["metric_correlation"]["b"]["n"] == 3
    assert any("metric 'a': 1 case(s) with a missing value dropped (n=3)" in n for n in summary["notes"])


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t.replace(",realism,", ",rating,"), "missing column(s): realism"),
        (
            lambda t: t.replace("A,s2,1,1,3,3,0", "A,s2,1,1,3,,0"),
            "column 'realism' has an empty/NaN value at line 3",
        ),
        (
            lambda t: t.replace("A,s2,1,1,3,3,0", "A,s2,1,1,3,7,0"),
            "column 'realism' must be an integer from 1 to 5",
        ),
        (lambda t: t.replace("A,s2,1,1,3,3,0", "A,s2,1,2,3,3,0"), "column 'called_synthetic' must be 0 or 1"),
        (
            lambda t: t.replace("A,s2,1,1,3,3,0", "A,s2,0,1,3,3,0"),
            "case 's2' is marked both real and synthetic",
        ),
        (lambda t: t + "A,s1,1,1,4,2,1\n", "reader 'A' rated case 's1' twice with repeat=1"),
        (lambda t: t.splitlines()[0] + "\n", "has a header but no ratings"),
        (lambda t: "", "file is empty"),
    ],
)
def test_bad_ratings_give_one_line_and_write_nothing(tmp_path, capsys, mutate, expected):
    ratings = write(tmp_path, "ratings.csv", mutate(TABLE))
    out = tmp_path / "out"
    code, err, _ = run(capsys, f"ratings={ratings}", f"out_dir={out}", *CLI_FAST)
    assert code == 2
    assert len(err) == 1 and str(ratings) in err[0] and expected in err[0], err
    assert not (out / "summary.json").exists() and not (out / "report.html").exists()


def test_bad_keys_and_files(tmp_path, capsys):
    ratings = write(tmp_path, "ratings.csv", TABLE)
    code, err, _ = run(capsys, f"out_dir={tmp_path / 'o'}")
    assert code == 2 and len(err) == 1 and "ratings" in err[0]
    code, err, _ = run(capsys, f"ratings={tmp_path / 'nope.csv'}", f"out_dir={tmp_path / 'o'}")
    assert code == 2 and len(err) == 1 and "nope.csv: file not found" in err[0]
    bad_pi = write(tmp_path, "pi.csv", "id,m\ns1,1\n")
    code, err, _ = run(capsys, f"ratings={ratings}", f"per_image={bad_pi}", f"out_dir={tmp_path / 'o'}")
    assert code == 2 and len(err) == 1 and "missing column(s): case_id" in err[0]
    code, err, _ = run(capsys, f"ratings={ratings}", "alpha=2", f"out_dir={tmp_path / 'o'}")
    assert code == 2 and len(err) == 1 and err[0].startswith("medsynth analyze: error: alpha: ") and "2.0" in err[0]
    assert not (tmp_path / "o").exists()


def test_keeps_a_finished_output_when_a_rerun_fails(tmp_path, capsys):
    ratings = write(tmp_path, "ratings.csv", TABLE)
    out = tmp_path / "out"
    assert run(capsys, f"ratings={ratings}", f"out_dir={out}", *CLI_FAST)[0] == 0
    before = (out / "summary.json").read_text()
    broken = write(tmp_path, "broken.csv", TABLE.replace(",realism,", ",real,"))
    assert run(capsys, f"ratings={broken}", f"out_dir={out}", *CLI_FAST)[0] == 2
    assert (out / "summary.json").read_text() == before
    assert not list(out.glob(".tmp-*"))


def test_help_shows_both_forms_and_defaults(capsys):
    assert cli.main(["analyze", "--help"]) == 0
    out = capsys.readouterr().out
    assert "medsynth analyze ratings=CSV per_image=CSV" in out and "medsynth analyze simulate" in out
    assert "n_resamples: 2000" in out and "skill: 0.7" in out
    assert cli.main(["analyze", "simulate", "--help"]) == 0


MRMC_KEYS = {
    "method", "fom", "auc", "auc_ci", "f", "df1", "df2", "p", "covariance", "per_reader_auc", "dbm", "equivalence"
}


def test_mrmc_block_has_the_design_keys(tmp_path):
    summary = analyze(frame(TABLE, tmp_path), None, None, FAST).summary
    m = summary["mrmc"]
    assert MRMC_KEYS <= set(m) and set(m["dbm"]) == {"f", "df1", "df2", "p"}
    assert set(m["equivalence"]) == {"margin", "p", "equivalent"}
    assert m["method"] == "OR-H" and m["fom"] == "auc" and m["covariance"] == "DeLong"
    assert m["auc"] == pytest.approx(np.mean(list(m["per_reader_auc"].values())))
    assert m["equivalence"]["equivalent"] is False and m["equivalence"]["margin"] == 0.05
    json.dumps(summary, allow_nan=False)


def test_mrmc_with_one_reader_is_a_fixed_reader_result_with_a_note(tmp_path):
    ratings = frame(TABLE, tmp_path)
    summary = analyze(ratings[ratings["reader_id"] == "A"], None, None, FAST).summary
    m = summary["mrmc"]
    assert m["method"] == "fixed readers" and m["readers_random"] is False
    assert m["auc"] == pytest.approx(summary["per_reader"]["A"]["auc"])
    assert m["df2"] is None and m["p"] is not None  # z test: infinite df
    assert m["dbm"]["f"] is None
    assert any("one reader: readers cannot be treated as random" in n for n in summary["notes"])


def test_mrmc_with_one_case_class_keeps_accuracy_and_says_why_auc_is_null(tmp_path):
    ratings = frame(TABLE, tmp_path)
    summary = analyze(ratings[ratings["is_synthetic"] == 1], None, None, FAST).summary
    m = summary["mrmc"]
    assert m["auc"] is None and m["p"] is None and m["equivalence"]["equivalent"] is False
    assert m["accuracy"]["accuracy"] == pytest.approx(summary["pooled"]["accuracy"])
    assert any("fewer than 2 real cases rated by every reader" in n for n in summary["notes"])
    assert any("the MRMC AUC is undefined" in line for line in summary["plain_language"])


def test_missing_confidence_column_gives_accuracy_and_null_aucs(tmp_path, capsys):
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != 4) for line in TABLE.splitlines()]
    path = write(tmp_path, "noconf.csv", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    code, err, stdout = run(capsys, f"ratings={path}", f"out_dir={out}", *CLI_FAST)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pooled"]["auc"] is None and summary["mrmc"]["auc"] is None
    assert summary["mrmc"]["accuracy"]["p"] is not None
    assert any("no confidence" in n for n in summary["notes"])
    assert "confidence is missing" in stdout


def test_split_plot_design_is_refused_with_one_note(tmp_path):
    rows = ["reader_id,case_id,is_synthetic,called_synthetic,confidence,realism,repeat"]
    for reader, offset in (("A", 0), ("B", 10)):
        rows += [f"{reader},c{offset + k},{k % 2},{k % 2},3,3,0" for k in range(6)]
    summary = analyze(frame("\n".join(rows) + "\n", tmp_path), None, None, FAST).summary
    assert summary["mrmc"]["auc"] is None and summary["mrmc"]["accuracy"] is None
    assert any("split-plot" in n for n in summary["notes"])


def test_bad_mrmc_settings_are_one_line(tmp_path, capsys):
    ratings = write(tmp_path, "ratings.csv", TABLE)
    code, err, _ = run(capsys, f"ratings={ratings}", f"out_dir={tmp_path / 'o'}", "mrmc.covariance=bootstrap")
    assert code == 2 and len(err) == 1 and "mrmc.covariance" in err[0]
    code, err, _ = run(capsys, f"ratings={ratings}", f"out_dir={tmp_path / 'o'}", "mrmc.equivalence_margin=0.7")
    assert code == 2 and "mrmc.equivalence_margin" in err[0]
    assert not (tmp_path / "o").exists()
