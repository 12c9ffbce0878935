"""Reader-study analysis: reader statistics, agreement, realism, metric correlation, report.

``medsynth analyze ratings=CSV per_image=CSV out_dir=DIR`` writes ``summary.json`` (DESIGN.md)
and a self-contained ``report.html`` (MRMC: :mod:`medsynth.analysis.mrmc`). ``medsynth analyze
simulate ...`` makes ratings marked simulated with the study's reader simulator
(:mod:`medsynth.study.simulate`); ``medsynth analyze plan`` sizes a study.
"""
