"""``medsynth data prepare``: check every input, then preprocess in parallel with atomic writes.

1. discover the inputs (folder, CSV manifest, Decathlon json, DICOM series folders, one file);
2. check every volume not already done (read, geometry, dimensions, finite values, usable range);
   with ``on_error=stop`` any bad file stops the run before anything is written, each bad file
   on its own line; with ``on_error=skip`` they go to ``skipped.csv``;
3. preprocess the good ones over ``num_workers`` processes; each output is written to a temporary
   name and renamed, with a small record in ``out_dir/.medsynth-prepare/`` so a rerun skips the
   files already done with the same settings and the same source;
4. write ``manifest.csv`` and ``preprocessing.json`` (contracts in conf/data_prepare.yaml).

Label maps (a manifest ``label`` column naming files, or Decathlon ``label`` keys) are checked in
step 2 (same grid as the image, integer values within ``label_map.num_classes``) and written in
step 3 as ``labels/<subject_id>.nii.gz`` (uint8, nearest-neighbour, the image's affine); the
manifest's ``label`` column then names them relative to ``out_dir``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from medsynth import __version__
from medsynth.config import require
from medsynth.data.discovery import SourceItem, discover, discovery_options
from medsynth.data.label_maps import LABEL_DIR, LabelMapSettings, check_label_map
from medsynth.data.preprocessing import PreprocessSettings, intensity_window, preprocess_pair, select_volume
from medsynth.data.progress import progress_bar
from medsynth.data.validation import load_checked_item, load_checked_volume
from medsynth.data.writing import write_label_nifti, write_nifti
from medsynth.errors import ConfigError, InputFileError, MedsynthError
from medsynth.io.atomic import atomic_write_text, remove_stale_temporaries
from medsynth.io.fingerprint import fingerprint_of

RECORD_DIR = ".medsynth-prepare"
PREPROCESSING_VERSION = 1
ON_ERROR = ("stop", "skip")


class BadInputsError(MedsynthError):
    """Some inputs are unusable and ``on_error=stop``: the per-file lines were already printed."""


def settings_hash(settings: PreprocessSettings, labels: LabelMapSettings | None = None) -> str:
    """Short hash of everything that changes an output volume (and its label map)."""
    text = json.dumps(settings.as_dict(), sort_keys=True) + __version__
    if labels is not None:
        text += json.dumps(labels.as_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_signature(path: Path) -> str:
    """Size + modification time of a file, or of every file in a DICOM folder (changes when the source does)."""
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    except OSError:
        return ""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _record_path(out_dir: Path, subject_id: str) -> Path:
    return out_dir / RECORD_DIR / f"{subject_id}.json"


def finished_row(item: SourceItem, out_dir: Path, digest: str) -> dict | None:
    """The manifest row of an output already prepared from the same source with the same settings."""
    record_file = _record_path(out_dir, item.subject_id)
    if not record_file.is_file() or not (out_dir / f"{item.subject_id}.nii.gz").is_file():
        return None
    try:
        record = json.loads(record_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("settings_hash") != digest or record.get("source_signature") != source_signature(
        item.source
    ):
        return None
    if item.label is not None and (
        record.get("label_signature") != source_signature(item.label)
        or not (out_dir / LABEL_DIR / f"{item.subject_id}.nii.gz").is_file()
    ):
        return None
    return record.get("row")


def check_item(
    item: SourceItem, settings: PreprocessSettings, labels: LabelMapSettings | None = None
) -> str | None:
    """Why ``item`` cannot be prepared (``"<path>: <reason>"``), or None if it can."""
    if item.problem:
        return str(InputFileError(item.source, item.problem))
    try:
        volume = load_checked_item(item)
        array, _ = select_volume(volume, settings.volume_index)
        low, high = intensity_window(array, settings)
        if not high > low:
            raise InputFileError(
                item.source, f"constant image (all voxels {low:g}), no intensity range to normalise"
            )
        if item.label is not None:
            check_label_map(volume, load_checked_volume(item.label), labels or LabelMapSettings())
    except InputFileError as err:
        return str(err)
    return None


def process_item(
    item: SourceItem,
    settings: PreprocessSettings,
    out_dir: Path,
    digest: str,
    labels: LabelMapSettings | None = None,
) -> tuple[dict, list[str]]:
    """Preprocess one volume (and its label map), write them and the record atomically; return (row, warnings)."""
    volume = load_checked_item(item)
    label = None
    if item.label is not None:
        label = check_label_map(volume, load_checked_volume(item.label), labels or LabelMapSettings())
    array, label_out, affine, low, high, warnings = preprocess_pair(volume, label, settings)
    warnings = [*volume.warnings, *warnings]
    file_name = f"{item.subject_id}.nii.gz"
    write_nifti(out_dir / file_name, array, affine)
    row = {
        "file": file_name,
        "subject_id": item.subject_id,
        "source": str(item.source),
        "intensity_low": low,
        "intensity_high": high,
        **item.columns,
    }
    record = {"settings_hash": digest, "source_signature": source_signature(item.source), "row": row}
    if label_out is not None:
        label_file = f"{LABEL_DIR}/{item.subject_id}.nii.gz"
        write_label_nifti(out_dir / label_file, label_out, affine)
        row[(labels or LabelMapSettings()).column] = label_file
        record["label_signature"] = source_signature(item.label)
    atomic_write_text(_record_path(out_dir, item.subject_id), json.dumps(record, default=str))
    return row, warnings


def _worker_init() -> None:
    """One torch thread per process: parallelism is over files (threads on 64^3 ops only contend)."""
    import torch

    torch.set_num_threads(1)


def run_parallel(
    fn: Callable, jobs: Sequence[tuple], pool: ProcessPoolExecutor | None, label: str, show: bool
) -> list:
    """``[fn(*job) for job in jobs]`` in ``pool`` (or here when None), in order, with a progress bar.

    Exceptions other than InputFileError propagate (a bug); InputFileError is returned in place.
    """
    results: list = [None] * len(jobs)
    if not jobs:
        return results
    with progress_bar(show) as bar:
        task = bar.add_task(label, total=len(jobs))
        if pool is None or len(jobs) == 1:
            for i, job in enumerate(jobs):
                results[i] = _call(fn, job)
                bar.advance(task)
            return results
        futures = {pool.submit(_call, fn, job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.advance(task)
    return results


@contextlib.contextmanager
def worker_pool(workers: int, n_jobs: int) -> Iterator[ProcessPoolExecutor | None]:
    """A process pool shared by the check and write passes (None: run in this process).

    torch and MONAI are imported before the pool forks, so workers start without re-importing them.
    """
    if workers <= 1 or n_jobs <= 1:
        yield None
        return
    import monai.transforms  # noqa: F401  (warm import inherited by forked workers)

    with ProcessPoolExecutor(max_workers=min(workers, n_jobs), initializer=_worker_init) as pool:
        yield pool


def _call(fn: Callable, job: tuple):
    try:
        return fn(*job)
    except InputFileError as err:
        return err


def preprocessing_record(
    settings: PreprocessSettings, input_path: Path, labels: LabelMapSettings | None = None
) -> dict:
    """Content of preprocessing.json (the prepared-dataset contract), with its ``fingerprint``
    block (:mod:`medsynth.io.fingerprint`) that checkpoints and ``sample`` outputs carry on, and a
    ``label_map`` block when label maps were prepared (not part of the fingerprint)."""
    record = {
        "version": PREPROCESSING_VERSION,
        "shape": list(settings.shape),
        "spacing": list(settings.spacing),
        "orientation": "RAS",
        "intensity": settings.intensity_record(),
        "volume_index": settings.volume_index,
        "interpolation": settings.interpolation,
        "crop_foreground": {
            "enabled": settings.crop_foreground,
            "threshold": settings.foreground_threshold,
            "margin_mm": settings.margin_mm,
        },
        "input": str(input_path),
        "medsynth_version": __version__,
    }
    record["fingerprint"] = fingerprint_of(record)
    if labels is not None:
        record["label_map"] = {
            "column": labels.column,
            "dir": LABEL_DIR,
            "interpolation": "nearest",
            "dtype": "uint8",
            "num_classes": labels.num_classes,
        }
    return record


def overrides_from_fingerprint(fingerprint: dict) -> list[str]:
    """``data prepare`` overrides that reproduce a fingerprint (``prepare_inputs=true`` of evaluate)."""
    intensity, crop = fingerprint["intensity"], fingerprint["crop_foreground"]
    mode = str(intensity["mode"])
    keys = {"mr": ("lower_percentile", "upper_percentile"), "ct": ("window_low", "window_high")}
    return [
        f"shape=[{','.join(str(int(s)) for s in fingerprint['shape'])}]",
        f"spacing=[{','.join(repr(float(s)) for s in fingerprint['spacing'])}]",
        f"intensity.mode={mode}",
        *(f"intensity.{mode}.{key}={float(intensity[key])!r}" for key in keys.get(mode, ("low", "high"))),
        f"crop_foreground.enabled={str(bool(crop['enabled'])).lower()}",
        f"crop_foreground.threshold={float(crop['threshold'])!r}",
        f"crop_foreground.margin_mm={float(crop['margin_mm'])!r}",
    ]


def observed_classes(out_dir: Path, rows: list[dict], column: str) -> int:
    """1 + the largest label value over the prepared label maps named in ``rows``."""
    import nibabel as nib
    import numpy as np

    largest = 0
    for row in rows:
        name = row.get(column)
        if isinstance(name, str) and name:
            largest = max(largest, int(np.max(np.asarray(nib.load(str(out_dir / name)).dataobj))))
    return largest + 1


def prepare_like(
    source: Path, target: Path, fingerprint: dict, num_workers: int = 1, progress: bool = True
) -> Path:
    """Prepare the raw scans in ``source`` into ``target`` with ``fingerprint``'s settings (the
    ``prepare_inputs=true`` of evaluate and study create); a rerun skips finished files."""
    from medsynth.config import compose_stage

    overrides = [f"input={source}", f"out_dir={target}", f"num_workers={max(1, int(num_workers))}"]
    overrides += [f"progress={str(bool(progress)).lower()}", *overrides_from_fingerprint(fingerprint)]
    prepare_dataset(compose_stage("data_prepare", overrides))
    return target


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def prepare_dataset(cfg: DictConfig) -> dict:
    """Run the whole stage; return counts {prepared, already_done, skipped, total}.

    Raises:
        BadInputsError: bad inputs with ``on_error=stop`` (each already printed on its own line).
        InputFileError / ConfigError: a problem with the input as a whole or with the config.
    """
    input_path = Path(str(require(cfg, "input")))
    out_dir = Path(str(require(cfg, "out_dir")))
    on_error = str(cfg.on_error)
    if on_error not in ON_ERROR:
        raise ConfigError("on_error", f"expected stop or skip, got '{on_error}'")
    if input_path.exists() and input_path.resolve() == out_dir.resolve():
        raise ConfigError("out_dir", "must differ from input (prepared files would overwrite the sources)")
    settings = PreprocessSettings.from_config(cfg)
    labels = LabelMapSettings.from_config(cfg)
    digest = settings_hash(settings, labels)
    workers = max(1, int(cfg.num_workers))
    show = bool(cfg.progress)

    items = discover(
        input_path,
        list(cfg.manifest.path_columns),
        str(cfg.decathlon_section),
        exclude=[out_dir],
        label_column=labels.column,
        **discovery_options(cfg),
    )
    done = (
        {item.subject_id: finished_row(item, out_dir, digest) for item in items} if out_dir.is_dir() else {}
    )
    pending = [item for item in items if done.get(item.subject_id) is None]

    with worker_pool(workers, len(pending)) as pool:
        problems = run_parallel(
            check_item, [(item, settings, labels) for item in pending], pool, "checking", show
        )
        bad = [(item, str(problem)) for item, problem in zip(pending, problems, strict=True) if problem]
        if bad and on_error == "stop":
            for _, line in bad:
                _say(f"medsynth data prepare: bad input: {line}")
            raise BadInputsError(
                f"{len(bad)} of {len(items)} input(s) unusable; nothing written (on_error=skip prepares the rest)"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)
        remove_stale_temporaries(out_dir / RECORD_DIR)
        if any(item.label is not None for item in items):
            (out_dir / LABEL_DIR).mkdir(exist_ok=True)
            remove_stale_temporaries(out_dir / LABEL_DIR)
        bad_ids = {item.subject_id for item, _ in bad}
        todo = [item for item in pending if item.subject_id not in bad_ids]
        jobs = [(item, settings, out_dir, digest, labels) for item in todo]
        outcomes = run_parallel(process_item, jobs, pool, "preparing", show)
    rows_by_id = {sid: row for sid, row in done.items() if row is not None}
    prepared = 0
    for item, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, InputFileError):
            if on_error == "stop":
                raise outcome
            bad.append((item, str(outcome)))
            continue
        row, warnings = outcome
        for warning in warnings:
            _say(f"medsynth data prepare: warning: {warning}")
        rows_by_id[item.subject_id] = row
        prepared += 1

    if on_error == "skip":
        skipped = pd.DataFrame(
            [{"path": str(item.source), "subject_id": item.subject_id, "reason": line} for item, line in bad],
            columns=["path", "subject_id", "reason"],
        )
        atomic_write_text(out_dir / "skipped.csv", skipped.to_csv(index=False))
        for _, line in bad:
            _say(f"medsynth data prepare: skipped: {line}")
    rows = [rows_by_id[item.subject_id] for item in items if item.subject_id in rows_by_id]
    if not rows:
        raise InputFileError(input_path, "no usable volume (see skipped.csv)")
    atomic_write_text(out_dir / "manifest.csv", pd.DataFrame(rows).to_csv(index=False))
    has_labels = any(item.label is not None for item in items)
    record = preprocessing_record(settings, input_path, labels if has_labels else None)
    if has_labels and labels.num_classes is None:  # record the classes seen, for label_map_classes=auto
        record["label_map"]["num_classes"] = observed_classes(out_dir, rows, labels.column)
    atomic_write_text(out_dir / "preprocessing.json", json.dumps(record, indent=2) + "\n")
    return {
        "prepared": prepared,
        "already_done": len(items) - len(pending),
        "skipped": len(bad),
        "total": len(items),
    }


def run_prepare(cfg: DictConfig) -> int:
    """CLI body: prepare and print a one-line summary."""
    import torch

    start = time.perf_counter()
    threads = torch.get_num_threads()
    _worker_init()
    try:
        counts = prepare_dataset(cfg)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    print(
        f"prepared {counts['prepared']} volume(s), {counts['already_done']} already done, "
        f"{counts['skipped']} skipped, into {cfg.out_dir} in {seconds:.1f} s"
    )
    return 0
