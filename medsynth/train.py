"""``medsynth train``: the training stage, a Hydra app over ``conf/config.yaml``.

``main(argv)`` runs Hydra with ``argv`` as its command line, so everything Hydra offers works:
``experiment=demo``, ``group=option``, ``key=value``, ``-m`` sweeps (launchers, Optuna),
``hydra.run.dir=...``, ``--help`` (config groups + defaults), ``--cfg job``.

Before any training, the composed config is checked (:func:`check_config`); a bad value raises
:class:`~medsynth.errors.ConfigError`, which the CLI prints as one line. The run dir gets
``config_resolved.yaml``, ``checkpoints/last.ckpt`` (+ the best by val/loss), ``previews/*.png``
and the logger's files.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medsynth.errors import ConfigError, MedsynthError, user_error_in
from medsynth.io.run_dir import remove_unfinished_run

log = logging.getLogger("medsynth.train")

CONFIG_NAME = "config"
LOGGER_KINDS = ("tensorboard", "csv", "mlflow", "none")
PROGRESS_KINDS = ("rich", "tqdm", "none")
#: exit code after a SIGTERM stopped training (128 + signal 15), checkpoints/last.ckpt saved
SIGTERM_EXIT_CODE = 143


# ---------------------------------------------------------------------------------------------- checks
def check_config(cfg: DictConfig) -> None:
    """Validate what can be checked before loading data (one :class:`ConfigError` per problem)."""
    from medsynth.models.losses import LOSSES, PREDICTION_TYPES, SCHEDULES
    from medsynth.models.representation import REPRESENTATIONS

    root = cfg.data.get("root")
    if root in (None, "", "???"):
        raise ConfigError(
            "data.root", "is required: a folder prepared by `medsynth data prepare` (pass data.root=DIR)"
        )
    if not Path(str(root)).expanduser().exists():
        raise ConfigError("data.root", f"{root} does not exist")
    representation = cfg.model.representation
    if representation != "auto" and representation not in REPRESENTATIONS:
        raise ConfigError(
            "model.representation", f"unknown '{representation}' (choose from auto, pixel, wavelet)"
        )
    for key, allowed in (
        ("diffusion.prediction_type", PREDICTION_TYPES),
        ("diffusion.schedule", SCHEDULES),
        ("diffusion.loss", LOSSES),
        ("logger.kind", LOGGER_KINDS),
        ("callbacks.progress", PROGRESS_KINDS),
    ):
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(key, f"unknown '{value}' (choose from {', '.join(allowed)})")
    channels = list(cfg.model.channels)
    if len(cfg.model.attention_levels) != len(channels):
        raise ConfigError(
            "model.attention_levels", f"needs one entry per level of model.channels ({len(channels)})"
        )
    groups = int(cfg.model.norm_num_groups)
    bad = [c for c in channels if int(c) % groups]
    if bad:
        raise ConfigError("model.norm_num_groups", f"{groups} does not divide model.channels {channels}")
    for key in ("trainer.max_steps", "data.batch_size", "trainer.devices"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) and not (key == "trainer.devices" and value in ("auto", -1)):
            raise ConfigError(key, f"must be an integer, got {value!r}")
        if isinstance(value, int) and value < 1 and not (key == "trainer.devices" and value == -1):
            raise ConfigError(key, f"must be >= 1, got {value}")
    if not 0.0 < float(cfg.model.ema_decay) < 1.0:
        raise ConfigError("model.ema_decay", "must be in (0, 1)")
    ckpt = cfg.get("ckpt_path")
    if ckpt and not Path(str(ckpt)).expanduser().is_file():
        raise ConfigError("ckpt_path", f"{ckpt} is not a file")
    if cfg.data.get("shape") is not None:
        check_shape(list(cfg.data.shape), cfg, "data.shape")


def check_shape(shape: Sequence[int], cfg: DictConfig, key: str) -> None:
    """The UNet halves the (latent) size once per level after the first: every side must divide evenly."""
    from medsynth.models.diffusion_module import resolve_representation_name

    if len(shape) != 3 or any(int(s) < 1 for s in shape):
        raise ConfigError(key, f"expected [D, H, W] positive integers, got {list(shape)}")
    name = resolve_representation_name(cfg.model.representation, tuple(int(s) for s in shape))
    factor = (2 if name == "wavelet" else 1) * 2 ** (len(cfg.model.channels) - 1)
    bad = [int(s) for s in shape if int(s) % factor]
    if bad:
        levels = len(cfg.model.channels)
        raise ConfigError(
            key,
            f"{list(shape)} is not divisible by {factor} ({name} representation, {levels}-level UNet "
            f"down-sampling); use sides that are multiples of {factor} or fewer model.channels",
        )


def compose_checked(overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` via Hydra's compose API and :func:`check_config` it."""
    from medsynth.config import compose_stage

    cfg = compose_stage(CONFIG_NAME, [o for o in overrides if not o.startswith("hydra")])
    check_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------- building
def build_datamodule(cfg: DictConfig) -> Any:
    from medsynth.data.datamodule import VolumeDataModule

    data = cfg.data
    return VolumeDataModule(
        root=data.root,
        manifest=data.get("manifest"),
        shape=list(data.shape) if data.get("shape") is not None else None,
        batch_size=data.batch_size,
        val_fraction=data.val_fraction,
        split_seed=data.split_seed,
        seed=cfg.seed,
        cache=data.cache,
        cache_dir=data.get("cache_dir"),
        num_workers=data.num_workers,
        flip_prob=data.flip_prob,
        affine_prob=data.affine_prob,
        rotate_deg=data.rotate_deg,
        scale=data.scale,
        label_key=data.get("label_key"),
        covariate_keys=list(data.get("covariate_keys") or []),
        validate_files=data.get("validate_files", True),
    )


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    kind = cfg.logger.kind
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return [
            TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
        ]
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return [CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    if kind == "mlflow":
        try:
            import mlflow  # noqa: F401
            from lightning.pytorch.loggers import MLFlowLogger
        except ImportError:
            raise ConfigError("logger", 'mlflow is not installed (pip install "medsynth[mlflow]")') from None
        uri = cfg.logger.get("tracking_uri") or (run_dir / "mlruns").resolve().as_uri()
        return [MLFlowLogger(experiment_name=cfg.logger.experiment_name, tracking_uri=uri, run_name=cfg.name)]
    return []


def build_callbacks(cfg: DictConfig, run_dir: Path) -> tuple[list[Any], Any]:
    from lightning.pytorch.callbacks import (
        LearningRateMonitor,
        ModelCheckpoint,
        TQDMProgressBar,
    )

    from medsynth.models.callbacks import (
        CheckpointOnSigterm,
        LastCheckpointAtEnd,
        PreviewCallback,
        StepBudgetProgressBar,
        ThroughputCallback,
    )

    cb = cfg.callbacks
    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[Any] = [
        # last.ckpt every N steps (and at the end)
        ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="step_{step:07d}",
            auto_insert_metric_name=False,
            save_last=True,
            save_top_k=-1 if cb.checkpoint.get("keep_all", False) else 0,
            every_n_train_steps=int(cb.checkpoint.every_n_steps),
            save_on_train_epoch_end=False,
            enable_version_counter=False,  # last.ckpt is overwritten, never last-v1.ckpt
        ),
        LastCheckpointAtEnd(ckpt_dir / "last.ckpt"),
    ]
    if int(cb.checkpoint.save_top_k) > 0 and float(cfg.data.val_fraction) > 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=str(ckpt_dir),
                filename="best-step_{step:07d}-val_{val/loss:.5f}",
                auto_insert_metric_name=False,
                monitor="val/loss",
                mode="min",
                save_top_k=int(cb.checkpoint.save_top_k),
            )
        )
    preview = PreviewCallback(
        out_dir=run_dir / "previews",
        every_n_steps=int(cb.preview.every_n_steps),
        num_samples=int(cb.preview.num_samples),
        sampler=str(cb.preview.sampler),
        steps=int(cb.preview.steps),
        seed=int(cb.preview.seed),
    )
    callbacks.append(preview)
    if cb.get("save_on_sigterm", True):
        callbacks.append(CheckpointOnSigterm(ckpt_dir / "last.ckpt"))
    if cb.get("throughput", True):
        callbacks.append(ThroughputCallback())
    if cb.get("lr_monitor", True) and cfg.logger.kind != "none":
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cb.progress == "rich":
        callbacks.append(StepBudgetProgressBar(leave=True))
    elif cb.progress == "tqdm":
        callbacks.append(TQDMProgressBar())
    return callbacks, preview


def build_trainer(cfg: DictConfig, run_dir: Path, has_val: bool) -> tuple[Any, Any]:
    import lightning.pytorch as pl

    from medsynth.models.precision import resolve_precision

    t = cfg.trainer
    callbacks, preview = build_callbacks(cfg, run_dir)
    val_every = int(t.val_every_n_steps)
    trainer = pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=int(t.num_nodes),
        strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator),
        max_steps=int(t.max_steps),
        max_epochs=-1,
        val_check_interval=val_every if has_val else None,
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches if has_val else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=int(t.log_every_n_steps),
        gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=int(t.accumulate_grad_batches),
        deterministic=bool(t.deterministic),
        benchmark=bool(t.benchmark),
        default_root_dir=str(run_dir),
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=callbacks,
        enable_progress_bar=cfg.callbacks.progress != "none",
        enable_model_summary=False,
        use_distributed_sampler=False,  # the DataModule builds its DistributedSampler (world size, rank, seed)
    )
    return trainer, preview


def run_dir_of_job() -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def train(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Train with a composed config; returns {"run_dir", "last_checkpoint", "best_checkpoint", "best_val_loss", "previews"}."""
    import lightning.pytorch as pl
    import torch

    from medsynth.io.atomic import atomic_write_text
    from medsynth.models.diffusion_module import DiffusionModule

    check_config(cfg)
    run_dir = Path(run_dir or run_dir_of_job()).resolve()
    datamodule = build_datamodule(cfg)
    datamodule.describe()
    check_shape(
        list(datamodule.shape), cfg, "data.shape" if cfg.data.get("shape") is not None else "data.root"
    )
    if not datamodule.train_records:
        raise ConfigError("data.val_fraction", "leaves no training subjects")
    per_rank = math.ceil(len(datamodule.train_records) / max(_world_size(cfg), 1))
    if per_rank < 1:
        raise ConfigError("trainer.devices", "more devices than training subjects")
    config = OmegaConf.to_container(cfg, resolve=True)
    conditioning = dict(datamodule.conditioning)
    conditioning["guidance_trained"] = bool(
        (conditioning["num_classes"] > 0 or conditioning["covariate_keys"])
        and float(cfg.model.cond_drop_prob) > 0
    )
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = DiffusionModule(
        config=config,
        geometry=datamodule.geometry,
        conditioning=conditioning,
        intensity=datamodule.intensity,
        covariate_mean=datamodule.covariate_mean,
        covariate_std=datamodule.covariate_std,
    )
    trainer, preview = build_trainer(cfg, run_dir, has_val=bool(datamodule.val_records))
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        log.info("run dir: %s", run_dir)
    torch.set_float32_matmul_precision("high")
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path") or None)
    best_cb = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
    best_score = getattr(best_cb, "best_model_score", None)
    result = {
        "run_dir": str(run_dir),
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "best_checkpoint": getattr(best_cb, "best_model_path", "") or "",
        "best_val_loss": float(best_score) if best_score is not None else None,
        "previews": [str(p) for p in preview.written],
        "global_step": int(trainer.global_step),
    }
    if trainer.is_global_zero:
        print(f"medsynth train: done at step {trainer.global_step}; run dir {run_dir}", flush=True)
        if preview.written:
            print(f"medsynth train: preview {preview.written[-1]}", flush=True)
    return result


def _world_size(cfg: DictConfig) -> int:
    devices = cfg.trainer.devices
    return int(devices) * int(cfg.trainer.num_nodes) if isinstance(devices, int) and devices > 0 else 1


# ---------------------------------------------------------------------------------------------- Hydra app
_ERRORS: list[MedsynthError] = []


def _task(cfg: DictConfig) -> float | None:
    """Hydra task: train one job; user errors are kept for :func:`main` to report as one line."""
    try:
        result = train(cfg)
    except Exception as failure:
        remove_unfinished_run(run_dir_of_job())  # failures leave nothing (kept once a checkpoint exists)
        err = user_error_in(failure)
        if err is None:
            raise
        _ERRORS.append(err)
        if _is_multirun():
            log.error("%s", err)
        return None
    if cfg.get("optimized_metric"):
        return result["best_val_loss"]
    return None


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main(argv: Sequence[str]) -> int:
    """Entry point of ``medsynth train``: Hydra command line in ``argv``; returns the exit code."""
    from hydra._internal.utils import _run_hydra, get_args_parser

    from medsynth.config import config_dir

    argv = list(argv)
    parser = get_args_parser()
    args = parser.parse_args(argv)
    informational = args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
    if not (args.multirun or informational or _is_child_process()):
        compose_checked(args.overrides)  # one-line ConfigError before anything starts
    _ERRORS.clear()
    try:
        _run_hydra(
            args=args,
            args_parser=parser,
            task_function=_task,
            config_path=str(config_dir()),
            config_name=CONFIG_NAME,
        )
    except SystemExit as stop:  # Hydra exits after --help/--cfg; Lightning after SIGTERM (checkpoint saved)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(stop, SIGTERMException):
            return SIGTERM_EXIT_CODE
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    if _ERRORS:
        raise _ERRORS[0]
    return 0


def _is_child_process() -> bool:
    """True in the processes Lightning's DDP launcher starts for ranks > 0 (they re-run this command)."""
    return os.environ.get("LOCAL_RANK", "0") != "0" and "MASTER_PORT" in os.environ


if __name__ == "__main__":
    from medsynth.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
