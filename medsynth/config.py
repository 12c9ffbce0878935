"""Hydra config access shared by every stage.

``conf/`` at the repository root holds every config; an installed wheel carries a copy as
``medsynth/_conf``. ``MEDSYNTH_CONFIG_DIR`` points elsewhere (a user's own config tree).
Stages other than ``train`` compose their config with Hydra's compose API, so every knob is a
``key=value`` override exactly as in ``medsynth train``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from medsynth.errors import ConfigError


def config_dir() -> Path:
    """Absolute path of the config tree (``conf/``)."""
    env = os.environ.get("MEDSYNTH_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    packaged = Path(__file__).resolve().parent / "_conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[1] / "conf"


def compose_stage(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``key=value`` overrides.

    The result is checked against the stage's typed schema (:mod:`medsynth.config_schema`):
    types, ranges, allowed values, output folders and database URLs, before any work starts.

    Raises:
        ConfigError: an override that does not parse, names an unknown key or group option, or a
            value the schema refuses.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(bad[0], "expected key=value (see --help)")
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_first_override_key(overrides, str(err)), _one_line(err)) from None
    from medsynth.config_schema import validate_config

    validate_config(cfg, config_name)
    return cfg


def require(cfg: DictConfig, key: str) -> object:
    """Return ``cfg.<key>`` or raise :class:`ConfigError` when it is missing or null."""
    value = OmegaConf.select(cfg, key, default=None)
    if value is None or value == "???":
        raise ConfigError(key, "is required (pass " + key + "=...)")
    return value


def format_defaults(config_name: str) -> str:
    """The stage's default config as YAML, for ``--help``."""
    return OmegaConf.to_yaml(compose_stage(config_name), resolve=False)


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:300]


def _first_override_key(overrides: Sequence[str], message: str) -> str:
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key and key in message:
            return key
    return "config"
