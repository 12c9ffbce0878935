"""The utility section of the analysis report: ``medsynth analyze ... utility=PATH`` (a utility.json).

Reads the ``medsynth utility`` result (schema 1, see medsynth/utility/run.py), keeps what the
report shows (``summary.json`` key ``utility``: task, score, n_test, results, gains) and renders
it as one HTML section beside the experts and the metrics: a table of the score per arm and
number of real subjects with its interval, the paired gains, and the learning-curve figure.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from medsynth.errors import ConfigError, InputFileError

SUPPORTED_SCHEMA = 1
KEPT = ("task", "score", "better", "n_test", "seeds", "results", "gains")


def load_utility(path: str | Path) -> dict:
    """The report's view of a utility.json; one-line errors naming the file."""
    file = Path(str(path)).expanduser()
    if file.is_dir():
        file = file / "utility.json"
    if not file.is_file():
        raise ConfigError("utility", f"{file} does not exist (the utility.json written by medsynth utility)")
    try:
        content = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(file, f"not a readable JSON file ({err})") from None
    if not isinstance(content, dict) or content.get("schema") != SUPPORTED_SCHEMA:
        raise InputFileError(file, f"not a medsynth utility.json of schema {SUPPORTED_SCHEMA}")
    missing = [k for k in KEPT if k not in content]
    if missing:
        raise InputFileError(file, f"missing key(s) {', '.join(missing)}")
    return {k: content[k] for k in KEPT} | {"source": str(file)}


def _fmt(value: object, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def _interval(ci: list) -> str:
    return "n/a" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _figure_png(utility: dict, dpi: int) -> str:
    from medsynth.utility.figure import learning_curve

    buffer = io.BytesIO()
    learning_curve({**utility, "settings": {}}, buffer, dpi=dpi)
    return base64.b64encode(buffer.getvalue()).decode()


def utility_section(utility: dict, dpi: int = 110) -> str:
    """HTML of the utility section (table, gains, embedded learning-curve figure)."""
    score = html.escape(str(utility["score"]))
    rows = "".join(
        f"<tr><td>{html.escape(r['arm'])}</td><td>{r['n_real']}</td><td>{r['n_synthetic']}</td>"
        f"<td>{_fmt(r['score'])}</td><td>{_interval(r['ci'])}</td><td>{_fmt(r.get('seed_sd'))}</td></tr>"
        for r in utility["results"]
    )
    gains = "".join(
        f"<tr><td>{html.escape(g['comparison'])}</td><td>{g['n_real']}</td><td>{g['gain']:+.3f}</td>"
        f"<td>{_interval(g['ci'])}</td><td>{_fmt(g.get('p_gain_positive'), 2)}</td></tr>"
        for g in utility["gains"]
    )
    image = _figure_png(utility, dpi)
    return (
        "<h2>Utility: does synthetic data help a downstream model?</h2>"
        f"<p>Downstream {html.escape(str(utility['task']))} trained on real only, synthetic only and real + "
        f"synthetic, scored ({score}, higher is better) on {utility['n_test']} held-out real subjects over "
        f"{len(utility['seeds'])} seed(s); intervals resample test subjects. Source: "
        f"{html.escape(utility['source'])}.</p>"
        f"<table><tr><th>arm</th><th>real subjects</th><th>synthetic</th><th>{score}</th><th>95% CI</th>"
        f"<th>seed sd</th></tr>{rows}</table>"
        "<table><tr><th>gain</th><th>real subjects</th><th>gain</th><th>paired 95% CI</th><th>P(gain&gt;0)</th></tr>"
        f"{gains}</table>"
        f'<figure><img alt="learning curve" src="data:image/png;base64,{image}">'
        "<figcaption>Score against real training subjects per arm, with bootstrap intervals.</figcaption></figure>"
    )
