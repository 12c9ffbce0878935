"""Training callbacks Lightning does not have: ``last.ckpt`` at the end whatever ``max_steps`` is, a
progress bar naming the step budget, SLURM requeue between steps (previews: medsynth.sampling.preview).

Checkpoint on SIGTERM and throughput are Lightning's own (``ModelCheckpoint(save_on_exception=True)``,
``ThroughputMonitor`` in conf/callbacks/default.yaml).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, RichProgressBar


class RequeueBetweenSteps(Callback):
    """Lightning's SLURM auto-requeue, handled at the end of a training batch instead of mid-step.

    Under SLURM (tasks started with srun), Lightning's SIGUSR1 handler (``--signal=USR1@90``,
    preemption) saves ``<run dir>/hpc_ckpt_N.ckpt`` and runs ``scontrol requeue``; the requeued job
    resumes from that file. The handler runs wherever Python is when the signal lands: mid-step it saves
    loop counters and weights that disagree, and the resumed run repeats a batch (seen in
    tests/test_slurm_preempt.py). This callback keeps Lightning's handler and calls it after the
    current batch, on every rank at the same step (one any-rank flag per step under DDP).
    """

    def __init__(self) -> None:
        self._handler: Any = None
        self._signum: int | None = None
        self._requeue_signal: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        environment = getattr(trainer.strategy, "cluster_environment", None)  # parallel strategies
        if environment is None and SLURMEnvironment.detect():  # one device: Lightning's default environment
            environment = SLURMEnvironment()
        if not isinstance(environment, SLURMEnvironment) or not environment.auto_requeue:
            return
        if threading.current_thread() is not threading.main_thread():
            return
        signum = environment.requeue_signal
        handler = signal.getsignal(signum)  # Lightning's, installed before on_train_start
        if callable(handler):
            self._handler, self._requeue_signal = handler, signum
            signal.signal(signum, self._defer)

    def _defer(self, signum: int, frame: Any) -> None:
        self._signum = signum

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._handler is None:
            return
        if trainer.strategy.reduce_boolean_decision(self._signum is not None, all=False):
            signum = self._signum or self._requeue_signal
            self._signum = None
            self._handler(signum, None)


class LastCheckpointAtEnd(Callback):
    """Write ``last.ckpt`` when training finishes, whatever ``max_steps`` is.

    ``ModelCheckpoint(every_n_train_steps=N)`` only saves on multiples of N, so a run of 1200 steps
    with N=500 would leave ``last.ckpt`` at step 1000 and sampling would use stale weights.
    """

    def __init__(self, checkpoint_path: str | Path):
        self.checkpoint_path = Path(checkpoint_path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.checkpoint_path)


class StepBudgetProgressBar(RichProgressBar):
    """Rich progress bar that names the step budget: medsynth trains for ``max_steps`` with
    ``max_epochs=-1``, which Lightning's bar would print as "Epoch 3/-2"."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch} · step {self.trainer.global_step}/{self.trainer.max_steps}"
        return super()._get_train_description(current_epoch)


def batch_volumes(batch: dict[str, Any]) -> int:
    """Volumes in a training batch (``batch["image"]``: (B, C, D, H, W)), for Lightning's ``ThroughputMonitor``."""
    return int(batch["image"].shape[0])
