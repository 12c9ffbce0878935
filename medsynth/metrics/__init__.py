"""Realism metrics for synthetic 3D volumes: set-level (FRD, MMD, KID, PRDC, MS-SSIM diversity,
optional 3D FID) and per image (feature distance, memorisation, slice consistency, histograms).

Entry point: ``medsynth evaluate`` (:mod:`medsynth.metrics.cli`), pipeline in
:mod:`medsynth.metrics.evaluation`.
"""
