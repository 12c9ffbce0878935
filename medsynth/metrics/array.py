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
from medsynth.errors import ConfigError
from medsynth.io.slurm_array import ARRAY_DIR, ArrayRole, check_task_records, shard, write_task_record

STAGE = "evaluate"


def array_cache_dir(cfg: DictConfig) -> Path:
    """The radiomics cache the tasks and the finishing step share."""
    if cfg.radiomics.cache_dir:
        return Path(str(cfg.radiomics.cache_dir)).expanduser()
    return Path(str(require(cfg, "out_dir"))).expanduser() / ARRAY_DIR / "radiomics"


def featurised_files(cfg: DictConfig) -> list[Path]:
    """Every volume whose radiomics features the metrics need: the real set, then the synthetic set
    (checked as :func:`~medsynth.metrics.evaluation.resolve_inputs` checks them: one fingerprint)."""
    from medsynth.metrics.evaluation import resolve_inputs

    if bool(cfg.get("prepare_inputs", False)):
        raise ConfigError(
            "prepare_inputs", "is not for array runs: prepare the real/train folders first (medsynth data prepare)"
        )
    sets = resolve_inputs(cfg, _out_dir(cfg))
    return [*sets.real_files, *sets.synthetic_files]


def run_task(cfg: DictConfig, role: ArrayRole) -> dict:
    """One array task: the radiomics features of its share of the files, then its record."""
    from medsynth.metrics.evaluation import featurise

    out_dir = _out_dir(cfg)
    mine = shard(featurised_files(cfg), role)
    if mine:
        featurise(mine, with_array_cache(cfg), f"radiomics (task {role.task} of {role.tasks})")
    record = write_task_record(out_dir, STAGE, role, [str(p) for p in mine])
    return {"files": len(mine), "record": str(record)}


def finishing_config(cfg: DictConfig, role: ArrayRole) -> DictConfig:
    """Check every task's record; the config :func:`evaluate` then runs with (the tasks' cache)."""
    check_task_records(_out_dir(cfg), STAGE, role, [str(p) for p in featurised_files(cfg)])
    return with_array_cache(cfg)


def with_array_cache(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``radiomics.cache_dir`` set to the cache the tasks share."""
    cache = str(array_cache_dir(cfg))
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(cfg):
        cfg.radiomics.cache_dir = cache
    return cfg


def _out_dir(cfg: DictConfig) -> Path:
    out_dir = Path(str(require(cfg, "out_dir"))).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out_dir", f"{out_dir} exists and is not a folder")
    return out_dir
