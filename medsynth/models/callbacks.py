"""Training callbacks Lightning does not have: preview PNGs of EMA samples, ``last.ckpt`` at the end
whatever ``max_steps`` is, a progress bar naming the step budget, SLURM requeue between steps.

Checkpoint on SIGTERM and throughput are Lightning's own (``ModelCheckpoint(save_on_exception=True)``,
``ThroughputMonitor`` in conf/callbacks/default.yaml). Rank 0 alone writes previews.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback, RichProgressBar

from medsynth.io.atomic import atomic_path


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal mid-slices of a (D, H, W) = (x, y, z) RAS volume, oriented for display.

    Axial: z = mid (x right, y anterior up); coronal: y = mid; sagittal: x = mid.
    """
    x, y, z = (s // 2 for s in volume.shape)
    axial = volume[:, :, z].T[::-1]
    coronal = volume[:, y, :].T[::-1]
    sagittal = volume[x, :, :].T[::-1]
    return [axial, coronal, sagittal]


def write_preview_png(volumes: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A grid PNG: one row per volume (N, D, H, W) in [-1, 1], columns axial / coronal / sagittal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = volumes.shape[0]
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for i in range(rows):
        for j, (image, name) in enumerate(
            zip(mid_slices(volumes[i]), ("axial", "coronal", "sagittal"), strict=True)
        ):
            ax = axes[i][j]
            ax.imshow(image, cmap="gray", vmin=-1.0, vmax=1.0, interpolation="nearest")
            ax.set_axis_off()
            if i == 0:
                ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


class PreviewCallback(Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of training, sample a few volumes from
    the EMA weights with a fast sampler and write ``<run dir>/previews/step_XXXXXXX.png`` (rank 0).

    The image also goes to the logger when it can show images (TensorBoard).
    """

    def __init__(
        self,
        out_dir: str | Path,
        every_n_steps: int = 200,
        num_samples: int = 2,
        sampler: str = "ddim",
        steps: int = 25,
        seed: int = 0,
    ):
        self.out_dir = Path(out_dir)
        self.every_n_steps = int(every_n_steps)
        self.num_samples = int(num_samples)
        self.sampler = sampler
        self.steps = int(steps)
        self.seed = int(seed)
        self.written: list[Path] = []
        self._last_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if self.every_n_steps > 0 and step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.preview(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.num_samples > 0 and trainer.global_step != self._last_step:
            self.preview(trainer, pl_module)

    def preview(self, trainer: pl.Trainer, pl_module: Any) -> Path | None:
        self._last_step = trainer.global_step
        if not trainer.is_global_zero or self.num_samples <= 0:
            return None
        from medsynth.sampling.generate import generate_volumes

        bundle = pl_module.sampling_bundle(use_ema=True)
        labels = None
        if bundle.conditioning.num_classes > 0:
            labels = [i % bundle.conditioning.num_classes for i in range(self.num_samples)]
        covariates = None
        if bundle.conditioning.covariate_keys:
            mean = bundle.network.covariate_mean.detach().cpu().numpy()
            covariates = np.tile(mean, (self.num_samples, 1)).astype(np.float32)
        was_training = pl_module.training
        volumes = generate_volumes(
            bundle,
            seeds=[self.seed + i for i in range(self.num_samples)],
            sampler=self.sampler,
            steps=self.steps,
            class_labels=labels,
            covariates=covariates,
            batch_size=self.num_samples,
            device=pl_module.device,
            precision="auto",
        )
        pl_module.train(was_training)
        array = volumes[:, 0].float().numpy()
        step = trainer.global_step
        path = write_preview_png(
            array, self.out_dir / f"step_{step:07d}.png", title=f"EMA samples, step {step}"
        )
        self.written.append(path)
        self._log_image(trainer, path, step)
        return path

    @staticmethod
    def _log_image(trainer: pl.Trainer, path: Path, step: int) -> None:
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                import matplotlib.image as mpimg

                image = mpimg.imread(path)[..., :3]
                experiment.add_image("preview", image, global_step=step, dataformats="HWC")


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
