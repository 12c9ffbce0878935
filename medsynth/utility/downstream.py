"""The downstream model of ``medsynth utility``: a MONAI network trained with Lightning, scored on real subjects.

One run = one :class:`~medsynth.utility.splits.RunPlan`: the network and loss come from the task
config (``task.net``, ``task.loss``, built by ``hydra.utils.instantiate``), training draws
``max_steps x batch_size`` volumes with replacement from the run's training set (so every arm gets
the same number of updates whatever its size), with random left-right flips; then the network
scores every held-out test subject:

| task | per test subject | set-level score |
|---|---|---|
| segmentation | Dice per foreground class (MONAI ``compute_dice``, classes absent from truth and prediction skipped), their mean; HD95 in mm (MONAI ``compute_hausdorff_distance``) | mean Dice |
| classification | probability of each class (softmax) | ROC AUC of class 1 (scikit-learn; one-vs-rest mean for K > 2) |
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from medsynth.models.cpu_threads import apply_num_threads
from medsynth.quiet import LIBRARY_WARNINGS
from medsynth.utility.labelled_sets import LabelledSet


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Many short fits: keep Lightning's per-fit banner lines (devices, tips, max_steps reached) off the console."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (*LIBRARY_WARNINGS, r".*does not have many workers"):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class DownstreamModule(pl.LightningModule):
    """Segmentation or classification network with its loss; AdamW.

    Batches: ``(image (B, 1, X, Y, Z) float32, target)`` with target (B, 1, X, Y, Z) long label maps
    (segmentation) or (B,) long classes (classification).
    """

    def __init__(self, task_cfg, lr: float, weight_decay: float, flip_prob: float):
        super().__init__()
        self.task = str(task_cfg.name)
        self.net = instantiate(task_cfg.net)
        self.loss = instantiate(task_cfg.loss)
        self.lr, self.weight_decay, self.flip_prob = float(lr), float(weight_decay), float(flip_prob)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def _flip(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-right (X) flip of a random subset of the batch, image and label map together."""
        flip = torch.rand(image.shape[0], device=image.device) < self.flip_prob
        if not bool(flip.any()):
            return image, target
        image = torch.where(flip.view(-1, 1, 1, 1, 1), image.flip(2), image)
        if self.task == "segmentation":
            target = torch.where(flip.view(-1, 1, 1, 1, 1), target.flip(2), target)
        return image, target

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        image, target = self._flip(*batch)
        loss = self.loss(self(image), target)
        self.log("train/loss", loss, prog_bar=False, batch_size=image.shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


@dataclass
class RunScores:
    """Scores of one run on the test subjects (in the test set's order).

    Attributes:
        score: (N,) segmentation: mean foreground Dice per subject; classification: P(class 1).
        extra: named (N,) or (N, K) arrays (``hd95``, ``dice_<class>``; ``probabilities``).
    """

    score: np.ndarray
    extra: dict[str, np.ndarray]


def _training_tensors(train: list[LabelledSet], task: str) -> TensorDataset:
    images = torch.from_numpy(np.concatenate([s.images for s in train]))
    targets = torch.from_numpy(np.concatenate([s.targets for s in train]).astype(np.int64))
    if task == "segmentation":
        targets = targets[:, None]
    return TensorDataset(images, targets)


def set_cpu_threads(cfg) -> None:
    """Apply ``train.num_threads`` for CPU runs, once for all runs of a utility call (``auto`` samples
    the machine's load for 0.5 s: :mod:`medsynth.models.cpu_threads`)."""
    t = cfg.train
    if str(t.accelerator) == "cpu" or not torch.cuda.is_available():
        apply_num_threads(t.num_threads, "cpu")


def train_and_score(cfg, train: list[LabelledSet], test: LabelledSet, seed: int) -> RunScores:
    """Train one network on the union of ``train`` and score it on ``test``.

    Args:
        cfg: the utility config (``task``, ``train``).
        train: the run's training volumes (real and/or synthetic subsets).
        test: held-out real subjects.
        seed: seeds weights, sampling order and flips.
    """
    t = cfg.train
    pl.seed_everything(seed, workers=True, verbose=False)
    dataset = _training_tensors(train, str(cfg.task.name))
    sampler = RandomSampler(
        dataset,
        replacement=True,
        num_samples=int(t.max_steps) * int(t.batch_size),
        generator=torch.Generator().manual_seed(seed),
    )
    loader = DataLoader(dataset, batch_size=int(t.batch_size), sampler=sampler, drop_last=False)
    module = DownstreamModule(cfg.task, t.lr, t.weight_decay, t.flip_prob)
    trainer = pl.Trainer(
        max_steps=int(t.max_steps),
        max_epochs=1,
        accelerator=str(t.accelerator),
        devices=1,
        precision=t.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with quiet_lightning():
        trainer.fit(module, train_dataloaders=loader)
    return score_test_set(module, test, int(cfg.task.num_classes), int(t.batch_size))


@torch.no_grad()
def _predict(module: DownstreamModule, images: np.ndarray, batch_size: int) -> np.ndarray:
    module.eval()
    device = next(module.parameters()).device
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).to(device)
        outputs.append(module(batch).float().cpu())
    return torch.cat(outputs).numpy()


def score_test_set(module: DownstreamModule, test: LabelledSet, num_classes: int, batch_size: int) -> RunScores:
    """Per-subject scores of a trained module on the held-out set (see the module docstring)."""
    logits = _predict(module, test.images, batch_size)
    if module.task == "classification":
        probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        return RunScores(score=probabilities[:, 1], extra={"probabilities": probabilities})
    return segmentation_scores(logits.argmax(axis=1), test.targets, num_classes, test.spacing)


def segmentation_scores(
    prediction: np.ndarray, truth: np.ndarray, num_classes: int, spacing: tuple[float, float, float]
) -> RunScores:
    """Dice and HD95 per subject of label maps ``prediction`` and ``truth`` (N, X, Y, Z) in 0..K-1.

    A class absent from both truth and prediction is skipped (NaN) for that subject; mean Dice
    and HD95 average the classes present. HD95 is in mm (``spacing``); a class present in only one
    of the two maps has no finite distance and is left out of the HD95 mean (its Dice is 0).
    """
    from monai.metrics import compute_dice, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    pred = one_hot(torch.from_numpy(prediction.astype(np.int64))[:, None], num_classes)
    true = one_hot(torch.from_numpy(truth.astype(np.int64))[:, None], num_classes)
    dice = compute_dice(pred, true, include_background=False, ignore_empty=False).numpy()
    present = (pred[:, 1:].flatten(2).any(-1) | true[:, 1:].flatten(2).any(-1)).numpy()
    dice = np.where(present, dice, np.nan)
    both = (pred[:, 1:].flatten(2).any(-1) & true[:, 1:].flatten(2).any(-1)).numpy()
    with warnings.catch_warnings():  # a class missing from one map: NaN/inf by design, masked below
        warnings.filterwarnings("ignore", message=".*(is all 0|always_return_as_numpy).*")
        hd = compute_hausdorff_distance(pred, true, include_background=False, percentile=95, spacing=list(spacing))
    hd = np.where(both, hd.numpy(), np.nan)
    extra = {f"dice_{k}": dice[:, k - 1] for k in range(1, num_classes)}
    with np.errstate(all="ignore"):
        extra["hd95"] = _nanmean_rows(hd)
    return RunScores(score=_nanmean_rows(dice), extra=extra)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN for an all-NaN row (without numpy's warning)."""
    count = np.sum(~np.isnan(values), axis=1)
    total = np.nansum(values, axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
