"""Failures leave nothing: remove the run folder of a run that failed before saving a checkpoint.

Hydra creates the run folder (``.hydra/``, ``<job>.log``) before the task starts, and the loggers
add their files before the first step; a run that then fails (a NaN voxel, a volume of another
shape) would leave a folder that looks like a run but holds no model. :func:`remove_unfinished_run`
removes it, and only it: a folder holding a checkpoint, or any file that a run does not write
(``hydra.run.dir`` pointed at a folder of the user's), is left untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: what a training run writes into its folder (Hydra, medsynth.train, Lightning loggers)
RUN_ARTEFACTS = frozenset(
    {".hydra", "config_resolved.yaml", "checkpoints", "previews", "csv", "tensorboard", "mlruns", "lightning_logs"}
)
#: a finished or resumable run has one of these under checkpoints/
CHECKPOINT_PATTERN = "*.ckpt"


def holds_checkpoint(run_dir: Path) -> bool:
    """True if ``run_dir/checkpoints`` holds a checkpoint file."""
    folder = Path(run_dir) / "checkpoints"
    return folder.is_dir() and any(folder.glob(CHECKPOINT_PATTERN))


def remove_unfinished_run(run_dir: str | Path) -> bool:
    """Remove ``run_dir`` if it holds only run artefacts and no checkpoint; return True if removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or holds_checkpoint(run_dir):
        return False
    entries = list(run_dir.iterdir())
    if any(p.name not in RUN_ARTEFACTS and not (p.is_file() and p.suffix == ".log") for p in entries):
        return False  # something the run did not write: not ours to delete
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        return False
    return True
