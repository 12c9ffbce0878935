"""``medsynth study audit``: a blinding leak detector.

For every showing it computes what a reader could use *without judging anatomy*, through a
registry of small channel functions in two groups:

- ``format`` (format and metadata): payload byte sizes per plane, the opaque id, the position in
  the order, the repeat pattern, the auto-window values, the server render time;
- ``intensity`` (global intensity cues): histogram moments and percentiles of the rendered slices,
  the background noise level.

A cross-validated logistic regression (scikit-learn; folds grouped by case so repeats never sit on
both sides) predicts real vs synthetic from each channel and from each group; the case-level ROC
AUC of the out-of-fold scores gets a case-bootstrap confidence interval. A ``format`` channel whose interval lies above
``refuse_lower_ci`` is a leak when it also tells more than the image a reader judges: it differs
grossly between the sets (standardised mean difference >= ``gross_effect``, e.g. raw units against
model units [-1, 1]), or its AUC is significant (one-sided Mann-Whitney on the case scores,
Bonferroni over the format channels, < ``alpha``) and exceeds the intensity group's (what the
rendered pixels themselves show) by at least ``margin``. Tiny studies (4 + 4 cases) can therefore
only be refused for gross differences: chance alone separates 4 + 4 cases perfectly 1 time in 70. A noisier synthetic set also makes bigger lossless PNGs and
other auto windows, by a few standard deviations: that is the image, not a leak (measured in
docs/study.md). ``study create`` refuses a leaky study unless ``allow_leaks=true``.
Intensity cues are reported with a hint, never refused (they may be a real realism difference).
No reference tool (Grand Challenge, OHIF, reader-study packages) audits blinding, hence this module.

Adding a channel (e.g. the bytes a browser-side viewer sends per case)::

    @channel("viewer_payload_bytes", group="format")
    def _viewer_bytes(case: CaseRender) -> dict[str, float]:
        return {"bytes": float(len(my_payload(case.volume)))}

Notation: a *case* is one volume of the study; a *showing* is one position of one reader's order
(a repeated case has two showings). Case channels see :class:`CaseRender` (the (X, Y, Z) display
volume every reader gets, its rendered PNG slices); showing channels see :class:`ShowingInfo`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from medsynth.errors import ConfigError, MedsynthError
from medsynth.study.rendering import PLANES, auto_window, load_display_volume, render_png, resolve_window

GROUPS = ("format", "intensity")


class BlindingLeak(MedsynthError):
    """``study create`` refused: a format/metadata channel tells real from synthetic."""

    exit_code = 3


@dataclass(frozen=True)
class CaseRender:
    """One case as the reader receives it: ``volume`` (X, Y, Z) float32 on the study grid,
    ``slices`` the default-window PNG bytes of each plane's middle slice, ``render_seconds`` the
    server time to load and render them."""

    volume: np.ndarray
    slices: Mapping[str, bytes]
    render_seconds: float
    render: Mapping


@dataclass(frozen=True)
class ShowingInfo:
    """One showing: 0-based ``position`` of ``total`` in a reader's order, ``repeat`` 0/1, the
    opaque ``showing_id`` the reader sees."""

    position: int
    total: int
    repeat: int
    showing_id: str


@dataclass(frozen=True)
class Channel:
    name: str
    group: str
    scope: str  # "case" or "showing"
    compute: Callable[..., dict[str, float]]


CHANNELS: dict[str, Channel] = {}


def channel(name: str, group: str, scope: str = "case"):
    """Register a channel function: ``(CaseRender) -> {feature: value}`` (or ``ShowingInfo`` when
    ``scope="showing"``)."""
    if group not in GROUPS or scope not in ("case", "showing"):
        raise ValueError(f"group must be one of {GROUPS} and scope case|showing")

    def register(function):
        CHANNELS[name] = Channel(name, group, scope, function)
        return function

    return register


# --------------------------------------------------------------------------- format channels
@channel("payload_bytes", group="format")
def _payload_bytes(case: CaseRender) -> dict[str, float]:
    return {plane: float(len(data)) for plane, data in case.slices.items()}


@channel("auto_window", group="format")
def _auto_window(case: CaseRender) -> dict[str, float]:
    window = auto_window(case.volume, case.render.get("auto_percentiles", (1.0, 99.5)))
    return {"level": window.level, "width": window.width}


@channel("render_time", group="format")
def _render_time(case: CaseRender) -> dict[str, float]:
    return {"seconds": case.render_seconds}


@channel("case_id", group="format", scope="showing")
def _case_id(showing: ShowingInfo) -> dict[str, float]:
    return {"value": int(showing.showing_id, 16) / 16.0 ** len(showing.showing_id)}


@channel("position", group="format", scope="showing")
def _position(showing: ShowingInfo) -> dict[str, float]:
    return {"fraction": showing.position / max(showing.total - 1, 1)}


@channel("repeat_pattern", group="format", scope="showing")
def _repeat_pattern(showing: ShowingInfo) -> dict[str, float]:
    return {"repeat": float(showing.repeat)}


# --------------------------------------------------------------------------- intensity channels
def _pixels(case: CaseRender) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.concatenate(
        [np.asarray(Image.open(BytesIO(data)), dtype=np.float64).ravel() for data in case.slices.values()]
    )


@channel("histogram_moments", group="intensity")
def _histogram_moments(case: CaseRender) -> dict[str, float]:
    from scipy import stats

    pixels = _pixels(case)
    return {
        "mean": float(pixels.mean()), "std": float(pixels.std()),
        "skew": float(np.nan_to_num(stats.skew(pixels))), "kurtosis": float(np.nan_to_num(stats.kurtosis(pixels))),
    }  # fmt: skip


@channel("histogram_percentiles", group="intensity")
def _histogram_percentiles(case: CaseRender) -> dict[str, float]:
    values = np.percentile(_pixels(case), [1, 5, 25, 50, 75, 95, 99])
    return {f"p{q}": float(v) for q, v in zip((1, 5, 25, 50, 75, 95, 99), values, strict=True)}


@channel("background_noise", group="intensity")
def _background_noise(case: CaseRender) -> dict[str, float]:
    """Standard deviation of the display volume's background (voxels below its 10th percentile),
    relative to the foreground's interquartile range."""
    flat = case.volume.ravel().astype(np.float64)
    low, q25, q75 = np.percentile(flat, [10, 25, 75])
    background = flat[flat <= low]
    scale = max(q75 - q25, 1e-12)
    return {"std": float(background.std() / scale) if background.size > 1 else 0.0}


# --------------------------------------------------------------------------- computation
def render_case(path: str, render: Mapping) -> CaseRender:
    """Load ``path`` through the study's display preprocessing and render each plane's middle slice
    (``render_seconds``: windowing and PNG encoding, what a reader waits for once the volume is cached)."""
    grid = [int(g) for g in render["grid"]]
    volume = load_display_volume(path, grid, render.get("rescale_from_unit"))
    start = time.perf_counter()
    window = resolve_window(volume, str(render.get("default_preset", "auto")), render)
    middle = {"sagittal": grid[0] // 2, "coronal": grid[1] // 2, "axial": grid[2] // 2}
    slices = {plane: render_png(volume, plane, middle[plane], window, int(render["png_size"])) for plane in PLANES}
    return CaseRender(volume, slices, time.perf_counter() - start, dict(render))


@dataclass
class AuditInput:
    """The showings to audit: per showing its case index, truth and :class:`ShowingInfo`."""

    case_paths: list[str]
    case_truth: list[int]
    showings: list[tuple[int, ShowingInfo]] = field(default_factory=list)


def features(data: AuditInput, render: Mapping, progress: bool = False) -> dict[str, np.ndarray]:
    """Channel name -> (n_showings, n_features) matrix."""
    from rich.progress import track

    cases = [render_case(p, render) for p in track(data.case_paths, description="auditing cases",
                                                  disable=not progress, transient=True)]  # fmt: skip
    per_case = {
        name: [list(ch.compute(case).values()) for case in cases]
        for name, ch in CHANNELS.items()
        if ch.scope == "case"
    }
    out = {}
    for name, ch in CHANNELS.items():
        if ch.scope == "case":
            rows = [per_case[name][index] for index, _ in data.showings]
        else:
            rows = [list(ch.compute(info).values()) for _, info in data.showings]
        out[name] = np.asarray(rows, dtype=np.float64)
    return out


def case_auc(truth: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney U / (n1 n0), ties counted half) of each row of ``score`` (R, N)
    against ``truth`` (R, N) 0/1; NaN where a row holds one class. Vectorised over R bootstrap rows."""
    from scipy.stats import rankdata

    ranks = rankdata(score, axis=-1)
    n1 = truth.sum(axis=-1)
    n0 = truth.shape[-1] - n1
    u = (ranks * truth).sum(axis=-1) - n1 * (n1 + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def cross_validated_auc(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, n_boot: int, ci: float, seed: int
) -> tuple[float, list[float], float]:
    """Case-level ROC AUC of out-of-fold scores of a standardised logistic regression (folds grouped
    by case; a case's score is the mean over its showings), with a case-bootstrap interval and the
    one-sided Mann-Whitney p-value of the case scores (H0: AUC = 0.5; exact for small studies)."""
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if np.allclose(x, x[0]):
        score = np.full(len(y), 0.5)
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        score = cross_val_predict(model, x, y, groups=groups, cv=splitter, method="predict_proba")[:, 1]
    cases, inverse = np.unique(groups, return_inverse=True)
    case_score = np.bincount(inverse, weights=score) / np.bincount(inverse)
    case_truth = np.bincount(inverse, weights=y) / np.bincount(inverse)
    auc = float(case_auc(case_truth, case_score))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(cases), size=(n_boot, len(cases)))
    boots = case_auc(case_truth[rows], case_score[rows])
    boots = boots[np.isfinite(boots)]
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha]) if boots.size else (auc, auc)
    positive = case_truth > 0.5
    p = float(mannwhitneyu(case_score[positive], case_score[~positive], alternative="greater").pvalue)
    return auc, [float(lo), float(hi)], p


def largest_effect(x: np.ndarray, y: np.ndarray) -> float:
    """Largest standardised mean difference |m1 - m0| / pooled SD over the columns of ``x`` (N, F)."""
    a, b = x[y == 0], x[y == 1]
    if len(a) < 2 or len(b) < 2:
        return 0.0
    pooled = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / 2.0)
    diff = np.abs(a.mean(axis=0) - b.mean(axis=0))
    effect = np.where(pooled > 0, diff / np.where(pooled > 0, pooled, 1.0), np.where(diff > 0, np.inf, 0.0))
    return float(np.nan_to_num(effect.max(), posinf=1e6)) if effect.size else 0.0


def audit(data: AuditInput, render: Mapping, settings: Mapping, progress: bool = False) -> dict:
    """Run every channel; returns the audit record (stored in ``study.audit``, shown to the admin).

    Raises:
        ConfigError: fewer than ``folds`` real or synthetic cases (nothing to cross-validate).
    """
    folds = int(settings["folds"])
    truth = np.asarray(data.case_truth)
    if len(truth) == 0:
        raise ConfigError("study", "has no cases to audit")
    if min(int(truth.sum()), int(len(truth) - truth.sum())) < folds:
        raise ConfigError(
            "audit.folds", f"needs at least {folds} real and {folds} synthetic cases, the study has "
            f"{int(len(truth) - truth.sum())} real and {int(truth.sum())} synthetic"
        )  # fmt: skip
    matrices = features(data, render, progress)
    y = np.asarray([truth[index] for index, _ in data.showings])
    groups = np.asarray([index for index, _ in data.showings])
    args = (groups, folds, int(settings["bootstrap"]), float(settings["ci"]), int(settings["seed"]))
    channels = {}
    for name, ch in CHANNELS.items():
        auc, ci, p = cross_validated_auc(matrices[name], y, *args)
        channels[name] = {"group": ch.group, "auc": round(auc, 4), "ci": [round(v, 4) for v in ci],
                          "p": float(f"{p:.3g}"), "effect": round(largest_effect(matrices[name], y), 2)}  # fmt: skip
    group_results = {}
    for group in GROUPS:
        names = [n for n, ch in CHANNELS.items() if ch.group == group]
        auc, ci, _ = cross_validated_auc(np.hstack([matrices[n] for n in names]), y, *args)
        group_results[group] = {"auc": round(auc, 4), "ci": [round(v, 4) for v in ci], "channels": names}
    threshold, margin = float(settings["refuse_lower_ci"]), float(settings["margin"])
    gross, alpha = float(settings["gross_effect"]), float(settings["alpha"])
    visible = max(0.5, group_results["intensity"]["auc"])
    n_format = sum(ch.group == "format" for ch in CHANNELS.values())

    def leaks_(r: dict) -> bool:
        if r["group"] != "format" or r["ci"][0] <= threshold:
            return False
        significant = r["p"] * n_format < alpha  # Bonferroni over the format channels
        return r["effect"] >= gross or (significant and r["auc"] - visible >= margin)

    leaks = sorted((n for n, r in channels.items() if leaks_(r)), key=lambda n: -channels[n]["auc"])
    cues = [n for n, r in channels.items() if r["group"] == "intensity" and r["ci"][0] > threshold]
    hint = None
    if cues:
        hint = (
            f"intensity cues separate the sets ({', '.join(cues)}): if real and synthetic were not "
            "prepared the same way (data prepare, same intensity mode and window), fix that; otherwise "
            "this is a realism difference the readers may legitimately see"
        )
    return {
        "n_cases": int(len(truth)), "n_showings": int(len(y)), "channels": channels, "groups": group_results,
        "refuse_lower_ci": threshold, "margin": margin, "gross_effect": gross, "leaks": leaks, "intensity_cues": cues, "hint": hint,
        "verdict": "leak" if leaks else "ok",
    }  # fmt: skip


def leak_line(result: Mapping) -> str:
    """One line naming the leaking channel(s) with their AUC and interval."""
    parts = [
        f"{n} AUC {result['channels'][n]['auc']:.2f} [{result['channels'][n]['ci'][0]:.2f}, "
        f"{result['channels'][n]['ci'][1]:.2f}]"
        for n in result["leaks"]
    ]
    return (
        "format/metadata channels tell real from synthetic without anatomy: " + "; ".join(parts)
        + " (prepare both sets the same way: same grid, intensity mode and window; or allow_leaks=true)"
    )


def format_report(result: Mapping) -> str:
    """A plain-text table of the audit (CLI)."""
    lines = [f"blinding audit: {result['n_cases']} cases, {result['n_showings']} showings "
             f"(leak = format channel with CI low > {result['refuse_lower_ci']} and either effect >= "
             f"{result['gross_effect']} SD or p < alpha and AUC >= intensity AUC + {result['margin']})"]  # fmt: skip
    for group in GROUPS:
        g = result["groups"][group]
        lines.append(f"  {group:<10} AUC {g['auc']:.3f} [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}]")
        for name, r in result["channels"].items():
            if r["group"] == group:
                flag = "  LEAK" if name in result["leaks"] else ""
                lines.append(f"    {name:<22} AUC {r['auc']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
                             f"  p {r['p']:.2g}  effect {_effect_text(r['effect'])} SD{flag}")  # fmt: skip
    lines.append(f"verdict: {result['verdict']}")
    if result.get("hint"):
        lines.append(f"hint: {result['hint']}")
    return "\n".join(lines)


def _effect_text(effect: float) -> str:
    return f"{effect:.1f}" if effect < 1000 else ">1000"


def planned_showings(
    n_cases: int, secret: str, repeat_fraction: float, min_gap: int, n_readers: int
) -> list[tuple[int, ShowingInfo]]:
    """Showings of ``n_readers`` hypothetical readers (orders from the study secret, random ids):
    what the audit looks at before any reader exists."""
    from medsynth.study.assignment import order_seed, reading_order
    from medsynth.study.signin import new_showing_id

    showings = []
    for r in range(n_readers):
        order = reading_order(n_cases, repeat_fraction, order_seed(secret, f"\0audit:{r}"), min_gap=min_gap)
        showings += [
            (o.case_index, ShowingInfo(o.position, len(order), o.repeat, new_showing_id())) for o in order
        ]
    return showings


def audit_study(service, study_name: str, settings: Mapping, progress: bool = False) -> dict:
    """Audit a stored study (its readers' real orders, or hypothetical ones before any reader
    exists) and store the result in ``study.audit``."""
    from sqlalchemy import func, select

    from medsynth.study.db import read_session, write_session
    from medsynth.study.models import Assignment, Case, Reader, Study

    with read_session(service.factory) as s:
        study = service._study_by_name(s, study_name)
        cases = list(s.scalars(select(Case).where(Case.study_id == study.id).order_by(Case.id)))
        index = {c.id: i for i, c in enumerate(cases)}
        rows = s.execute(
            select(Assignment, Reader.id)
            .join(Reader, Reader.id == Assignment.reader_id)
            .where(Reader.study_id == study.id)
            .order_by(Reader.id, Assignment.position)
        ).all()
        totals = dict(
            s.execute(
                select(Assignment.reader_id, func.count()).join(Reader).where(Reader.study_id == study.id)
                .group_by(Assignment.reader_id)
            ).all()
        )  # fmt: skip
        render, secret, fraction, study_id = dict(study.render), study.secret, study.repeat_fraction, study.id
    render = service.settle_viewer(study_id, progress)  # the viewer's message length, as readers get it
    data = AuditInput([c.source_path for c in cases], [int(c.is_synthetic) for c in cases])
    if rows:
        data.showings = [
            (index[a.case_id], ShowingInfo(a.position, totals[rid], a.repeat, a.showing_id)) for a, rid in rows
        ]
    else:
        data.showings = planned_showings(
            len(cases), secret, fraction, int(settings["min_repeat_gap"]), int(settings["readers"])
        )
    result = audit(data, render, settings, progress)
    with write_session(service.factory) as s:
        s.get(Study, study_id).audit = result
    return result


def audit_settings(cfg) -> dict:
    """The ``audit`` block of conf/study.yaml plus ``min_repeat_gap``, as plain values."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(cfg.audit, resolve=True)
    settings["min_repeat_gap"] = int(cfg.min_repeat_gap)
    if int(settings["folds"]) < 2:
        raise ConfigError("audit.folds", f"must be at least 2, got {settings['folds']}")
    return settings

