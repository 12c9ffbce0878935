"""Training previews: every N steps, sample a few volumes from the EMA weights with a fast sampler
and write a PNG of their mid-slices (rank 0 alone).

It lives in ``sampling`` (not ``models``) because it calls the sampler: ``sampling`` imports
``models``, never the reverse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback

from medsynth.io.atomic import atomic_path
from medsynth.sampling.generate import generate_volumes


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
        bundle = pl_module.sampling_bundle(use_ema=True)
        if bundle.geometry.mask_conditioned:  # it needs the user's label maps: `medsynth sample masks_dir=`
            return None
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
