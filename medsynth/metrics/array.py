"""``medsynth evaluate`` as a SLURM job array: the tasks compute the radiomics features (~5-9 s per
volume at 64^3, the slow part), the finishing step computes every metric from them.

Task ``t`` of ``T`` featurises files ``t, t+T, ...`` of the real and synthetic sets into the
radiomics cache (one JSON file per volume, written atomically; ``radiomics.cache_dir``, by default
``out_dir/.array/radiomics``) and writes its record. The finishing step (``array.finish=true``)
checks every task's record, then runs :func:`~medsynth.metrics.evaluation.evaluate` on that cache:
the features are the same numbers (JSON keeps float64 exactly), so the metrics are those of one
process. See :mod:`medsynth.io.slurm_array` and docs/cluster.md.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from medsynth.config import require
from medsynth.io.slurm_array import ARRAY_DIR, ArrayRole, check_task_records, shard, write_task_record
from medsynth.metrics.volume_folder import list_volume_files

STAGE = "evaluate"


def array_cache_dir(cfg: DictConfig) -> Path:
    """The radiomics cache the tasks and the finishing step share."""
    if cfg.radiomics.cache_dir:
        return Path(str(cfg.radiomics.cache_dir)).expanduser()
    return Path(str(require(cfg, "out_dir"))).expanduser() / ARRAY_DIR / "radiomics"


def featurised_files(cfg: DictConfig) -> list[Path]:
    """Every volume whose radiomics features the metrics need: the real set, then the synthetic set."""
    real = list_volume_files(require(cfg, "real_dir"), "real_dir")
    synthetic = list_volume_files(require(cfg, "synthetic_dir"), "synthetic_dir")
    return [*real, *synthetic]


def run_task(cfg: DictConfig, role: ArrayRole) -> dict:
    """One array task: the radiomics features of its share of the files, then its record."""
    from medsynth.metrics.evaluation import radiomics_settings
    from medsynth.metrics.radiomics_features import extract_features

    out_dir = Path(str(require(cfg, "out_dir"))).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        from medsynth.errors import ConfigError

        raise ConfigError("out_dir", f"{out_dir} exists and is not a folder")
    mine = shard(featurised_files(cfg), role)
    if mine:
        extract_features(
            mine,
            radiomics_settings(cfg),
            cache_dir=array_cache_dir(cfg),
            num_workers=int(cfg.num_workers),
            progress=bool(cfg.progress),
            description=f"radiomics (task {role.task} of {role.tasks})",
        )
    record = write_task_record(out_dir, STAGE, role, [str(p) for p in mine])
    return {"files": len(mine), "record": str(record)}


def finishing_config(cfg: DictConfig, role: ArrayRole) -> DictConfig:
    """Check every task's record; the config :func:`evaluate` then runs with (the tasks' cache)."""
    out_dir = Path(str(require(cfg, "out_dir"))).expanduser()
    check_task_records(out_dir, STAGE, role, [str(p) for p in featurised_files(cfg)])
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(cfg):
        cfg.radiomics.cache_dir = str(array_cache_dir(cfg))
    return cfg
