"""``study create`` from a config: find and check the volumes, draw the study secret, sample the
cases with it, fix the viewer's coding and message length over them (one length for every case),
audit the study's blinding (refusing a leaky study unless ``allow_leaks=true``), store the study and
its cases coded for the viewer.

Used by ``medsynth study create`` and ``medsynth study demo`` (both import this module; neither
imports the other). The steps are separate functions so further checks hook in before
:func:`store_study` (e.g. the preprocessing-fingerprint check).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medsynth.config import config_dir
from medsynth.errors import ConfigError, InputFileError


def volume_files(folder: str | Path, key: str) -> list[Path]:
    """Sorted volume files in ``folder`` (NIfTI, MetaImage, NRRD).

    Raises:
        ConfigError: the folder is missing or holds no volumes.
    """
    from medsynth.data.label_maps import paired_label_files
    from medsynth.data.reading import VOLUME_SUFFIXES

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(key, f"folder {folder} does not exist")
    labels = paired_label_files(folder)  # a paired sample's label maps are not cases
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.endswith(VOLUME_SUFFIXES) and p.name not in labels
    )
    if not files:
        raise ConfigError(key, f"folder {folder} holds no volumes ({', '.join(VOLUME_SUFFIXES)})")
    return files


def questions_path(value: str) -> Path:
    """``questions=`` as a path, or the name of a file in conf/study_questions/."""
    candidate = Path(value).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return config_dir() / "study_questions" / f"{value}.yaml"


def render_settings(cfg: DictConfig) -> dict:
    render = OmegaConf.to_container(cfg.render, resolve=True)
    if len(render["grid"]) != 3 or any(int(g) < 8 for g in render["grid"]):
        raise ConfigError("render.grid", f"must be 3 sizes >= 8, got {render['grid']}")
    if render["default_preset"] not in ("auto", *render["presets"]):
        raise ConfigError("render.default_preset", f"must be auto or one of {', '.join(render['presets'])}")
    return render


def study_modality(cfg: DictConfig, real_dir: Path) -> str:
    """``modality=`` if set, else ``ct`` when real_dir's preprocessing.json says intensity mode ct, else ``mr``.

    Raises:
        ConfigError: an unknown modality.
        InputFileError: real_dir's preprocessing.json is not readable JSON.
    """
    from medsynth.study.administration import MODALITIES

    value = cfg.get("modality")
    if value:
        if str(value) not in MODALITIES:
            raise ConfigError("modality", f"must be one of {', '.join(MODALITIES)}, got '{value}'")
        return str(value)
    record = Path(real_dir) / "preprocessing.json"
    if not record.is_file():
        return "mr"
    try:
        mode = (json.loads(record.read_text()).get("intensity") or {}).get("mode")
    except (ValueError, AttributeError):
        raise InputFileError(record, "not a readable preprocessing.json") from None
    return "ct" if mode == "ct" else "mr"


def synthetic_provenance(folder: Path) -> tuple[dict[str, str], str | None]:
    """(file -> model name, checkpoint) from a `medsynth sample` manifest.csv when present."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        return {}, None
    import pandas as pd

    try:
        frame = pd.read_csv(manifest)
    except Exception as err:  # pandas raises several types for broken CSVs
        raise InputFileError(manifest, f"not a readable CSV ({' '.join(str(err).split())[:120]})") from None
    checkpoint = None
    if "checkpoint" in frame and frame["checkpoint"].notna().any():
        checkpoint = str(frame["checkpoint"].dropna().iloc[0])
    models = {}
    if "model" in frame and "file" in frame:
        models = {
            str((folder / f).resolve()): str(m) for f, m in zip(frame["file"], frame["model"], strict=True)
        }
    return models, checkpoint


def check_cases(paths: list[str], render: dict, progress: bool = True) -> None:
    """Every chosen case must load through the display preprocessing before the study exists."""
    from rich.progress import track

    from medsynth.study.rendering import load_display_volume

    for path in track(paths, description="checking cases", disable=not progress, transient=True):
        load_display_volume(path, [8, 8, 8], render.get("rescale_from_unit"))


def create_from_config(
    cfg: DictConfig, real_dir: Path, synthetic_dir: Path, n_cases: int, progress: bool = True
) -> int:
    """Sample (with a fresh study secret), validate and store the study's cases; returns the study id."""
    from medsynth.study.assignment import new_study_secret, sample_balanced, secret_seed, storage_order
    from medsynth.study.questions import load_questions
    from medsynth.study.service import StudyService
    from medsynth.study.viewer_payload import viewer_settings

    questions = load_questions(questions_path(str(cfg.questions)))
    render = render_settings(cfg)
    modality = study_modality(cfg, real_dir)
    real = [str(p) for p in volume_files(real_dir, "real_dir")]
    synthetic = [str(p) for p in volume_files(synthetic_dir, "synthetic_dir")]
    secret = new_study_secret()
    pick_real, pick_syn = sample_balanced(real, synthetic, int(n_cases), secret_seed(secret, "cases"))
    models, checkpoint = synthetic_provenance(Path(synthetic_dir))
    check_cases(pick_real + pick_syn, render, progress)
    render["viewer"] = viewer_settings(pick_real + pick_syn, render, modality, progress)  # before the audit sees it
    entries = [(p, 0) for p in pick_real] + [(p, 1) for p in pick_syn]
    stored = [entries[i] for i in storage_order(len(entries), secret)]
    result = audit_planned(cfg, stored, render, secret, progress)
    service = StudyService(str(cfg.db))
    study_id = service.create_study(
        name=str(cfg.study), real_files=pick_real, synthetic_files=pick_syn, questions=questions,
        render=render, seed=int(cfg.seed), repeat_fraction=float(cfg.repeat_fraction),
        allow_back=bool(cfg.allow_back), model=cfg.model, checkpoint=cfg.checkpoint or checkpoint,
        models={k: v for k, v in models.items() if k in {str(Path(p).resolve()) for p in pick_syn}},
        secret=secret, modality=modality, audit=result,
    )  # fmt: skip
    service.settle_viewer(study_id, progress)  # every case coded once for the viewer, stored
    return study_id


def audit_planned(
    cfg: DictConfig, stored: list[tuple[str, int]], render: dict, secret: str, progress: bool = True
) -> dict:
    """Audit the study before it exists (cases in storage order, hypothetical readers' orders).

    Raises:
        BlindingLeak: a format/metadata channel leaks and ``allow_leaks`` is false.
    """
    from medsynth.study.audit import (
        AuditInput,
        BlindingLeak,
        audit,
        audit_settings,
        leak_line,
        planned_showings,
    )

    settings = audit_settings(cfg)
    data = AuditInput([p for p, _ in stored], [t for _, t in stored])
    data.showings = planned_showings(
        len(stored), secret, float(cfg.repeat_fraction), settings["min_repeat_gap"], int(settings["readers"])
    )
    result = audit(data, render, settings, progress)
    if result["leaks"] and not bool(cfg.allow_leaks):
        raise BlindingLeak(leak_line(result))
    return result
