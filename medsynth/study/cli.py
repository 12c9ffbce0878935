"""``medsynth study <command> key=value ...``: create, add-reader, serve, export, demo, simulate.

Every command opens the database given by ``db=`` and upgrades it to the newest schema first
(Alembic), so a running study survives medsynth upgrades.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medsynth.config import compose_stage, config_dir, format_defaults, require
from medsynth.errors import ConfigError, InputFileError

COMMANDS = {
    "create": "create a study: balanced real/synthetic cases, opaque ids, questions (db, real_dir, synthetic_dir, n_cases)",
    "add-reader": "add a reader or admin (name, role); prints their one-time login token",
    "serve": "run the Streamlit reader app on the study database (db, port, address)",
    "export": "write ratings.csv for `medsynth analyze` (db, out)",
    "demo": "build a ready-to-click study with one admin and two readers; tokens in out_dir",
    "simulate": "add simulated readers with known skill who answer every case (demos, analysis checks)",
}

DB_ENV = "MEDSYNTH_STUDY_DB"
STUDY_ENV = "MEDSYNTH_STUDY_NAME"


def format_help(command: str | None = None) -> str:
    lines = ["usage: medsynth study <command> [key=value ...]", ""]
    if command is None:
        lines.append("Blinded reader study: clinicians rate real and synthetic scans in the browser.")
        lines.append("")
        lines.append("commands:")
        width = max(map(len, COMMANDS))
        lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    else:
        lines.append(f"medsynth study {command}: {COMMANDS[command]}")
    lines += ["", "defaults (conf/study.yaml):", format_defaults("study")]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(format_help())
        return 0
    command, overrides = argv[0], argv[1:]
    if command not in COMMANDS:
        raise ConfigError("command", f"unknown study command '{command}' (choose from {', '.join(COMMANDS)})")
    if any(a in ("-h", "--help") for a in overrides):
        print(format_help(command))
        return 0
    cfg = compose_stage("study", overrides)
    handler = {
        "create": cmd_create,
        "add-reader": cmd_add_reader,
        "serve": cmd_serve,
        "export": cmd_export,
        "demo": cmd_demo,
        "simulate": cmd_simulate,
    }[command]
    return handler(cfg)


# --------------------------------------------------------------------------- helpers
def volume_files(folder: str | Path, key: str) -> list[Path]:
    """Sorted volume files in ``folder`` (NIfTI, MetaImage, NRRD).

    Raises:
        ConfigError: the folder is missing or holds no volumes.
    """
    from medsynth.data.reading import VOLUME_SUFFIXES

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(key, f"folder {folder} does not exist")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.endswith(VOLUME_SUFFIXES)
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


def create_from_config(
    cfg: DictConfig, real_dir: Path, synthetic_dir: Path, n_cases: int, progress: bool = True
) -> int:
    """Sample, validate and store the study's cases; returns the study id."""
    from medsynth.study.assignment import sample_balanced
    from medsynth.study.questions import load_questions
    from medsynth.study.rendering import load_display_volume
    from medsynth.study.service import StudyService

    questions = load_questions(questions_path(str(cfg.questions)))
    render = render_settings(cfg)
    real = [str(p) for p in volume_files(real_dir, "real_dir")]
    synthetic = [str(p) for p in volume_files(synthetic_dir, "synthetic_dir")]
    pick_real, pick_syn = sample_balanced(real, synthetic, int(n_cases), int(cfg.seed))
    models, checkpoint = synthetic_provenance(Path(synthetic_dir))
    # every chosen case must load through the same display preprocessing before the study exists
    from rich.progress import track

    for path in track(
        pick_real + pick_syn, description="checking cases", disable=not progress, transient=True
    ):
        load_display_volume(path, [8, 8, 8], render.get("rescale_from_unit"))
    service = StudyService(str(cfg.db))
    return service.create_study(
        name=str(cfg.study),
        real_files=pick_real,
        synthetic_files=pick_syn,
        questions=questions,
        render=render,
        seed=int(cfg.seed),
        repeat_fraction=float(cfg.repeat_fraction),
        allow_back=bool(cfg.allow_back),
        model=cfg.model,
        checkpoint=cfg.checkpoint or checkpoint,
        models={k: v for k, v in models.items() if k in {str(Path(p).resolve()) for p in pick_syn}},
    )


# --------------------------------------------------------------------------- commands
def cmd_create(cfg: DictConfig) -> int:
    real_dir = Path(str(require(cfg, "real_dir")))
    synthetic_dir = Path(str(require(cfg, "synthetic_dir")))
    require(cfg, "db")
    from medsynth.io.fingerprint import require_same_fingerprint

    volume_files(real_dir, "real_dir"), volume_files(synthetic_dir, "synthetic_dir")
    # readers must see real and synthetic cases from one preprocessing space (medsynth.io.fingerprint)
    require_same_fingerprint({"synthetic_dir": synthetic_dir, "real_dir": real_dir})
    create_from_config(cfg, real_dir, synthetic_dir, int(cfg.n_cases))
    n_real = int(cfg.n_cases) // 2
    print(
        f"study '{cfg.study}' created in {cfg.db}: {n_real} real + {int(cfg.n_cases) - n_real} synthetic cases, "
        f"repeat_fraction={cfg.repeat_fraction}. Next: medsynth study add-reader db={cfg.db} name=NAME role=reader"
    )
    return 0


def cmd_add_reader(cfg: DictConfig) -> int:
    from medsynth.study.service import StudyService

    require(cfg, "db")
    name = str(require(cfg, "name"))
    token = StudyService(str(cfg.db)).add_reader(str(cfg.study), name, str(cfg.role), int(cfg.min_repeat_gap))
    print(f"{cfg.role} '{name}' added to study '{cfg.study}'. Login token (shown once, store it safely):")
    print(token)
    return 0


def cmd_export(cfg: DictConfig) -> int:
    from sqlalchemy import select

    from medsynth.study.db import read_session
    from medsynth.study.export import ratings_frame, write_ratings_csv
    from medsynth.study.models import Study
    from medsynth.study.service import StudyService

    service = StudyService(str(require(cfg, "db")))
    with read_session(service.factory) as s:
        study = s.scalar(select(Study).where(Study.name == str(cfg.study)))
        if study is None:
            raise ConfigError("study", f"no study named '{cfg.study}' in {cfg.db}")
        frame = ratings_frame(s, study.id)
    out = write_ratings_csv(frame, str(cfg.out))
    print(f"{len(frame)} ratings from {frame['reader_id'].nunique()} readers written to {out}")
    return 0


def app_path(cfg: DictConfig) -> Path:
    if cfg.app:
        path = Path(str(cfg.app))
    else:
        here = Path(__file__).resolve()
        packaged = here.parents[1] / "_reader_study" / "app.py"
        path = packaged if packaged.is_file() else here.parents[2] / "reader_study" / "app.py"
    if not path.is_file():
        raise ConfigError("app", f"Streamlit app not found at {path}")
    return path


def streamlit_command(cfg: DictConfig) -> list[str]:
    """The ``streamlit run`` command line for the app, headless, with the configured theme."""
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path(cfg)),
        "--server.port", str(int(cfg.port)), "--server.address", str(cfg.address),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    for key, value in OmegaConf.to_container(cfg.theme, resolve=True).items():
        command += [f"--theme.{key}", str(value)]
    return command


def serve_env(cfg: DictConfig) -> dict[str, str]:
    from medsynth.study.db import normalise_url

    env = dict(os.environ)
    env[DB_ENV] = normalise_url(str(cfg.db))
    env[STUDY_ENV] = str(cfg.study)
    return env


def cmd_serve(cfg: DictConfig) -> int:
    from medsynth.study.service import StudyService

    names = StudyService(str(require(cfg, "db"))).study_names()
    if not names:
        raise ConfigError("db", f"{cfg.db} holds no study yet (run `medsynth study create` or `demo` first)")
    print(
        f"serving {cfg.db} at http://{cfg.address}:{int(cfg.port)}  (Ctrl-C stops; answers are saved at once)"
    )
    sys.stdout.flush()
    command = streamlit_command(cfg)
    # replace this process with Streamlit so that signals (Ctrl-C, SIGTERM from a supervisor) reach it
    os.execve(command[0], command, serve_env(cfg))
    return 0  # pragma: no cover - execve does not return


def cmd_demo(cfg: DictConfig) -> int:
    from medsynth.study.demo import build_demo

    build_demo(cfg)
    return 0


def cmd_simulate(cfg: DictConfig) -> int:
    from medsynth.study.simulate import simulate_from_config

    summary = simulate_from_config(cfg)
    print(summary)
    return 0
