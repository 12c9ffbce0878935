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


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """``${medsynth_gpus:${trainer.accelerator},${trainer.devices}}`` in conf/hydra/launcher/slurm.yaml:
    GPUs to request per node (``trainer.devices``), or none when the trainer runs on CPU."""
    if str(accelerator) == "cpu":
        return None
    return int(devices) if str(devices).lstrip("-").isdigit() and int(devices) > 0 else None


OmegaConf.register_new_resolver("medsynth_gpus", gpus_per_node, replace=True)


# ---------------------------------------------------------------------------------------------- checks
def check_config(cfg: DictConfig) -> None:
    """Validate what can be checked before loading data (one :class:`ConfigError` per problem)."""
    from medsynth.config_schema import validate_config
    from medsynth.models.bundle import DiffusionSettings
    from medsynth.models.losses import LOSSES, PREDICTION_TYPES, SCHEDULES
    from medsynth.models.noise import check_sigma_data, check_time_sampling
    from medsynth.models.representation import REPRESENTATIONS, WAVELET_SCALINGS, check_detail_gain

    validate_config(cfg, CONFIG_NAME)  # typed schema (ConfigStore medsynth_schema/config), sweeps too

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
        ("model.wavelet_scaling", WAVELET_SCALINGS),
        ("diffusion.prediction_type", PREDICTION_TYPES),
        ("diffusion.schedule", SCHEDULES),
        ("diffusion.loss", LOSSES),
        ("logger.kind", LOGGER_KINDS),
        ("callbacks.progress", PROGRESS_KINDS),
    ):
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(key, f"unknown '{value}' (choose from {', '.join(allowed)})")
    check_detail_gain(OmegaConf.select(cfg, "model.wavelet_detail_gain", default=1.0))
    check_sigma_data(OmegaConf.select(cfg, "diffusion.sigma_data", default=DiffusionSettings.sigma_data))
    check_time_sampling(OmegaConf.select(cfg, "diffusion.time_sampling", default=DiffusionSettings.time_sampling))
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
    name = resolve_representation_name(
        cfg.model.representation, tuple(int(s) for s in shape), int(cfg.model.auto_wavelet_min_side)
    )
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


# ---------------------------------------------------------------------------------------------- launch checks
#: Hydra flags that print something and exit without running a job
INFORMATIONAL_FLAGS = frozenset(
    {"-h", "--help", "-hh", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"}
)
#: Hydra flags followed by a value
_FLAGS_WITH_VALUE = frozenset(
    {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
     "-sc", "--shell-completion", "-i", "--info"}
)  # fmt: skip
#: metrics whose scale depends on the diffusion settings (epsilon-MSE vs v-MSE vs x0-MSE, SNR weights)
RAW_LOSS_PREFIXES = ("train/loss", "val/loss")


def split_argv(argv: Sequence[str]) -> tuple[set[str], list[str]]:
    """Split a Hydra command line into its flags (``-m``, ``--cfg``...) and its ``key=value`` overrides."""
    flags: set[str] = set()
    overrides: list[str] = []
    takes_value = False
    for arg in argv:
        if takes_value and not arg.startswith("-") and "=" not in arg:  # the value of the flag before
            takes_value = False
            continue
        takes_value = False
        if arg.startswith("-"):  # overrides start with a key, '+' or '~'; flags with '-'
            name = arg.split("=", 1)[0]
            flags.add(name)
            takes_value = name in _FLAGS_WITH_VALUE and "=" not in arg
        else:
            overrides.append(arg)
    return flags, overrides


def sweep_points(overrides: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    """Override lists that together try every listed value of every swept key once (one key varied at a
    time from the first values), and the swept keys. ``interval(...)`` (an Optuna range) adds its key only.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError("overrides", " ".join(str(err).split())[:300]) from None
    base: list[str] = []
    swept: list[tuple[int, str, list[str]]] = []
    keys: list[str] = []
    for override in parsed:
        if not override.is_sweep_override():
            base.append(override.input_line)
            continue
        if override.key_or_group.startswith("hydra"):  # a sweep inside Hydra's own config: Hydra checks it
            continue
        key = override.get_key_element()
        keys.append(override.key_or_group)
        try:
            values = list(override.sweep_string_iterator())
        except Exception:  # interval(): a continuous range, nothing to enumerate
            values = []
        swept.append((len(base), key, values))
        base.append(f"{key}={values[0]}" if values else "")
    points = [[o for o in base if o]]
    for index, key, values in swept:
        for value in values[1:]:
            point = list(base)
            point[index] = f"{key}={value}"
            points.append([o for o in point if o])
    return points, keys


def check_launch(overrides: Sequence[str]) -> DictConfig:
    """Check a ``medsynth train`` command line before anything runs; returns the first point's config.

    Every value of every swept key is composed and :func:`check_config`-ed; keys searched by a sweeper
    (``hydra.sweeper.params``) must exist; ``optimized_metric`` must be comparable across the search.
    """
    points, cli_keys = sweep_points(overrides)
    cfg = None
    for point in points:
        checked = compose_checked(point)
        cfg = cfg if cfg is not None else checked
    assert cfg is not None
    hydra_cfg = _compose_hydra(points[0])
    params = OmegaConf.select(hydra_cfg, "hydra.sweeper.params", default=None) or {}
    for key in [*cli_keys, *map(str, params)]:
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            where = "hydra.sweeper.params" if key in params else "the sweep"
            raise ConfigError(key, f"is not a key of the train config ({where}; see medsynth train --cfg job)")
    check_search_metric(cfg.get("optimized_metric"), [*cli_keys, *map(str, params)])
    return cfg


def check_search_metric(metric: str | None, searched_keys: Sequence[str]) -> None:
    """Refuse a search that changes the diffusion objective while optimising a raw loss: epsilon-MSE,
    v-MSE and x0-MSE (and min-SNR weightings) have different scales, so the smallest loss would pick a
    parametrisation, not a better model."""
    if not metric or not str(metric).startswith(RAW_LOSS_PREFIXES):
        return
    changing = [k for k in searched_keys if k == "diffusion" or k.startswith("diffusion.")]
    if changing:
        raise ConfigError(
            "optimized_metric",
            f"{metric} is not comparable across {', '.join(changing)} (each setting has its own loss scale); "
            "fix the diffusion settings or optimise a quality metric",
        )


def _compose_hydra(overrides: Sequence[str]) -> DictConfig:
    """The composed config with its ``hydra`` node (launcher, sweeper), as Hydra will see it."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from medsynth.config import config_dir

    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            return compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        text = " ".join(str(err).split())
        for plugin, extra in (("submitit", "slurm"), ("optuna", "optuna")):
            if plugin in text:
                raise ConfigError("hydra", f'{text[:200]} (pip install "medsynth[{extra}]")') from None
        raise ConfigError("hydra", text[:300]) from None


# ---------------------------------------------------------------------------------------------- building
def build_datamodule(cfg: DictConfig) -> Any:
    """The :class:`~medsynth.data.datamodule.VolumeDataModule` declared by ``cfg.data`` (``_target_``)."""
    from hydra.utils import instantiate

    return instantiate(cfg.data, _convert_="all")


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


def build_callbacks(cfg: DictConfig, run_dir: Path, has_val: bool = True) -> list[Any]:
    """The Lightning callbacks: periodic/best/on-exception checkpoints from ``callbacks.checkpoint``, the
    progress bar from ``callbacks.progress``, and every ``callbacks.<name>`` entry with a ``_target_``
    (previews, throughput, lr monitor, yours), built by ``hydra.utils.instantiate``.

    An entry set to ``null`` or ``false`` is left out; without validation, entries monitoring a ``val/``
    metric are left out; without a logger, the ``LearningRateMonitor`` is.
    """
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    from medsynth.models.callbacks import LastCheckpointAtEnd, StepBudgetProgressBar

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
            # SIGTERM (preemption, kill) or an error after the first step: last.ckpt before exiting
            save_on_exception=bool(cb.checkpoint.get("save_on_exception", True)),
        ),
        LastCheckpointAtEnd(ckpt_dir / "last.ckpt"),
    ]
    if int(cb.checkpoint.save_top_k) > 0 and has_val:
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
    declared = OmegaConf.to_container(cb, resolve=False)
    entries = {name: value for name, value in declared.items() if isinstance(value, dict) and "_target_" in value}
    for name in entries:
        callback = instantiate(cfg.callbacks[name], _convert_="all")
        if not has_val and str(getattr(callback, "monitor", None) or "").startswith("val/"):
            continue
        if isinstance(callback, LearningRateMonitor) and cfg.logger.kind == "none":
            continue
        callbacks.append(callback)
    if cb.progress == "rich":
        callbacks.append(StepBudgetProgressBar(leave=True))
    elif cb.progress == "tqdm":
        callbacks.append(TQDMProgressBar())
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: Path, has_val: bool) -> tuple[Any, Any]:
    import lightning.pytorch as pl

    from medsynth.models.precision import resolve_precision
    from medsynth.sampling.preview import PreviewCallback

    t = cfg.trainer
    callbacks = build_callbacks(cfg, run_dir, has_val)
    preview = next((c for c in callbacks if isinstance(c, PreviewCallback)), None)
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
    """Train with a composed config.

    Returns ``{"metrics", "run_dir", "last_checkpoint", "best_checkpoint", "previews", "global_step"}``;
    ``metrics`` maps each logged metric's name to its last value (``train/loss``, ``val/loss``...) plus
    ``val/loss_best`` (the best checkpoint's val/loss) when validation ran.
    """
    import lightning.pytorch as pl
    import torch

    from medsynth.io.atomic import atomic_write_text
    from medsynth.models.diffusion_module import DiffusionModule

    check_config(cfg)
    run_dir = Path(run_dir or run_dir_of_job()).resolve()
    cfg = OmegaConf.merge(cfg, {"run_dir": str(run_dir)})  # ${run_dir} in callback entries
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
    metrics = {
        name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1
    }
    if best_score is not None:
        metrics["val/loss_best"] = float(best_score)
    written = list(preview.written) if preview is not None else []
    result = {
        "metrics": metrics,
        "run_dir": str(run_dir),
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "best_checkpoint": getattr(best_cb, "best_model_path", "") or "",
        "previews": [str(p) for p in written],
        "global_step": int(trainer.global_step),
    }
    if trainer.is_global_zero:
        print(f"medsynth train: done at step {trainer.global_step}; run dir {run_dir}", flush=True)
        if written:
            print(f"medsynth train: preview {written[-1]}", flush=True)
    return result


def _world_size(cfg: DictConfig) -> int:
    devices = cfg.trainer.devices
    return int(devices) * int(cfg.trainer.num_nodes) if isinstance(devices, int) and devices > 0 else 1


# ---------------------------------------------------------------------------------------------- Hydra app
#: ``sys.argv`` of the ``medsynth train`` process while Hydra parses its own copy (see :func:`main`)
_ORIGINAL_ARGV: list[str] | None = None
#: a single run's user error, raised by :func:`main` after Hydra returns (Hydra would add a line)
_ERRORS: list[MedsynthError] = []


def _task(cfg: DictConfig) -> float | None:
    """The Hydra task (one run, or one job of a sweep): train, then return the value of
    ``optimized_metric`` when it is set (the sweeper's objective), else ``None``.

    In a sweep a :class:`~medsynth.errors.MedsynthError` propagates: Hydra records it in the job's
    return (on a SLURM node too) and re-raises it in ``medsynth train``; a single run keeps it for
    :func:`main` to raise, so it is printed as one line.
    """
    if _ORIGINAL_ARGV is not None:  # Lightning's DDP launcher re-runs sys.argv for ranks > 0
        sys.argv = list(_ORIGINAL_ARGV)
    try:
        result = train(cfg)
    except Exception as failure:
        remove_unfinished_run(run_dir_of_job())  # failures leave nothing (kept once a checkpoint exists)
        err = user_error_in(failure)
        if err is None:
            raise
        if _is_multirun():
            raise err from (None if err is failure else failure)
        _ERRORS.append(err)
        return None
    name = cfg.get("optimized_metric")
    return objective(result["metrics"], name) if name else None


def objective(metrics: dict[str, float], name: str) -> float:
    """The value of the metric named by ``optimized_metric`` (what the Optuna sweeper optimises)."""
    if name not in metrics:
        raise ConfigError("optimized_metric", f"'{name}' was not logged (logged: {', '.join(sorted(metrics))})")
    value = float(metrics[name])
    if not math.isfinite(value):
        raise ConfigError("optimized_metric", f"'{name}' is {value} for this run")
    return value


def main(argv: Sequence[str]) -> int:
    """Entry point of ``medsynth train``: Hydra command line in ``argv``; returns the exit code.

    The app is built with Hydra's public ``hydra.main`` over ``conf/config.yaml``. Before anything is
    launched, every point of a sweep is composed and checked (:func:`check_launch`), so a bad key or
    value is one line and no job starts. ``HYDRA_FULL_ERROR=1`` makes Hydra re-raise a job's error
    instead of printing a traceback, so a user error inside a job is one line too.
    """
    global _ORIGINAL_ARGV
    import hydra

    from medsynth.config import config_dir

    argv = list(argv)
    flags, overrides = split_argv(argv)
    informational = bool(flags & INFORMATIONAL_FLAGS)
    if not (informational or _is_child_process()):
        check_launch(overrides)  # one-line ConfigError before anything starts
    app = hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=CONFIG_NAME)(_task)
    saved_argv, saved_full_error = list(sys.argv), os.environ.get("HYDRA_FULL_ERROR")
    _ORIGINAL_ARGV = saved_argv
    sys.argv = [saved_argv[0] if saved_argv else "medsynth", *argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    _ERRORS.clear()
    try:
        app()
    except SystemExit as stop:  # Hydra exits after --help/--cfg; Lightning after SIGTERM (checkpoint saved)
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(stop, SIGTERMException):
            return SIGTERM_EXIT_CODE
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as err:
        launch_error = _launch_error(err)
        if launch_error is None:
            raise
        raise launch_error from None
    finally:
        sys.argv = saved_argv
        _ORIGINAL_ARGV = None
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    if _ERRORS:
        raise _ERRORS.pop()
    return 0


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _launch_error(err: BaseException) -> MedsynthError | None:
    """A scheduler refusing a sweep (sbatch: unknown partition, account, time limit...) as one line."""
    if type(err).__name__ != "FailedJobError":  # submitit.core.utils.FailedJobError
        return None
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reason = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "job failed")
    return ConfigError("hydra.launcher", reason)


def _is_child_process() -> bool:
    """True in the processes Lightning's DDP launcher starts for ranks > 0 (they re-run this command)."""
    return os.environ.get("LOCAL_RANK", "0") != "0" and "MASTER_PORT" in os.environ


if __name__ == "__main__":
    from medsynth.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
