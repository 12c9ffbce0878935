"""medsynth quality benchmark: realism per unit of CPU against the real-vs-real floor and the MONAI tutorial.

The brain demo (nilearn's MNI152 2009a, nothing downloaded) at 32^3, split by subject: a training set
T (48 subjects, seed 0), a held-out set H (32, seed 1, ``subject_prefix=heldout``) and a second
disjoint real set R2 (32, seed 2) for the floor, all prepared with one ``medsynth data prepare``
fingerprint. Arms, each trained under a CPU budget (``benchmarks/cpu_budget.py``: the training
process's user + system CPU seconds, all threads, <= 2 x 60 x B for a budget of B minutes "on 2
idle cores"; ``OMP_WAIT_POLICY=PASSIVE`` so spin-waiting under contention is not charged):

* ``ms<B>``: ``medsynth train experiment=demo`` (the README's CPU recipe at 32^3, 2 threads, no
  previews and no best_quality scoring: the budget goes to training; ``last.ckpt`` is sampled) with
  ``trainer.max_steps`` calibrated so the cosine schedule ends at the budget; the budget stops it in
  any case. ``--quality-every N`` turns the quality checkpoint callback on (scoring every N steps,
  charged to the budget) and also scores the run's ``best_quality.ckpt`` (row
  ``<arm>:best_quality``). The smallest budget's run also saves snapshots at ``--snapshots``
  minutes (a snapshot mid-cosine is a lower bound of what a run with that budget would give).
  Sampled with conf/sample.yaml's default sampler.
* ``--n-train N``: train on N subjects instead of 48 (seed 0, so the first 48 are the default set;
  folder ``data/prepared/train-n<N>``, arms ``ms<B>-n<N>``); H, R2, the floor and the calibration
  are the same, so the arms compare with the default ones.
* ``--arm NAME:key=value,...``: a variant of the smallest-budget medsynth run with extra Hydra
  overrides (e.g. ``--arm uniform:model.wavelet_scaling=uniform``).
* ``tut<B>``: the MONAI 3d_ddpm tutorial configuration (``benchmarks/quality_tutorial.py``),
  constant LR, so its state at every smaller budget is a snapshot of the same run. Sampled with the
  tutorial's own sampler (``--tutorial-sampler``/``--tutorial-steps``/``--tutorial-n``: DDPM-1000
  does not fit a CPU session at this network size; the record says what was used).

Each arm's N = |H| samples are scored against H by ``medsynth evaluate`` (frd = ln d^2 as frd-score
v1 returns it, frd_d2 = d^2, KID, precision, recall, density, coverage, bootstrap CIs), beside the
floor (R2 against H, same command). The few-step stage (off with ``--no-fewstep``) samples the
largest-budget medsynth run as ``medsynth sample ckpt=RUN`` does (its ``best_quality.ckpt`` when the
quality callback ran, else ``last.ckpt``; each row records the one its manifest names) with each sampler
of :data:`FEWSTEP` (the ODE solvers at 5-15 steps, their stochastic forms at 9-20, DDPM over every
training step) and scores each; the default sampler's row on that checkpoint is the arm's own
(``<arm>:best_quality``, else ``<arm>``).

Every stage skips work whose output exists (``DONE`` markers), so an interrupted benchmark resumes::

    python benchmarks/quality.py --out /work/q18runs                 # everything (hours of CPU)
    python benchmarks/quality.py --out /tmp/q --smoke                # 16^3, seconds-sized budgets (the test)

Outputs: ``OUT/quality.json`` (benchmarks/records.py records) and ``OUT/quality.md`` (tables).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from records import RecordBook  # noqa: E402

#: metrics.json entries reported per arm, in table order
METRICS = ("frd_d2", "frd", "kid", "precision", "recall", "density", "coverage")
#: (sampler, steps, eta) of the few-step measurement; steps None = every training timestep; eta None = the
#: sampler's own (conf/sampler), 1 = the stochastic (SDE / ancestral) form, which docs/sampling.md found
#: closer to DDPM-1000 on the demo model. The default (dpmpp3m, 20) is not here: the arm's own row is it.
FEWSTEP = (
    ("dpmpp3m", 5, None), ("dpmpp3m", 10, None), ("dpmpp3m", 15, None), ("dpmpp", 10, None),
    ("dpmpp", 9, 1.0), ("dpmpp", 10, 1.0), ("dpmpp", 20, 1.0), ("ddim", 10, 1.0), ("ddim", 20, 1.0),
    ("ddpm", None, None),
)
#: the smoke run's subset: both solvers, a few-step grid each, one stochastic form
SMOKE_FEWSTEP = (("dpmpp3m", 5, None), ("dpmpp", 10, None), ("ddim", 10, 1.0))


@dataclass
class Settings:
    """Sizes of one benchmark run (full or smoke)."""

    shape: int = 32
    n_train: int = 48
    n_heldout: int = 32
    n_real2: int = 32
    spacing_mm: float = 6.0
    budgets_min: list[float] = field(default_factory=lambda: [10.0, 30.0])
    tutorial_budget_min: float = 30.0
    snapshots_min: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 5.0])
    calibrate_steps: int = 60
    max_steps: int | None = None  # smoke: fixed steps instead of calibration
    tutorial_batch: int = 16  # the tutorial's; 16 at 32^3 needs > 14.6 GB of RAM (OOM-killed on a 23 GB machine)
    tutorial_args: list[str] = field(default_factory=list)
    tutorial_sampler: str = "ddim"
    tutorial_steps: int = 250
    tutorial_n: int = 8
    evaluate_args: list[str] = field(default_factory=lambda: ["radiomics.frd_exact=false", "figures=false"])
    train_args: list[str] = field(default_factory=list)
    sample_args: list[str] = field(default_factory=list)
    quality_every: int = 0  # > 0: the quality checkpoint callback scores every N steps (inside the budget)
    train_tag: str = ""  # "-n<N>" when --n-train changes n_train: the training folder's and the arms' suffix


def smoke_settings() -> Settings:
    """16^3, a handful of volumes and steps, budgets of a few CPU seconds: every code path, no figures."""
    return Settings(
        shape=16,
        n_train=6,
        n_heldout=6,  # the floor's halves need >= 3 volumes (PRDC's k-NN)
        n_real2=6,
        spacing_mm=12.0,
        budgets_min=[0.5],
        tutorial_budget_min=0.5,
        snapshots_min=[0.1],
        max_steps=3,
        tutorial_batch=2,
        tutorial_args=["--tiny", "--max-steps", "2"],
        tutorial_steps=3,
        tutorial_n=4,
        evaluate_args=[
            "radiomics.frd_exact=false",
            "figures=false",
            "radiomics.image_types=[Original]",
            "ci.n_resamples=5",
            "num_workers=1",
        ],
        train_args=["trainer.val_every_n_steps=2", "callbacks.checkpoint.every_n_steps=2", "model.channels=[8,8,16]",
                    "model.norm_num_groups=8"],
        sample_args=["sampler.steps=3"],
    )


def env() -> dict[str, str]:
    """The children's environment: this checkout first on PYTHONPATH, benchmarks/ importable (the
    CpuBudget callback), passive OpenMP waits."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["OMP_WAIT_POLICY"] = "PASSIVE"
    return e


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output in ``log``; wall seconds. Raises SystemExit naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with log.open("w") as handle:
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env(), cwd=ROOT)
    if code != 0:
        raise SystemExit(f"quality: {' '.join(cmd[:4])} ... failed (exit {code}); see {log}")
    return time.time() - start


def medsynth(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsynth.cli", *args]


def cpu_log_summary(path: Path) -> dict:
    """Last row of a CpuClock log: steps, CPU s, wall s and the load at the end."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    last = rows[-1]
    return {"steps": int(last["step"]), "cpu_s": float(last["cpu_s"]), "wall_s": float(last["wall_s"]),
            "load1_end": float(last["load1"]), "load1_median": sorted(float(r["load1"]) for r in rows)[len(rows) // 2]}


def cpu_per_step(path: Path) -> float:
    """CPU seconds per step from a CpuClock log: slope between its second third and its last row."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    a, b = rows[len(rows) // 3], rows[-1]
    if int(b["step"]) == int(a["step"]):  # one logged step: its cost includes the process start
        return float(b["cpu_s"]) / int(b["step"])
    return (float(b["cpu_s"]) - float(a["cpu_s"])) / (int(b["step"]) - int(a["step"]))


# -- data ----------------------------------------------------------------------------------------


def prepare_data(out: Path, s: Settings) -> dict[str, Path]:
    """T, H and R2: brain demo subjects with disjoint ids and seeds, prepared with one fingerprint."""
    sets = {"train": (s.n_train, 0, "brain"), "heldout": (s.n_heldout, 1, "heldout"), "real2": (s.n_real2, 2, "realtwo")}
    folders = {}
    for name, (n, seed, prefix) in sets.items():
        folder = name + (s.train_tag if name == "train" else "")  # subject i depends on (seed, i) only
        raw, prepared = out / "data" / "raw" / folder, out / "data" / "prepared" / folder
        folders[name] = prepared
        if (prepared / "DONE").exists():
            continue
        shape = f"shape=[{s.shape},{s.shape},{s.shape}]"
        run(medsynth("data", "demo", "dataset=brain", f"n={n}", shape, f"seed={seed}", f"subject_prefix={prefix}",
                     f"out_dir={raw}"), out / "logs" / f"data_{name}.log")
        sp = s.spacing_mm
        run(medsynth("data", "prepare", f"input={raw}", f"out_dir={prepared}", f"spacing=[{sp},{sp},{sp}]", shape,
                     "progress=false"), out / "logs" / f"prepare_{name}.log")
        (prepared / "DONE").touch()
    return folders


# -- training ------------------------------------------------------------------------------------


def train_medsynth(out: Path, name: str, data: Path, budget_min: float, max_steps: int, snapshots_min: list[float],
                   extra: list[str], s: Settings) -> Path:
    """``medsynth train experiment=demo`` under the CPU budget; the run folder (``OUT/<name>``)."""
    run_dir = out / name
    if (run_dir / "DONE").exists():
        return run_dir
    snaps = ",".join(str(int(m * 120)) for m in snapshots_min)
    cmd = medsynth(
        "train", "experiment=demo", f"data.root={data}", "trainer.num_threads=2", f"trainer.max_steps={max_steps}",
        "callbacks.preview=null", "callbacks.progress=none", "logger=none",
        f"callbacks.quality.every_n_steps={s.quality_every}" if s.quality_every > 0 else "callbacks.quality=null",
        f"hydra.run.dir={run_dir}",
        "+callbacks.cpu_budget._target_=cpu_budget.CpuBudget", f"+callbacks.cpu_budget.budget_s={budget_min * 120}",
        f"+callbacks.cpu_budget.snapshots_s=[{snaps}]", f"+callbacks.cpu_budget.out_dir={run_dir / 'snapshots'}",
        f"+callbacks.cpu_budget.log_path={run_dir / 'cpu_log.csv'}", *s.train_args, *extra,
    )
    run(cmd, out / "logs" / f"train_{name}.log")
    (run_dir / "DONE").touch()
    return run_dir


def calibrate(out: Path, data: Path, s: Settings, book: RecordBook) -> float:
    """CPU seconds per optimizer step of the medsynth recipe (a short run under the same settings)."""
    run_dir = train_medsynth(out, "calibrate", data, 1000.0, s.calibrate_steps, [], [], s)
    per_step = cpu_per_step(run_dir / "cpu_log.csv")
    startup = cpu_log_summary(run_dir / "cpu_log.csv")["cpu_s"] - per_step * s.calibrate_steps
    book.add("medsynth_cpu_s_per_step", per_step, "CPU s/step", startup_cpu_s=startup, steps=s.calibrate_steps,
             threads=2, load1=os.getloadavg()[0])
    return per_step


def steps_for_budget(budget_min: float, per_step: float, startup_s: float = 10.0, margin: float = 0.97) -> int:
    """Optimizer steps whose CPU time ends the cosine schedule just inside the budget (3% kept for
    validation and checkpoints)."""
    return max(1, int((budget_min * 120 - startup_s) / per_step * margin))


def train_tutorial(out: Path, data: Path, s: Settings) -> Path:
    run_dir = out / f"tut{_tag(s.tutorial_budget_min)}"
    if (run_dir / "DONE").exists():
        return run_dir
    snaps = [str(int(b * 120)) for b in s.budgets_min if b < s.tutorial_budget_min]
    cmd = [sys.executable, str(HERE / "quality_tutorial.py"), "train", str(data), str(run_dir),
           "--budget-s", str(s.tutorial_budget_min * 120), "--snapshots-s", *snaps,
           "--batch-size", str(s.tutorial_batch), *s.tutorial_args]
    run(cmd, out / "logs" / f"train_{run_dir.name}.log")
    (run_dir / "DONE").touch()
    return run_dir


def _tag(minutes: float) -> str:
    return f"{minutes:g}".replace(".", "p")


# -- sampling and scoring ------------------------------------------------------------------------


def sample_medsynth(out: Path, name: str, ckpt: Path, n: int, s: Settings, sampler_args: list[str]) -> Path:
    """``n`` volumes of ``ckpt`` with ``sampler_args`` (none: conf/sample.yaml's default sampler)."""
    folder = out / "samples" / name
    if (folder / "DONE").exists():
        return folder
    wall = run(medsynth("sample", f"ckpt={ckpt}", f"num_samples={n}", f"out_dir={folder}", "seed=0", "progress=false",
                        "contact_sheet.num_samples=8", "num_threads=2", "overwrite=true", *(sampler_args or s.sample_args)),
               out / "logs" / f"sample_{name}.log")
    (folder / "timing.json").write_text(json.dumps({"wall_s": wall, "n": n, "load": os.getloadavg()}))
    (folder / "DONE").touch()
    return folder


def sample_tutorial(out: Path, name: str, ckpt: Path, data: Path, s: Settings) -> Path:
    folder = out / "samples" / name
    if (folder / "DONE").exists():
        return folder
    cmd = [sys.executable, str(HERE / "quality_tutorial.py"), "sample", str(ckpt), str(folder), "--reference", str(data),
           "--n", str(s.tutorial_n), "--sampler", s.tutorial_sampler, "--steps", str(s.tutorial_steps),
           "--batch-size", str(s.tutorial_n)]
    run(cmd, out / "logs" / f"sample_{name}.log")
    (folder / "DONE").touch()
    return folder


def evaluate(out: Path, name: str, real: Path, synthetic: Path, s: Settings) -> dict:
    """``medsynth evaluate`` of ``synthetic`` against ``real``; the metrics.json ``metrics`` object."""
    folder = out / "eval" / name
    if not (folder / "metrics.json").exists():
        run(medsynth("evaluate", f"real_dir={real}", f"synthetic_dir={synthetic}", f"out_dir={folder}", "progress=false",
                     *s.evaluate_args), out / "logs" / f"evaluate_{name}.log")
    return json.loads((folder / "metrics.json").read_text())["metrics"]


def add_scores(book: RecordBook, arm: str, metrics: dict, **detail) -> None:
    for key in METRICS:
        entry = metrics.get(key) or {}
        book.add(f"{key}[{arm}]", entry.get("value"), "", ci=entry.get("ci"), **detail)


# -- the benchmark -------------------------------------------------------------------------------


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``NAME:key=value,key=value`` -> (NAME, [key=value, ...]); one line naming the flag otherwise."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest or any("=" not in o for o in rest.split(",")):
        raise SystemExit(f"--arm {text!r}: expected NAME:key=value[,key=value...]")
    return name, rest.split(",")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="work folder (data, runs, samples, evaluations, tables)")
    p.add_argument("--smoke", action="store_true", help="16^3, tiny sets and budgets (tests)")
    p.add_argument("--budgets", type=float, nargs="+", help="medsynth CPU budgets in minutes on 2 cores (10 30)")
    p.add_argument("--tutorial-budget", type=float, help="the tutorial arm's budget (30); 0 leaves it out")
    p.add_argument("--snapshots", type=float, nargs="*", help="snapshot budgets of the smallest medsynth run (1 2 3 5)")
    p.add_argument("--arm", action="append", default=[], help="NAME:key=value,...: a variant of the smallest run")
    p.add_argument("--tutorial-batch", type=int, help="the tutorial arm's batch size (16, the tutorial's)")
    p.add_argument("--tutorial-sampler", choices=["ddpm", "ddim"], help="the tutorial's sampler (ddim)")
    p.add_argument("--tutorial-steps", type=int, help="DDIM steps of the tutorial arm (250)")
    p.add_argument("--tutorial-n", type=int, help="tutorial volumes sampled per snapshot (8)")
    p.add_argument("--n-train", type=int, help="training subjects (48); another size gets its own folder and "
                   "arm names (ms30-n<N>): the held-out set, the floor and the calibration are shared")
    p.add_argument("--no-fewstep", action="store_true", help="skip the few-step sampler measurement")
    p.add_argument("--report", action="store_true", help="run nothing: tables from what OUT already holds")
    p.add_argument("--quality-every", type=int, default=0,
                   help="score samples every N training steps (callbacks.quality, charged to the budget) and "
                        "evaluate best_quality.ckpt too; 0 (default) leaves the callback off")
    args = p.parse_args(argv)
    if args.report:
        return report(args.out.resolve())
    s = smoke_settings() if args.smoke else Settings()
    s.budgets_min = sorted(args.budgets or s.budgets_min)
    s.tutorial_budget_min = s.tutorial_budget_min if args.tutorial_budget is None else args.tutorial_budget
    s.snapshots_min = s.snapshots_min if args.snapshots is None else args.snapshots
    s.tutorial_sampler = args.tutorial_sampler or s.tutorial_sampler
    s.tutorial_steps = args.tutorial_steps or s.tutorial_steps
    s.tutorial_n = args.tutorial_n or s.tutorial_n
    s.tutorial_batch = args.tutorial_batch or s.tutorial_batch
    if args.n_train is not None and args.n_train < 2:
        p.error(f"--n-train must be >= 2, got {args.n_train}")
    if args.n_train is not None and args.n_train != s.n_train:
        s.n_train, s.train_tag = args.n_train, f"-n{args.n_train}"
    if args.quality_every < 0:
        p.error(f"--quality-every must be >= 0, got {args.quality_every}")
    s.quality_every = args.quality_every
    arms = [parse_arm(a) for a in args.arm]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    book = RecordBook(out / "quality.json")
    book.add("load_at_start", os.getloadavg()[0], "load1", cores=os.cpu_count())
    data = prepare_data(out, s)
    n = len(list(data["heldout"].glob("*.nii.gz")))

    floor = evaluate(out, "floor", data["heldout"], data["real2"], s)
    add_scores(book, "floor", floor, what="real R2 vs held-out H", n=n)

    per_step = None if s.max_steps else calibrate(out, data["train"], s, book)
    runs: dict[str, tuple[Path, float]] = {}
    for budget in s.budgets_min:
        steps = s.max_steps or steps_for_budget(budget, per_step)
        snaps = s.snapshots_min if budget == s.budgets_min[0] else []
        arm = f"ms{_tag(budget)}{s.train_tag}"
        runs[arm] = (train_medsynth(out, arm, data["train"], budget, steps, snaps, [], s), budget)
    for name, overrides in arms:
        budget = s.budgets_min[0]
        steps = s.max_steps or steps_for_budget(budget, per_step)
        arm = f"ms{_tag(budget)}{s.train_tag}-{name}"
        runs[arm] = (train_medsynth(out, arm, data["train"], budget, steps, [], overrides, s), budget)

    for arm, (run_dir, budget) in runs.items():
        summary = cpu_log_summary(run_dir / "cpu_log.csv")
        book.add(f"train_cpu_s[{arm}]", summary["cpu_s"], "CPU s", budget_cpu_s=budget * 120, **summary)
        add_scores(book, arm, evaluate(out, arm, data["heldout"], sample_medsynth(out, arm, run_dir / "checkpoints" /
                                                                                   "last.ckpt", n, s, []), s),
                   n=n, sampler="conf/sample.yaml default", train_steps=summary["steps"])
        best = run_dir / "checkpoints" / "best_quality.ckpt"
        if s.quality_every > 0 and best.is_file():
            import torch  # here only: the rest of the benchmark drives medsynth through its CLI

            step = torch.load(best, map_location="cpu", weights_only=True, mmap=True).get("global_step")  # no weights read
            add_scores(book, f"{arm}:best_quality", evaluate(out, f"{arm}:best_quality", data["heldout"],
                                                             sample_medsynth(out, f"{arm}:best_quality", best, n, s, []),
                                                             s),
                       n=n, sampler="conf/sample.yaml default", train_steps=step, quality_every=s.quality_every)
        for ckpt in sorted((run_dir / "snapshots").glob("cpu_*s.ckpt"), key=lambda c: int(c.stem[4:-1])):
            snap = f"{arm}@{int(ckpt.stem[4:-1]) / 120:g}min"
            add_scores(book, snap, evaluate(out, snap, data["heldout"], sample_medsynth(out, snap, ckpt, n, s, []), s),
                       n=n, snapshot_of=arm)

    if s.tutorial_budget_min > 0:
        tut_dir = train_tutorial(out, data["train"], s)
        summary = cpu_log_summary(tut_dir / "cpu_log.csv")
        book.add(f"train_cpu_s[tut{_tag(s.tutorial_budget_min)}]", summary["cpu_s"], "CPU s",
                 budget_cpu_s=s.tutorial_budget_min * 120, **summary)
        book.add("tutorial_cpu_s_per_step", cpu_per_step(tut_dir / "cpu_log.csv"), "CPU s/step", batch=s.tutorial_batch)
        snaps = sorted(tut_dir.glob("snap_*s.pt"), key=lambda c: int(c.stem[5:-1]))
        ckpts = [(f"tut@{int(c.stem[5:-1]) / 120:g}min", c) for c in snaps]
        ckpts.append((f"tut{_tag(s.tutorial_budget_min)}", tut_dir / "final.pt"))
        if s.tutorial_n < n:  # the floor at the tutorial's N: the first tutorial_n volumes of R2 against H
            floor_small = evaluate(out, f"floor_n{s.tutorial_n}", data["heldout"],
                                   _subset(out, data["real2"], s.tutorial_n), s)
            add_scores(book, f"floor_n{s.tutorial_n}", floor_small, n=s.tutorial_n)
        for arm, ckpt in ckpts:
            folder = sample_tutorial(out, arm, ckpt, data["train"], s)
            timing = json.loads((folder / "timing.json").read_text())
            book.add(f"tutorial_sample_cpu_s_per_volume[{arm}]", timing["cpu_s_per_volume"], "CPU s", **timing)
            add_scores(book, arm, evaluate(out, arm, data["heldout"], folder, s), n=s.tutorial_n,
                       sampler=f"{s.tutorial_sampler}-{timing['steps']}", train_steps=timing["train_step"])

    if not args.no_fewstep:
        arm = f"ms{_tag(s.budgets_min[-1])}{s.train_tag}"
        run_dir = runs[arm][0]  # the run folder: `medsynth sample` picks its checkpoint, as for a user
        for sampler, steps, eta in FEWSTEP:
            if args.smoke and (sampler, steps, eta) not in SMOKE_FEWSTEP:
                continue  # DDPM over every training step is 1000 network calls: not a smoke test
            name = f"{arm}:{sampler}-{steps or 'all'}" + (f"-eta{eta:g}" if eta is not None else "")
            overrides = [f"sampler={sampler}"] + ([f"sampler.steps={steps}"] if steps else [])
            overrides += [f"sampler.eta={eta:g}"] if eta is not None else []
            folder = sample_medsynth(out, name, run_dir, n, s, overrides)
            with open(folder / "manifest.csv", newline="") as f:
                picked = Path(next(csv.DictReader(f))["checkpoint"]).name  # the checkpoint it sampled
            add_scores(book, name, evaluate(out, name, data["heldout"], folder, s), n=n, sampler=sampler,
                       steps=steps, eta=eta, checkpoint=picked,
                       sample_wall_s=json.loads((folder / "timing.json").read_text())["wall_s"])
    book.add("load_at_end", os.getloadavg()[0], "load1")
    table = quality_table(book)
    book.write(out / "quality.json")
    (out / "quality.md").write_text(table + "\n" + book.markdown())
    print(table)
    return 0


def report(out: Path) -> int:
    """Records and tables from an interrupted or hand-completed OUT: every training's CPU log and every
    evaluation (floor first), nothing run."""
    book = RecordBook(out / "quality.json")
    for log in sorted(out.glob("*/cpu_log.csv")):
        if len(log.read_text().splitlines()) < 2:
            continue  # a run that never finished a step
        summary = cpu_log_summary(log)
        book.add(f"train_cpu_s[{log.parent.name}]", summary["cpu_s"], "CPU s", **summary)
    names = sorted(p.parent.name for p in (out / "eval").glob("*/metrics.json"))
    for name in sorted(names, key=lambda n: (not n.startswith("floor"), n)):
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        add_scores(book, name, metrics["metrics"], n=metrics["settings"].get("n_synthetic"))
    table = quality_table(book)
    book.write(out / "quality.json")
    (out / "quality.md").write_text(table + "\n" + book.markdown())
    print(table)
    return 0


def _subset(out: Path, folder: Path, k: int) -> Path:
    """The first ``k`` volumes of ``folder`` (links) with its preprocessing.json."""
    sub = out / "data" / f"{folder.name}_first{k}"
    if not sub.exists():
        sub.mkdir(parents=True)
        for f in sorted(folder.glob("*.nii.gz"))[:k]:
            (sub / f.name).symlink_to(f)
        (sub / "preprocessing.json").symlink_to(folder / "preprocessing.json")
    return sub


def quality_table(book: RecordBook) -> str:
    """One row per arm: every metric (value, CI for frd_d2) and d^2 as a multiple of the floor."""
    arms: list[str] = []
    for r in book.records:
        if r.name.startswith("frd_d2["):
            arms.append(r.name[len("frd_d2["):-1])
    floor = book.get("frd_d2[floor]")
    lines = ["| arm | N | d^2 (95% CI) | d^2 / floor | ln d^2 | KID | precision | recall | density | coverage |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in arms:
        d2 = book.get(f"frd_d2[{arm}]")
        ref = book.get(f"frd_d2[floor_n{d2.detail.get('n')}]") or floor
        ratio = d2.value / ref.value if d2.value is not None and ref and ref.value else None
        ci = d2.detail.get("ci")
        cells = [arm, str(d2.detail.get("n", "")), _fmt(d2.value) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""),
                 _fmt(ratio)]
        cells += [_fmt(book.get(f"{k}[{arm}]").value) for k in ("frd", "kid", "precision", "recall", "density", "coverage")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.4g}"


if __name__ == "__main__":
    raise SystemExit(main())
