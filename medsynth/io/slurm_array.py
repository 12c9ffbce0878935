"""A stage as a SLURM job array: task ``t`` of ``T`` takes items ``t, t+T, t+2T, ...``.

Used by ``medsynth sample`` (volumes) and ``medsynth evaluate`` (radiomics features). Each task
writes its own files atomically and one record ``out_dir/.array/<stage>_task_TTTTT_of_NNNNN.json``
(atomic) naming what it finished. The finishing step (``array.finish=true``, after every task, e.g.
``sbatch --dependency=afterok:JOB``) checks that every task's record is there, then writes the
stage's outputs (manifest, metrics) exactly as one process would.

A task whose files the finishing step cannot see (a node-local ``out_dir``, or a task that failed)
is named in one line, and nothing is written. SLURM itself schedules the tasks: this module only
splits the work and checks the results (docs/cluster.md).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medsynth.errors import ConfigError
from medsynth.io.atomic import atomic_write_text

ARRAY_DIR = ".array"


@dataclass(frozen=True)
class ArrayRole:
    """What this process does in an array run: ``task`` of ``tasks``, or the finishing step."""

    tasks: int
    task: int | None = None  # None: the finishing step

    @property
    def finishing(self) -> bool:
        return self.task is None


def array_role(cfg: DictConfig) -> ArrayRole | None:
    """``array.task`` / ``array.tasks`` / ``array.finish`` from the config (None: not an array run).

    ``array.task=auto`` and ``array.tasks=auto`` read SLURM's ``SLURM_ARRAY_TASK_ID`` and
    ``SLURM_ARRAY_TASK_COUNT`` (an array submitted with ``--array=0-(N-1)``).
    """
    import os

    node = OmegaConf.select(cfg, "array", default=None)
    if node is None:
        return None
    task, tasks, finish = node.get("task"), node.get("tasks"), bool(node.get("finish", False))
    if task is None and not finish:
        return None
    env = {"task": "SLURM_ARRAY_TASK_ID", "tasks": "SLURM_ARRAY_TASK_COUNT"}
    values: dict[str, int] = {}
    for key, value in (("task", task), ("tasks", tasks)):
        if key == "task" and finish:
            continue
        if value == "auto":
            value = os.environ.get(env[key])
            if value is None:
                raise ConfigError(f"array.{key}", f"is auto but {env[key]} is not set (not a SLURM array task)")
        try:
            values[key] = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"array.{key}", f"must be an integer or auto, got {value!r}") from None
    if values["tasks"] < 1:
        raise ConfigError("array.tasks", f"must be >= 1, got {values['tasks']}")
    if finish and task is not None:
        raise ConfigError("array.finish", "is the step after the tasks: leave array.task unset (null)")
    if not finish and not 0 <= values["task"] < values["tasks"]:
        raise ConfigError("array.task", f"must be in [0, {values['tasks']}), got {values['task']}")
    return ArrayRole(tasks=values["tasks"], task=None if finish else values["task"])


def shard(items: list[Any], role: ArrayRole) -> list[Any]:
    """The items of task ``role.task``: positions ``task, task + tasks, ...`` (by index, not by load)."""
    assert role.task is not None
    return items[role.task :: role.tasks]


def record_path(out_dir: Path, stage: str, task: int, tasks: int) -> Path:
    return out_dir / ARRAY_DIR / f"{stage}_task_{task:05d}_of_{tasks:05d}.json"


def write_task_record(out_dir: Path, stage: str, role: ArrayRole, done: list[str], **extra: Any) -> Path:
    """Record (atomically) that task ``role.task`` finished ``done`` (file names), from which host."""
    assert role.task is not None
    record = {
        "stage": stage,
        "task": role.task,
        "tasks": role.tasks,
        "done": list(done),
        "host": socket.gethostname(),
        "out_dir": str(out_dir.resolve()),
        **extra,
    }
    return atomic_write_text(record_path(out_dir, stage, role.task, role.tasks), json.dumps(record, indent=1))


def check_task_records(out_dir: Path, stage: str, role: ArrayRole, expected: list[str]) -> list[dict]:
    """The finishing step's check: every task left its record and together they cover ``expected``.

    Raises ConfigError naming the missing tasks (out_dir not shared by the nodes, or tasks that failed).
    """
    records, missing = [], []
    for task in range(role.tasks):
        path = record_path(out_dir, stage, task, role.tasks)
        if path.is_file():
            records.append(json.loads(path.read_text()))
        else:
            missing.append(task)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        hosts = sorted({r["host"] for r in records})
        raise ConfigError(
            "out_dir",
            f"{out_dir}: no results from array task(s) {shown} of {role.tasks} "
            f"(seen from {socket.gethostname()}; tasks that finished ran on {', '.join(hosts) or 'no host'}): "
            "out_dir must be on a filesystem every node shares, and every task must have finished",
        )
    done = {name for r in records for name in r["done"]}
    lost = [name for name in expected if name not in done]
    if lost:
        raise ConfigError("out_dir", f"{out_dir}: {len(lost)} file(s) no task finished, e.g. {lost[0]}")
    return records
