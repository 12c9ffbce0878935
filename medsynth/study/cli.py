"""``medsynth study <command> key=value ...``: create, add-reader, serve, export, demo, simulate.

Every command opens the database given by ``db=`` and upgrades it to the newest schema first
(Alembic), so a running study survives medsynth upgrades.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medsynth.config import compose_stage, format_defaults, require
from medsynth.errors import ConfigError

COMMANDS = {
    "create": "create a study: balanced real/synthetic cases, opaque ids, questions (db, real_dir, synthetic_dir, n_cases)",
    "add-reader": "add a reader or admin (name, role, expires_days); prints their one-time login token",
    "revoke-reader": "revoke a reader's token at once (name); their answers stay",
    "rotate-token": "issue a new token for a reader (name, expires_days); the old one stops working",
    "serve": "run the Streamlit reader app on the study database (db, port, address)",
    "export": "write ratings.csv for `medsynth analyze` (db, out)",
    "audit": "blinding leak detector: AUC of real vs synthetic from format/metadata and intensity cues (db)",
    "demo": "build a ready-to-click study with one admin and two readers; tokens in out_dir",
    "simulate": "add simulated readers with known skill who answer every case (demos, analysis checks)",
}

DB_ENV = "MEDSYNTH_STUDY_DB"
STUDY_ENV = "MEDSYNTH_STUDY_NAME"
SIGN_IN_ENV = "MEDSYNTH_STUDY_SIGN_IN"  # the `sign_in` backoff settings, JSON


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
        "revoke-reader": cmd_revoke_reader,
        "rotate-token": cmd_rotate_token,
        "serve": cmd_serve,
        "export": cmd_export,
        "audit": cmd_audit,
        "demo": cmd_demo,
        "simulate": cmd_simulate,
    }[command]
    return handler(cfg)


_PREPARE_HINT = " (prepare_inputs=true prepares raw scans like synthetic_dir)"


def prepared_real_dir(cfg: DictConfig, real_dir: Path, synthetic_dir: Path) -> Path:
    """``real_dir``, or with ``prepare_inputs=true`` and no fingerprint there, its scans prepared with
    the synthetic set's fingerprint into ``prepared_dir`` (default ``<real_dir>_prepared``)."""
    from medsynth.data.prepare import prepare_like
    from medsynth.io.fingerprint import read_fingerprint

    reference = read_fingerprint(synthetic_dir, "synthetic_dir")
    if not cfg.get("prepare_inputs") or reference is None or read_fingerprint(real_dir, "real_dir"):
        return real_dir
    target = real_dir.with_name(f"{real_dir.name}_prepared")
    target = Path(str(cfg.prepared_dir)) if cfg.get("prepared_dir") else target
    return prepare_like(real_dir, target, reference, progress=True)


# --------------------------------------------------------------------------- commands
def cmd_create(cfg: DictConfig) -> int:
    from medsynth.io.fingerprint import require_same_fingerprint
    from medsynth.study.creation import create_from_config, volume_files

    real_dir = Path(str(require(cfg, "real_dir")))
    synthetic_dir = Path(str(require(cfg, "synthetic_dir")))
    require(cfg, "db")
    volume_files(real_dir, "real_dir"), volume_files(synthetic_dir, "synthetic_dir")
    # readers must see real and synthetic cases from one preprocessing space (medsynth.io.fingerprint)
    real_dir = prepared_real_dir(cfg, real_dir, synthetic_dir)
    require_same_fingerprint({"synthetic_dir": synthetic_dir, "real_dir": real_dir}, hint=_PREPARE_HINT)
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
    token = StudyService(str(cfg.db)).add_reader(
        str(cfg.study), name, str(cfg.role), int(cfg.min_repeat_gap), expires_days=_expires_days(cfg)
    )
    print(f"{cfg.role} '{name}' added to study '{cfg.study}'{_expiry_text(cfg)}. Login token (shown once, store it safely):")
    print(token)
    return 0


def _expires_days(cfg: DictConfig) -> float | None:
    value = cfg.get("expires_days")
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError("expires_days", f"must be a number of days, got '{value}'") from None


def _expiry_text(cfg: DictConfig) -> str:
    days = _expires_days(cfg)
    return "" if days is None else f" (token expires in {days:g} days)"


def cmd_revoke_reader(cfg: DictConfig) -> int:
    from medsynth.study.service import StudyService

    name = str(require(cfg, "name"))
    StudyService(str(require(cfg, "db"))).revoke_reader(str(cfg.study), name)
    print(f"reader '{name}' of study '{cfg.study}' revoked: their token no longer signs in (answers kept)")
    return 0


def cmd_rotate_token(cfg: DictConfig) -> int:
    from medsynth.study.service import StudyService

    name = str(require(cfg, "name"))
    token = StudyService(str(require(cfg, "db"))).rotate_token(str(cfg.study), name, _expires_days(cfg))
    print(f"new token for '{name}' of study '{cfg.study}'{_expiry_text(cfg)}; the old one no longer works:")
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


def cmd_audit(cfg: DictConfig) -> int:
    """Print the audit; exit 0 when no format/metadata channel leaks, 1 when one does."""
    from medsynth.study.audit import audit_settings, audit_study, format_report
    from medsynth.study.service import StudyService

    service = StudyService(str(require(cfg, "db")))
    result = audit_study(service, str(cfg.study), audit_settings(cfg), progress=True)
    print(format_report(result))
    return 1 if result["leaks"] else 0


def app_path(cfg: DictConfig) -> Path:
    if cfg.app:
        path = Path(str(cfg.app))
    else:
        here = Path(__file__).resolve()
        packaged = here.parents[1] / "_reader_study" / "server.py"
        path = packaged if packaged.is_file() else here.parents[2] / "reader_study" / "server.py"
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
    env[SIGN_IN_ENV] = json.dumps(OmegaConf.to_container(cfg.sign_in, resolve=True))
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
