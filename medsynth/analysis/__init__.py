"""Reader-study analysis: reader statistics, agreement, realism, metric correlation, report.

``medsynth analyze ratings=CSV per_image=CSV out_dir=DIR`` writes ``summary.json`` (DESIGN.md)
and a self-contained ``report.html``. ``medsynth analyze simulate ...`` makes ratings with known
reader skill for demos and tests (:mod:`medsynth.analysis.simulation`).
"""
