"""`medsynth analyze plan`: power tables from a Roe-Metz structure (simulation) and from a pilot
ratings.csv (analytic), checked against each other and through the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medsynth import cli
from medsynth.analysis.plan import analytic_power, pilot_components, simulated_power
from medsynth.analysis.roe_metz import STRUCTURES, delta_for_auc, simulate_scores


def pilot_ratings(readers: int = 12, per_class: int = 100, auc: float = 0.65, seed: int = 0) -> pd.DataFrame:
    """A pilot study from the HL Roe-Metz model, scores binned to the ratings.csv call x confidence."""
    structure = STRUCTURES["HL"]
    rng = np.random.default_rng(seed)
    positive, negative = simulate_scores(structure, delta_for_auc(auc, structure), readers, per_class, per_class, 1, rng)
    scores = np.concatenate([positive[0], negative[0]], axis=1)
    return pd.DataFrame(
        [
            {
                "reader_id": f"r{r:02d}",
                "case_id": f"c{k:03d}",
                "is_synthetic": int(k < per_class),
                "called_synthetic": int(scores[r, k] > 0),
                "confidence": int(np.clip(1 + abs(scores[r, k]) * 2, 1, 5)),
                "realism": 3,
                "repeat": 0,
            }
            for r in range(readers)
            for k in range(2 * per_class)
        ]
    )


def test_analytic_power_from_a_pilot_matches_simulation_of_the_same_model():
    components = pilot_components(pilot_ratings())
    assert components.n_readers == 12 and components.n_cases == 200
    rng = np.random.default_rng(1)
    for readers, cases in ((4, 40), (4, 100)):
        analytic, _ = analytic_power(components, readers, cases, 0.65, 0.05, 0.05)
        simulated, _ = simulated_power(STRUCTURES["HL"], readers, cases, 0.65, 0.05, 0.05, 400, rng)
        assert analytic == pytest.approx(simulated, abs=0.1)
    # power grows with readers and cases, and is ~alpha when there is nothing to find
    grid = [analytic_power(components, r, c, 0.65, 0.05, 0.05)[0] for r, c in ((3, 40), (6, 40), (6, 200))]
    assert grid[0] < grid[1] < grid[2]
    assert analytic_power(components, 5, 100, 0.5001, 0.05, 0.05)[0] == pytest.approx(0.05, abs=0.01)
    # equivalence needs many cases: power rises with cases and is ~0 for a small study
    small, large = (analytic_power(components, 8, c, 0.65, 0.05, 0.05)[1] for c in (50, 4000))
    assert small < 0.05 < 0.5 < large


def test_plan_command_prints_power_tables(tmp_path, capsys):
    out = tmp_path / "plan.csv"
    code = cli.main(["analyze", "plan", "readers=[3,6]", "cases=[20,80]", "studies=100", f"out={out}"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Power to show that readers tell synthetic from real" in printed and "readers \\ cases" in printed
    table = pd.read_csv(out)
    assert list(table.columns) == ["readers", "cases", "power_detect", "power_equivalence"] and len(table) == 4
    assert table["power_detect"].between(0, 1).all()
    small = table.query("readers == 3 and cases == 20")["power_detect"].item()
    large = table.query("readers == 6 and cases == 80")["power_detect"].item()
    assert large > small


def test_plan_from_a_pilot_and_bad_keys(tmp_path, capsys):
    pilot = tmp_path / "pilot.csv"
    pilot_ratings(readers=4, per_class=20).to_csv(pilot, index=False)
    assert cli.main(["analyze", "plan", f"pilot={pilot}", "readers=[4]", "cases=[40,400]"]) == 0
    printed = capsys.readouterr().out
    assert "from the pilot" in printed and "analytic power" in printed
    for bad, key in (("structure=XX", "plan.structure"), ("readers=[1,4]", "plan.readers"), ("auc=0.4", "plan.auc")):
        assert cli.main(["analyze", "plan", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0]
    one_reader = tmp_path / "one.csv"
    pilot_ratings(readers=1, per_class=10).to_csv(one_reader, index=False)
    assert cli.main(["analyze", "plan", f"pilot={one_reader}"]) == 2
    assert "at least 2 readers" in capsys.readouterr().err
