"""``checkpoints/best_quality.ckpt``: the training step whose EMA samples looked most real.

Every ``every_n_steps`` optimizer steps (and at ``max_steps`` once the run is that long), rank 0
samples ``num_samples`` volumes from the EMA weights with a fast sampler and fixed seeds (the same
noise at every evaluation, so scores of different steps compare the weights, not the draw), scores
them against a fixed set of real volumes with :class:`~medsynth.sampling.quality.QualityScore`,
and broadcasts the score to every rank. It is logged as ``quality/<metric>`` (logger and progress
bar), and when it improves on the best so far (direction from the metric's declared ``better``),
the full training checkpoint is written to ``checkpoints/best_quality.ckpt`` (temp name + rename).

Why a callback of its own and not ``ModelCheckpoint(monitor=...)``: Lightning runs every
``ModelCheckpoint`` after the other callbacks, so ``last.ckpt`` of the same step would be written
before the monitor's best score was updated; a run resumed from it would forget that step's best
and could later overwrite ``best_quality.ckpt`` with a worse model. Here the best score and its step
are updated first and travel in every checkpoint (``state_dict``), so a resumed run keeps them.

Each checkpoint also carries ``checkpoint["quality"]`` (metric, direction, best score and step,
the last score and step, the scoring settings), which ``medsynth sample ckpt=RUN`` prints.

It lives in ``sampling`` (not ``models``) because it calls the sampler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from medsynth.errors import ConfigError, MedsynthError
from medsynth.io.atomic import TEMP_PREFIX
from medsynth.io.run_dir import BEST_QUALITY_CHECKPOINT
from medsynth.metrics.radiomics_features import RadiomicsSettings
from medsynth.models.bundle import DiffusionSettings
from medsynth.sampling.generate import iter_generate
from medsynth.sampling.plan import load_mask
from medsynth.sampling.quality import MIN_REFERENCE, QualityScore, metric_direction
from medsynth.sampling.samplers import build_sampler

log = logging.getLogger("medsynth.train")

REFERENCES = ("val", "train")


class QualityCheckpoint(Callback):
    """Score EMA samples every N steps; keep the best-scoring weights as ``best_quality.ckpt``.

    Args:
        dirpath: the run's checkpoint folder (``${run_dir}/checkpoints``).
        every_n_steps: optimizer steps between evaluations; 0 disables the callback. The last step
            (``trainer.max_steps``) is scored too when the run has at least this many steps.
        num_samples: volumes per evaluation (>= 3), seeds ``seed .. seed + num_samples - 1``.
        sampler, steps, batch_size: the sampler (:data:`medsynth.sampling.samplers.SAMPLERS`), its grid
            steps (None: its default) and volumes per network call.
        seed: base seed of the samples.
        metric: the score (:data:`medsynth.sampling.quality.QUALITY_METRICS`); logged as ``quality/<metric>``.
        reference: ``val``: the datamodule's validation subjects; ``train``: its training subjects. With
            fewer than 3 validation subjects, training subjects are used (said in the log).
        num_reference: at most this many reference volumes (the first in the datamodule's order).
        radiomics: frd-score settings (``frd_version``, ``image_types``, ``mask``, ``bin_width``,
            ``resampled_spacing``), as ``medsynth evaluate``'s ``radiomics`` group (None: its defaults,
            v1's full feature set).
        z_clip, nearest_k, kid: evaluate's ``radiomics.z_clip``, ``prdc.nearest_k`` and ``kid`` settings.
        cache_dir: radiomics cache of the reference features (None: evaluate's default cache).
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_steps: int = 200,
        num_samples: int = 8,
        sampler: str = "dpmpp3m",
        steps: int | None = None,
        batch_size: int = 4,
        seed: int = 0,
        metric: str = "frd_d2",
        reference: str = "val",
        num_reference: int = 16,
        radiomics: dict[str, Any] | None = None,
        z_clip: float = 10.0,
        nearest_k: int = 5,
        kid: dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
    ):
        key = "callbacks.quality"
        self.better = metric_direction(metric)
        for name, value, low in (
            ("every_n_steps", every_n_steps, 0),
            ("num_samples", num_samples, MIN_REFERENCE),
            ("batch_size", batch_size, 1),
            ("num_reference", num_reference, MIN_REFERENCE),
        ):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{key}.{name}", f"must be an integer >= {low}, got {value!r}")
        if reference not in REFERENCES:
            raise ConfigError(f"{key}.reference", f"unknown '{reference}' (choose from {', '.join(REFERENCES)})")
        radiomics = dict(radiomics or {})
        for name in ("image_types", "resampled_spacing"):
            if radiomics.get(name) is not None:
                radiomics[name] = tuple(radiomics[name])
        try:
            self.radiomics = RadiomicsSettings(**radiomics)
        except TypeError as err:
            raise ConfigError(f"{key}.radiomics", str(err)) from None
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.num_samples = num_samples
        self.sampler = str(sampler)
        self.steps = None if steps is None else int(steps)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.metric = metric
        self.monitor = f"quality/{metric}"
        self.reference = reference
        self.num_reference = num_reference
        self.z_clip, self.nearest_k, self.kid = float(z_clip), int(nearest_k), dict(kid or {})
        self.cache_dir = cache_dir
        # state (saved in every checkpoint, restored on resume)
        self.best: float | None = None
        self.best_step: int | None = None
        self.last: float | None = None
        self.last_step: int | None = None
        # filled in by setup()
        self.scorer: QualityScore | None = None
        self.reference_records: list[dict[str, Any]] = []
        self.reference_source = ""
        self.seconds: list[float] = []  # wall time of each evaluation on rank 0

    # ------------------------------------------------------------------------------------------ settings
    def settings(self) -> dict[str, Any]:
        """Everything that changes a score: scores under other settings are not comparable."""
        return {
            "metric": self.metric,
            "better": self.better,
            "num_samples": self.num_samples,
            "sampler": self.sampler,
            "steps": self.steps,
            "seed": self.seed,
            "reference": self.reference,
            "num_reference": self.num_reference,
            "radiomics": self.radiomics.as_dict(),
            "z_clip": self.z_clip,
            "nearest_k": self.nearest_k,
            "kid": self.kid,
        }

    @property
    def state_key(self) -> str:
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:12]
        return self._generate_state_key(monitor=self.monitor, settings=digest)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "last": self.last,
            "last_step": self.last_step,
            "dirpath": str(self.dirpath.resolve()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the best score and its step come back when the run goes on in the same folder (its
        best_quality.ckpt holds that step); resumed into another folder, that folder starts a new best
        (as Lightning's ModelCheckpoint does)."""
        if state_dict.get("dirpath") not in (None, str(self.dirpath.resolve())):
            log.info("quality: resumed into another run folder: best_quality.ckpt starts afresh there")
            return
        for name in ("best", "best_step", "last", "last_step"):
            setattr(self, name, state_dict.get(name))

    # ------------------------------------------------------------------------------------------ hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.every_n_steps == 0:
            return
        meta = pl_module.sampling_metadata()
        build_sampler(self.sampler, DiffusionSettings(**meta["diffusion"]), self.steps, 0.0, None)  # one line now
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "train_records"):
            raise ConfigError("callbacks.quality", "needs the medsynth datamodule (its validation/training volumes)")
        records, source = list(datamodule.val_records), "validation"
        if self.reference == "train" or len(records) < MIN_REFERENCE:
            if self.reference == "val":
                log.info(
                    "quality: %d validation subject(s), fewer than %d: scoring against training subjects",
                    len(records),
                    MIN_REFERENCE,
                )
            records, source = list(datamodule.train_records), "training"
        records = records[: self.num_reference]
        if len(records) < MIN_REFERENCE:
            log.warning(
                "quality: only %d subject(s) to score against (needs %d): best_quality.ckpt is not written",
                len(records),
                MIN_REFERENCE,
            )
            self.every_n_steps = 0
            return
        self.reference_records, self.reference_source = records, f"{len(records)} {source} subjects"
        self.scorer = QualityScore(
            [r["image"] for r in records],
            affine=np.asarray(meta["geometry"]["affine"], dtype=np.float64),
            metric=self.metric,
            radiomics=self.radiomics,
            z_clip=self.z_clip,
            nearest_k=self.nearest_k,
            kid=self.kid,
            seed=self.seed,
            cache_dir=self.cache_dir,
        )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.due(trainer.global_step, trainer.max_steps) and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        checkpoint["quality"] = {
            "monitor": self.monitor,
            **self.state_dict(),
            "reference": self.reference_source,
            "settings": self.settings(),
        }

    # ------------------------------------------------------------------------------------------ scoring
    def due(self, step: int, max_steps: int | None) -> bool:
        """True at multiples of ``every_n_steps`` and at the last step of a run at least that long."""
        if self.every_n_steps <= 0 or step <= 0 or step == self.last_step:
            return False
        last = max_steps is not None and max_steps > 0 and step >= max_steps >= self.every_n_steps
        return step % self.every_n_steps == 0 or last

    def improves(self, value: float) -> bool:
        """Strictly better than the best so far (in the metric's declared direction)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.better == "lower" else value > self.best

    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> float:
        """Score the current EMA weights (rank 0), share the score, log it, save a new best."""
        step = int(trainer.global_step)
        value = self.compute(pl_module) if trainer.is_global_zero else None
        value = float(trainer.strategy.broadcast(value, src=0))
        saved = self.state_dict()
        self.last, self.last_step = value, step
        pl_module.log(self.monitor, value, prog_bar=True, logger=False, on_step=True, on_epoch=False)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({self.monitor: value}, step=step)
        improved = self.improves(value)
        if improved:
            self.best, self.best_step = value, step
            try:
                self.save(trainer, step)
            except BaseException:
                self.best, self.best_step = saved["best"], saved["best_step"]
                raise
        if trainer.is_global_zero:
            seconds = f", {self.seconds[-1]:.1f} s" if self.seconds else ""
            log.info(
                "quality: step %d %s = %.6g (best %.6g at step %s%s)%s",
                step,
                self.monitor,
                value,
                self.best if self.best is not None else math.nan,
                self.best_step,
                seconds,
                f" -> {BEST_QUALITY_CHECKPOINT}" if improved else "",
            )
        return value

    def compute(self, pl_module: Any) -> float:
        """The score of ``num_samples`` EMA samples; the worst value when they cannot be scored
        (e.g. an early model's constant volumes defeat PyRadiomics), so training goes on."""
        assert self.scorer is not None
        started = time.perf_counter()
        try:
            volumes = self.generate(pl_module)
            value = self.scorer.score(volumes)
        except (MedsynthError, FloatingPointError, ValueError) as err:
            log.warning("quality: step samples could not be scored (%s); counted as the worst score", err)
            value = math.inf if self.better == "lower" else -math.inf
        self.seconds.append(time.perf_counter() - started)
        return float(value)

    def generate(self, pl_module: Any) -> np.ndarray:
        """(N, D, H, W) image channel of ``num_samples`` EMA samples in [-1, 1]. Conditions follow the
        reference subjects in turn (class label, covariates, label map of a mask-conditioned model).
        The global RNG is left as it was: scoring does not change the training run."""
        device = pl_module.device
        cuda = []
        if device.type == "cuda":
            cuda = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):
            bundle = pl_module.sampling_bundle(use_ema=True)  # builds a network: draws from the global RNG
        was_training = pl_module.training
        picks = [self.reference_records[i % len(self.reference_records)] for i in range(self.num_samples)]
        conditioning = bundle.conditioning
        labels = [int(r["class_label"]) for r in picks] if conditioning.num_classes > 0 else None
        covariates = (
            np.stack([np.asarray(r["covariates"], dtype=np.float32) for r in picks])
            if conditioning.covariate_keys
            else None
        )
        masks: Sequence | None = None
        if bundle.geometry.mask_conditioned:
            masks = [load_mask(r["label_map"], bundle) for r in picks]
        out = np.zeros((self.num_samples, *bundle.geometry.shape), dtype=np.float32)
        for batch in iter_generate(
            bundle,
            seeds=[self.seed + i for i in range(self.num_samples)],
            sampler=self.sampler,
            steps=self.steps,
            class_labels=labels,
            covariates=covariates,
            batch_size=self.batch_size,
            device=device,
            precision="auto",
            masks=masks,
        ):
            out[batch.positions] = batch.volumes[:, 0].numpy()
        pl_module.train(was_training)
        return out

    def save(self, trainer: pl.Trainer, step: int) -> Path:
        """The full training checkpoint as ``best_quality.ckpt``: every rank calls Lightning's
        ``save_checkpoint`` (rank 0 writes), to a temporary name that rank 0 then renames."""
        final = self.dirpath / BEST_QUALITY_CHECKPOINT
        tmp = self.dirpath / f"{TEMP_PREFIX}{step:07d}-{BEST_QUALITY_CHECKPOINT}"
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # the full state: a run can resume from it
            if trainer.is_global_zero:
                os.replace(tmp, final)
        finally:
            if trainer.is_global_zero and tmp.exists():
                tmp.unlink()
        trainer.strategy.barrier()
        return final
