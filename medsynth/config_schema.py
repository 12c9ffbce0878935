"""Typed configs: one Hydra structured config (dataclass) per stage, checked before any work starts.

Each stage's schema is registered in Hydra's ConfigStore (group ``medsynth_schema``, name = the
stage's config name) and :func:`validate_config` checks a composed config against it:

1. types, by merging the config into ``OmegaConf.structured(schema)`` (OmegaConf's own type
   conversion: ``num_samples=abc`` fails on an ``int`` field);
2. constraints from the fields' metadata: allowed values (``choices``), ranges (``low``/``high``),
   and checks of what a value names (``kind``: ``out_dir`` must not be an existing file, ``db``
   must be a database URL with a known driver, or a SQLite file).

Schemas are partial on purpose: they name the keys whose type or range matters; other keys pass
through (Hydra already refuses keys that no config declares). :func:`medsynth.config.compose_stage`
calls :func:`validate_config` for every stage; ``medsynth train`` (a Hydra app) calls it from its
config check. Every failure is a :class:`~medsynth.errors.ConfigError`: one line naming the key.

Numbers here are bounds of validity (a fraction is in [0, 1]), not settings: settings live in conf/.
"""

from __future__ import annotations

import math
import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from medsynth.errors import ConfigError

SCHEMA_GROUP = "medsynth_schema"
#: first bytes of every SQLite 3 database file
SQLITE_MAGIC = b"SQLite format 3\x00"


def knob(default: Any = None, *, choices=None, low=None, high=None, low_open=False, kind=None) -> Any:
    """A schema field with its constraints.

    Args:
        default: the field default (lists are copied per instance).
        choices: allowed values (compared as strings), or a callable returning them.
        low, high: inclusive bounds (``low_open``: exclusive lower bound).
        kind: ``out_dir`` (a folder, not an existing file) or ``db`` (a database URL or SQLite file).
    """
    metadata = {"choices": choices, "low": low, "high": high, "low_open": low_open, "kind": kind}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def fraction(default: float | None = None) -> Any:
    """A share in [0, 1]."""
    return knob(default, low=0.0, high=1.0)


def count(default: int | None = None, low: int = 1) -> Any:
    """A whole number >= ``low`` (1 by default)."""
    return knob(default, low=low)


def lightning_precisions() -> list[str]:
    """Every ``precision`` value Lightning's Trainer accepts, plus medsynth's ``auto``."""
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    values: list[str] = []

    def collect(tp) -> None:
        for arg in get_args(tp):
            collect(arg) if get_args(arg) else values.append(str(arg))

    collect(_PRECISION_INPUT)
    return list(dict.fromkeys(["auto", *values]))


# ------------------------------------------------------------------------------------ data stage
@dataclass
class IntensityMRSchema:
    lower_percentile: float = knob(0.5, low=0.0, high=100.0)
    upper_percentile: float = knob(99.5, low=0.0, high=100.0)


@dataclass
class IntensitySchema:
    mode: str = knob("mr", choices=("mr", "ct", "none"))
    mr: IntensityMRSchema = field(default_factory=IntensityMRSchema)


@dataclass
class CropSchema:
    enabled: bool = True
    threshold: float = fraction(0.1)
    margin_mm: float = knob(6.0, low=0.0)


@dataclass
class DicomSchema:
    spacing_tolerance: float = knob(0.01, low=0.0, high=1.0)


@dataclass
class DataPrepareSchema:
    input: str | None = None
    out_dir: str | None = knob(None, kind="out_dir")
    spacing: list[float] = knob([3.0, 3.0, 3.0])
    shape: list[int] = knob([64, 64, 64])
    volume_index: int = count(0, low=0)
    interpolation: str = knob("bilinear", choices=("bilinear", "nearest"))
    intensity: IntensitySchema = field(default_factory=IntensitySchema)
    crop_foreground: CropSchema = field(default_factory=CropSchema)
    series: Any = None
    dicom: DicomSchema = field(default_factory=DicomSchema)
    on_duplicate: str = knob("error", choices=("error", "skip", "keep"))
    on_error: str = knob("stop", choices=("stop", "skip"))
    num_workers: int = count(2, low=0)
    progress: bool = True


@dataclass
class PhantomSchema:
    lesion_probability: float = fraction(0.3)


@dataclass
class DataDemoSchema:
    dataset: str = knob("phantom", choices=("phantom", "brain"))
    n: int = count(100)
    shape: list[int] = knob([64, 64, 64])
    seed: int = 0
    out_dir: str | None = knob(None, kind="out_dir")
    phantom: PhantomSchema = field(default_factory=PhantomSchema)


# ------------------------------------------------------------------------------------ sample
@dataclass
class ContactSheetSchema:
    num_samples: int = count(8, low=0)


@dataclass
class SampleSchema:
    ckpt: str | None = None
    out_dir: str | None = knob(None, kind="out_dir")
    num_samples: int = count(16)
    seed: int = 0
    steps: int | None = count(None)
    eta: float | None = knob(None, low=0.0)
    guidance_scale: float = knob(1.0, low=0.0)
    use_ema: bool = True
    batch_size: int = count(4)
    devices: int = count(1)
    intensity: str = knob("model", choices=("model", "source"))
    dtype: str = knob(
        "float32", choices=("float32", "float16", "float64", "int16", "int32", "uint8", "uint16")
    )
    overwrite: bool = False
    progress: bool = True
    contact_sheet: ContactSheetSchema = field(default_factory=ContactSheetSchema)


# ------------------------------------------------------------------------------------ evaluate
@dataclass
class RadiomicsSchema:
    frd_version: str = knob("v1", choices=("v0", "v1"))
    mask: str = knob("whole", choices=("whole", "foreground"))
    frd_exact: bool = True


@dataclass
class PrdcSchema:
    nearest_k: int = count(5)


@dataclass
class KidSchema:
    degree: int = count(3)
    subset_size: int = count(1000)
    num_subsets: int = count(100)


@dataclass
class MsSsimSchema:
    kernel_size: int = count(7)
    max_pairs: int = count(100)
    batch_size: int = count(8)


@dataclass
class ConfidenceIntervalSchema:
    n_resamples: int = count(200)
    level: float = knob(0.95, low=0.0, high=1.0, low_open=True)


@dataclass
class PerImageSchema:
    foreground_threshold: float = fraction(0.1)
    mask_min_fraction: float = fraction(0.5)


@dataclass
class MemorisationSchema:
    quantile: float = fraction(0.9)
    distance_ratio: float = knob(0.5, low=0.0)
    min_similarity: float = knob(0.9, low=-1.0, high=1.0)
    max_shift: int | None = count(1, low=0)


@dataclass
class EvaluateSchema:
    real_dir: str | None = None
    synthetic_dir: str | None = None
    out_dir: str | None = knob(None, kind="out_dir")
    train_dir: str | None = None
    seed: int = 0
    num_workers: int = 2
    progress: bool = True
    figures: bool = True
    radiomics: RadiomicsSchema = field(default_factory=RadiomicsSchema)
    prdc: PrdcSchema = field(default_factory=PrdcSchema)
    kid: KidSchema = field(default_factory=KidSchema)
    ms_ssim: MsSsimSchema = field(default_factory=MsSsimSchema)
    prepare_inputs: bool = False
    ci: ConfidenceIntervalSchema = field(default_factory=ConfidenceIntervalSchema)
    per_image: PerImageSchema = field(default_factory=PerImageSchema)
    memorisation: MemorisationSchema = field(default_factory=MemorisationSchema)


# ------------------------------------------------------------------------------------ study
@dataclass
class StudyDemoSchema:
    n_phantoms: int = count(16)
    n_cases: int = count(12)


@dataclass
class StudySimulateSchema:
    n_readers: int = count(4)


@dataclass
class StudySchema:
    db: str | None = knob(None, kind="db")
    n_cases: int = count(40)
    repeat_fraction: float = fraction(0.1)
    min_repeat_gap: int = count(3, low=0)
    seed: int = 0
    allow_back: bool = False
    prepare_inputs: bool = False
    role: str = knob("reader", choices=("reader", "admin"))
    modality: str | None = knob(None, choices=("mr", "ct"))
    port: int = knob(8501, low=1, high=65535)
    out_dir: str | None = knob(None, kind="out_dir")
    demo: StudyDemoSchema = field(default_factory=StudyDemoSchema)
    simulate: StudySimulateSchema = field(default_factory=StudySimulateSchema)


# ------------------------------------------------------------------------------------ analyze
@dataclass
class BootstrapSchema:
    n_resamples: int = count(2000)
    confidence_level: float = knob(0.95, low=0.0, high=1.0, low_open=True)
    method: str = knob("percentile", choices=("percentile", "basic", "BCa"))
    seed: int = 0


@dataclass
class AnalyzeSimulateSchema:
    readers: int = count(3)
    repeat_fraction: float = fraction(0.1)
    seed: int = 0


@dataclass
class AnalyzeSchema:
    ratings: str | None = None
    db: str | None = knob(None, kind="db")
    out_dir: str | None = knob(None, kind="out_dir")
    alpha: float = knob(0.05, low=0.0, high=1.0, low_open=True)
    min_cases: int = count(3)
    bootstrap: BootstrapSchema = field(default_factory=BootstrapSchema)
    simulate: AnalyzeSimulateSchema = field(default_factory=AnalyzeSimulateSchema)


# ------------------------------------------------------------------------------------ train
@dataclass
class OptimSchema:
    lr: float = knob(2e-4, low=0.0, low_open=True)
    weight_decay: float = knob(0.0, low=0.0)
    warmup_steps: int = count(100, low=0)
    min_lr_ratio: float = fraction(0.1)


@dataclass
class TrainerSchema:
    precision: Any = knob("auto", choices=lightning_precisions)
    max_steps: int = count(1000)
    num_nodes: int = count(1)
    val_every_n_steps: int = count(200)
    log_every_n_steps: int = count(10)
    accumulate_grad_batches: int = count(1)
    deterministic: bool = False
    benchmark: bool = False


@dataclass
class TrainDataSchema:
    root: str | None = None
    batch_size: int = count(2)
    val_fraction: float = fraction(0.1)
    split_seed: int = 0
    cache: str = knob("memory", choices=("memory", "disk", "none"))
    num_workers: int = count(0, low=0)
    flip_prob: float = fraction(0.0)
    affine_prob: float = fraction(0.0)
    validate_files: bool = True


@dataclass
class TrainSchema:
    seed: int = 0
    ckpt_path: str | None = None
    optim: OptimSchema = field(default_factory=OptimSchema)
    trainer: TrainerSchema = field(default_factory=TrainerSchema)
    data: TrainDataSchema = field(default_factory=TrainDataSchema)


# ------------------------------------------------------------------------------------ utility
@dataclass
class UtilityTrainSchema:
    max_steps: int = count(250)
    batch_size: int = count(4)
    lr: float = knob(3.0e-3, low=0.0, low_open=True)
    weight_decay: float = knob(1.0e-5, low=0.0)
    flip_prob: float = fraction(0.5)


@dataclass
class UtilitySchema:
    out_dir: str | None = knob(None, kind="out_dir")
    test_fraction: float = knob(0.3, low=0.0, high=1.0, low_open=True)
    split_seed: int = 0
    train: UtilityTrainSchema = field(default_factory=UtilityTrainSchema)
    bootstrap: BootstrapSchema = field(default_factory=BootstrapSchema)
    figures: bool = True
    progress: bool = True


#: config name (conf/<name>.yaml) -> schema
SCHEMAS: dict[str, type] = {
    "data_prepare": DataPrepareSchema,
    "data_demo": DataDemoSchema,
    "sample": SampleSchema,
    "evaluate": EvaluateSchema,
    "study": StudySchema,
    "analyze": AnalyzeSchema,
    "utility": UtilitySchema,
    "config": TrainSchema,
}


def register_schemas() -> None:
    """Store every stage's schema in Hydra's ConfigStore (``medsynth_schema/<config name>``)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(group=SCHEMA_GROUP, name=name, node=schema)


def schema_for(config_name: str) -> type | None:
    """The dataclass registered in the ConfigStore for ``config_name`` (None: no schema)."""
    from hydra.core.config_store import ConfigStore

    register_schemas()
    try:
        node = ConfigStore.instance().load(f"{SCHEMA_GROUP}/{config_name}.yaml").node
    except Exception:  # ConfigLoadError: no schema stored under that name
        return None
    return OmegaConf.get_type(node) if node is not None else None


def validate_config(cfg: DictConfig, config_name: str) -> None:
    """Check ``cfg`` against the schema of ``config_name`` (types, then constraints).

    Raises:
        ConfigError: the first key with a wrong type, a value out of range or not allowed, an
            ``out_dir`` that is a file, or a ``db`` that is no database.
    """
    schema = schema_for(config_name)
    if schema is None:
        return
    typed = OmegaConf.structured(schema)
    _open(typed)  # partial schema: keys it does not name pass through
    try:
        merged = OmegaConf.merge(typed, cfg)
    except ValidationError as err:
        raise ConfigError(str(err.full_key or "config"), _type_reason(err)) from None
    _check_constraints(merged, schema, "")


def _open(node: DictConfig) -> None:
    """Allow keys the schema does not name, at every level (structured configs are closed)."""
    OmegaConf.set_struct(node, False)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _open(child)


_TYPE_NAMES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def _type_reason(err: ValidationError) -> str:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    match = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", first)
    if match:
        return f"expected {_TYPE_NAMES.get(match[2], match[2])}, got '{match[1]}'"
    match = re.match(r"Value '(.*)' is not a valid bool", first)
    if match:
        return f"expected true or false, got '{match[1]}'"
    return first


def _check_constraints(cfg: DictConfig, schema: type, prefix: str) -> None:
    for spec in fields(schema):
        key = f"{prefix}{spec.name}"
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
        except OmegaConfBaseException:
            continue  # an interpolation that only resolves inside a running job (e.g. ${now:...})
        nested = spec.default_factory if spec.default_factory is not MISSING else None
        if nested is not None and is_dataclass(nested):
            if value is not None:
                _check_constraints(cfg, nested, f"{key}.")
            continue
        if value is None or value == "???":
            continue
        _check_value(key, value, spec.metadata)


def _check_value(key: str, value: Any, meta) -> None:
    choices = meta.get("choices")
    if choices is not None:
        allowed = [str(c) for c in (choices() if callable(choices) else choices)]
        if str(value) not in allowed:
            raise ConfigError(key, f"unknown value '{value}' (choose from {', '.join(allowed)})")
    low, high = meta.get("low"), meta.get("high")
    if (low is not None or high is not None) and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, f"must be a finite number, got {value}")
        if low is not None and (value <= low if meta.get("low_open") else value < low):
            bound = f"> {low}" if meta.get("low_open") else f">= {low}"
            raise ConfigError(key, f"must be {bound}, got {value}" + _range_text(low, high))
        if high is not None and value > high:
            raise ConfigError(key, f"must be <= {high}, got {value}" + _range_text(low, high))
    kind = meta.get("kind")
    if kind == "out_dir":
        check_out_dir(key, value)
    elif kind == "db":
        check_database(key, str(value))


def _range_text(low, high) -> str:
    return f" (a value in [{low}, {high}])" if low is not None and high is not None else ""


def check_out_dir(key: str, value: object) -> None:
    """An output folder may not exist yet, but must not be an existing file."""
    path = Path(str(value)).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(key, f"{path} exists and is not a folder")


def check_database(key: str, value: str) -> None:
    """``value`` is a SQLAlchemy URL with an installed dialect, or a (new or SQLite) database file."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = value if "://" in value else f"sqlite:///{Path(value).expanduser()}"
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except ArgumentError as err:  # NoSuchModuleError (unknown driver) is an ArgumentError
        drivers = "sqlite:///FILE.db, postgresql+psycopg2://user:pw@host/db, or a file path"
        scheme = value.split("://", 1)[0]
        reason = (
            f"unknown database driver '{scheme}' (use {drivers})"
            if "Can't load plugin" in str(err)
            else f"not a database URL ({' '.join(str(err).split())[:120]})"
        )
        raise ConfigError(key, reason) from None
    except ImportError as err:
        raise ConfigError(key, f"database driver missing for {parsed.drivername}: {err}") from None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if path.is_dir():
        raise ConfigError(key, f"{path} is a folder, not a database file")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            raise ConfigError(key, f"{path} is not a SQLite database (no SQLite header)")
