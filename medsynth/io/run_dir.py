"""Run folders: which checkpoint of a run to sample from, and (failures leave nothing) removing the
folder of a run that failed before saving a checkpoint.

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
CHECKPOINT_DIR = "checkpoints"
#: the weights at the end of training (or at the latest periodic save)
LAST_CHECKPOINT = "last.ckpt"
#: the weights whose samples scored best during training (medsynth.sampling.quality_checkpoint)
BEST_QUALITY_CHECKPOINT = "best_quality.ckpt"


def checkpoint_of_run(run_dir: str | Path) -> tuple[Path, str] | None:
    """The checkpoint to sample from in a run folder (or its ``checkpoints/`` folder) and why:
    ``best_quality.ckpt`` when training wrote one, else ``last.ckpt``; None when it has neither."""
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR if (run_dir / CHECKPOINT_DIR).is_dir() else run_dir
    best, last = folder / BEST_QUALITY_CHECKPOINT, folder / LAST_CHECKPOINT
    if best.is_file():
        return best, "the best-scoring weights of training (callbacks.quality)"
    if last.is_file():
        return last, f"no {BEST_QUALITY_CHECKPOINT} (quality scoring off, or the run stopped before its first score)"
    return None


def holds_checkpoint(run_dir: Path) -> bool:
    """True if ``run_dir/checkpoints`` holds a checkpoint file."""
    folder = Path(run_dir) / CHECKPOINT_DIR
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
