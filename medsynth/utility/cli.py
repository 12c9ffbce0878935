"""``medsynth utility real_dir=DIR synthetic_dir=DIR out_dir=DIR [task=segmentation|classification] [key=value ...]``."""

from __future__ import annotations

from collections.abc import Sequence

DESCRIPTION = """medsynth utility: do synthetic scans help a downstream model?

usage: medsynth utility real_dir=DIR synthetic_dir=DIR out_dir=DIR [test_dir=DIR] [task=segmentation|classification] [key=value ...]

Trains the same downstream model (segmentation: MONAI UNet, Dice-CE; classification: MONAI DenseNet)
with Lightning on three arms: real only, synthetic only, real + synthetic; for each number of real
subjects in n_real and each seed; evaluates every run on held-out REAL subjects only (test_dir, or
test_fraction of real_dir, never trained on). Prints a table of Dice (or AUC) per arm and number of
real subjects with bootstrap intervals, and the gain of real+synthetic over real with a paired CI.
Writes out_dir/utility.json, out_dir/per_subject.csv and out_dir/figures/learning_curve.png.
real_dir/test_dir: `medsynth data prepare` folders (label maps in the manifest's `label` column);
synthetic_dir: a paired `medsynth sample` folder (label maps in `label_file`). See docs/utility.md.

defaults (conf/utility.yaml + conf/utility_task/<task>.yaml; override any key as key=value):
"""


def _task_shorthand(override: str) -> str:
    """``task=classification`` (the documented short form) selects the ``utility_task`` config group."""
    key, _, value = override.partition("=")
    if key == "task" and value and not value.startswith("{"):
        return f"utility_task@task={value}"
    return override


def main(argv: Sequence[str]) -> int:
    args = [_task_shorthand(a) for a in argv]
    if any(a in ("-h", "--help", "help") for a in args):
        from medsynth.config import format_defaults

        print(DESCRIPTION + format_defaults("utility"))
        return 0
    from medsynth.config import compose_stage
    from medsynth.utility.run import main_body

    return main_body(compose_stage("utility", args))
