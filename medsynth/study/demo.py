"""``medsynth study demo``: a ready-to-click study with one admin and two readers.

Real cases come from ``real_dir`` (e.g. ``medsynth data demo`` output) or freshly made phantoms.
Synthetic cases come from ``synthetic_dir`` (e.g. ``medsynth sample`` output) or, without one,
from degraded copies (Gaussian blur + noise) of real volumes that are not themselves in the study,
so no subject appears twice. Tokens go to ``<out_dir>/tokens.txt`` (mode 0600). The blinding audit
runs as in ``study create`` but a demo reports a leak instead of refusing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from rich.progress import track

from medsynth.errors import ConfigError
from medsynth.io.atomic import atomic_path, remove_stale_temporaries

TOKENS_FILE = "tokens.txt"


def write_private_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically to ``path`` with permissions 0600 from the first byte on."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    os.chmod(path, 0o600)
    return path


def make_phantoms(folder: Path, n: int, shape: tuple[int, int, int], seed: int) -> list[Path]:
    """Write ``n`` phantom volumes into ``folder`` with the data stage's demo generator
    (``medsynth data demo dataset=phantom``: same files, same bytes, no label maps)."""
    from medsynth.config import compose_stage
    from medsynth.data.demo import build_demo as build_data_demo

    cfg = compose_stage(
        "data_demo",
        ["dataset=phantom", f"n={int(n)}", f"shape=[{','.join(str(int(s)) for s in shape)}]", f"seed={int(seed)}",
         "label_maps=false", "subject_prefix=phantom"],
    )  # fmt: skip
    cfg.out_dir = str(folder)
    manifest = build_data_demo(cfg, progress=False)
    return [folder / name for name in manifest["file"]]


def degrade(
    sources: list[Path], folder: Path, blur_sigma: float, noise_sigma: float, seed: int
) -> list[Path]:
    """Blurred, noisier copies of ``sources`` (same geometry) named ``degraded_XXXX.nii.gz``."""
    import nibabel as nib
    from scipy import ndimage

    from medsynth.data.validation import load_checked_volume

    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    rng = np.random.default_rng(seed)
    paths = []
    for i, source in enumerate(track(sources, description="degrading copies", transient=True)):
        volume = load_checked_volume(source)
        array = ndimage.gaussian_filter(np.asarray(volume.array, dtype=np.float32), sigma=blur_sigma)
        scale = float(np.percentile(np.abs(array), 99)) or 1.0
        array = array + rng.normal(0.0, noise_sigma * scale, size=array.shape).astype(np.float32)
        path = folder / f"degraded_{i:04d}.nii.gz"
        with atomic_path(path) as tmp:
            nib.save(nib.Nifti1Image(array.astype(np.float32), volume.affine), str(tmp))
        paths.append(path)
    return paths


def report_audit(service, study: str) -> None:
    """Print the blinding audit's verdict (and which channels leak) of the demo study."""
    from sqlalchemy import select

    from medsynth.study.db import read_session
    from medsynth.study.models import Study

    with read_session(service.factory) as s:
        result = s.scalar(select(Study.audit).where(Study.name == study))
    if result and result["leaks"]:
        from medsynth.study.audit import leak_line

        print(f"blinding audit: LEAK ({leak_line(result)}); `study create` would refuse this study")
    elif result:
        groups = result["groups"]
        print(f"blinding audit: ok (format AUC {groups['format']['auc']:.2f}, intensity AUC "
              f"{groups['intensity']['auc']:.2f}; details: medsynth study audit db=...)")  # fmt: skip


def build_demo(cfg: DictConfig) -> Path:
    """Build the demo study; returns the tokens file path. Prints how to open it."""
    from medsynth.study.creation import create_from_config, volume_files
    from medsynth.study.db import normalise_url
    from medsynth.study.service import StudyService

    out_dir = Path(str(cfg.out_dir)).expanduser().resolve()
    if cfg.synthetic_dir:  # the same check as `study create`: both sets in one preprocessing space
        from medsynth.io.fingerprint import require_same_fingerprint

        require_same_fingerprint({"synthetic_dir": cfg.synthetic_dir, "real_dir": cfg.real_dir or out_dir / "real"})
    out_dir.mkdir(parents=True, exist_ok=True)
    db = str(cfg.db) if cfg.db else f"sqlite:///{out_dir / 'study.db'}"
    demo = cfg.demo
    n_cases = int(demo.n_cases)
    service = StudyService(db)
    if str(cfg.study) in service.study_names():
        raise ConfigError(
            "study", f"a study named '{cfg.study}' exists already in {db} (use another db= or study=)"
        )
    if cfg.real_dir:
        real_files = volume_files(cfg.real_dir, "real_dir")
    else:
        real_files = make_phantoms(out_dir / "real", int(demo.n_phantoms), tuple(demo.shape), int(cfg.seed))
    if cfg.synthetic_dir:
        real_dir, synthetic_dir = Path(str(cfg.real_dir or out_dir / "real")), Path(str(cfg.synthetic_dir))
    else:
        rng = np.random.default_rng(int(cfg.seed))
        order = [real_files[i] for i in rng.permutation(len(real_files))]
        n_syn = n_cases - n_cases // 2
        if len(order) < n_cases:
            raise ConfigError("demo.n_cases", f"needs {n_cases} real volumes to split, found {len(order)}")
        keep, to_degrade = order[: len(order) - n_syn], order[len(order) - n_syn :]
        synthetic_dir = out_dir / "degraded"
        degrade(to_degrade, synthetic_dir, float(demo.blur_sigma), float(demo.noise_sigma), int(cfg.seed))
        real_dir = out_dir / "real_cases"
        real_dir.mkdir(exist_ok=True)
        for path in keep:  # the study's real pool: links to the volumes that were not degraded
            link = real_dir / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    cfg_db = cfg.copy()
    cfg_db.db = db
    if not cfg.synthetic_dir and not cfg.model:
        cfg_db.model = "degraded-copy"
    cfg_db.allow_leaks = True  # a demo is for trying the tool: it reports a leak instead of refusing
    create_from_config(cfg_db, real_dir, synthetic_dir, n_cases)
    report_audit(service, str(cfg.study))
    lines = ["# medsynth reader-study demo: login tokens (keep private)", f"# db: {normalise_url(db)}"]
    lines.append(f"{demo.admin}\tadmin\t{service.add_reader(str(cfg.study), str(demo.admin), 'admin')}")
    for name in demo.readers:
        lines.append(
            f"{name}\treader\t{service.add_reader(str(cfg.study), str(name), 'reader', int(cfg.min_repeat_gap))}"
        )
    tokens = write_private_text(out_dir / TOKENS_FILE, "\n".join(lines) + "\n")
    print(f"demo study '{cfg.study}' ready: {n_cases} cases, 1 admin, {len(demo.readers)} readers, db {db}")
    print("open it with:")
    print(f"  medsynth study serve db={db} port={int(cfg.port)}")
    print(f"  then browse http://{cfg.address}:{int(cfg.port)} and sign in with a token from {tokens}")
    return tokens
