"""`medsynth sample` as a real SLURM job array (tests/slurm_cluster.py): shards by index, per-task
records, a finishing job after the array; the same voxels and manifest as one process."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import TINY_OVERRIDES, make_prepared, run_train  # noqa: E402

pytestmark = pytest.mark.slow

TASKS = 3
SAMPLE = ["num_samples=5", "sampler=ddim", "steps=3", "batch_size=2", "progress=false", "contact_sheet.num_samples=2"]
TIMING_COLUMNS = ("seconds", "seconds_per_volume")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("array")
    prepared = make_prepared(root / "prepared", n=6)
    run = root / "run"
    rc = run_train(
        [f"data.root={prepared}", f"hydra.run.dir={run}", *TINY_OVERRIDES, "trainer.max_steps=1",
         "callbacks.preview.num_samples=0"]
    )  # fmt: skip
    assert rc == 0
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def one_process(checkpoint):
    """The reference: ``medsynth sample`` in one process."""
    out = checkpoint.parents[2] / "one_process"
    proc = subprocess.run(_sample(f"ckpt={checkpoint}", f"out_dir={out}"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _sample(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsynth.cli", "sample", *SAMPLE, *args]


def _submit(cluster, cmd: list[str], *sbatch_args: str) -> str:
    proc = cluster.run(["sbatch", "--parsable", "--cpus-per-task=1", "--mem=1G", *sbatch_args,
                        "--wrap", subprocess.list2cmdline(cmd)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def _manifest(folder: Path) -> pd.DataFrame:
    table = pd.read_csv(folder / "manifest.csv")
    return table.drop(columns=[c for c in table.columns if c in TIMING_COLUMNS or "second" in c])


def test_sample_array_matches_one_process(slurm_cluster, checkpoint, one_process, tmp_path):
    one = one_process

    array = tmp_path / "array"
    logs = f"--output={tmp_path}/%x-%A_%a.out"
    tasks = _submit(
        slurm_cluster,
        _sample(f"ckpt={checkpoint}", f"out_dir={array}", "array.task=auto", "array.tasks=auto"),
        f"--array=0-{TASKS - 1}", "--job-name=sample", logs,
    )  # fmt: skip
    finish = _submit(
        slurm_cluster,
        _sample(f"ckpt={checkpoint}", f"out_dir={array}", "array.finish=true", f"array.tasks={TASKS}"),
        f"--dependency=afterok:{tasks}", "--job-name=finish", f"--output={tmp_path}/finish.out",
    )  # fmt: skip
    slurm_cluster.wait_idle(300)
    assert slurm_cluster.job_state(finish) == "COMPLETED", (tmp_path / "finish.out").read_text()[-3000:]

    records = sorted((array / ".array").glob("sample_task_*.json"))
    assert [json.loads(r.read_text())["done"] for r in records] == [
        ["sample_00000.nii.gz", "sample_00003.nii.gz"],
        ["sample_00001.nii.gz", "sample_00004.nii.gz"],
        ["sample_00002.nii.gz"],
    ]
    files = sorted(p.name for p in one.glob("sample_*.nii.gz"))
    assert files == sorted(p.name for p in array.glob("sample_*.nii.gz")) and len(files) == 5
    for name in files:
        a, b = nib.load(one / name), nib.load(array / name)
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), name
        assert np.array_equal(a.affine, b.affine)
    pd.testing.assert_frame_equal(_manifest(one), _manifest(array))
    assert json.loads((one / "datalist.json").read_text()) == json.loads((array / "datalist.json").read_text())
    assert (array / "figures" / "contact_sheet.png").is_file()

    # the finishing step on a folder where task 1's files are missing (a node-local out_dir): one line
    local = tmp_path / "node_local"
    shutil.copytree(array, local)
    (local / "manifest.csv").unlink()
    (local / ".array" / f"sample_task_00001_of_{TASKS:05d}.json").unlink()
    proc = subprocess.run(
        _sample(f"ckpt={checkpoint}", f"out_dir={local}", "array.finish=true", f"array.tasks={TASKS}"),
        capture_output=True, text=True,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert f"no results from array task(s) 1 of {TASKS}" in lines[0] and "filesystem every node shares" in lines[0]
    assert not (local / "manifest.csv").exists()


def _evaluate(*args: str) -> list[str]:
    return [sys.executable, "-m", "medsynth.cli", "evaluate", "progress=false", "num_workers=1", *args]


def test_evaluate_array_matches_one_process(slurm_cluster, checkpoint, one_process, tmp_path):
    real = checkpoint.parents[2] / "prepared"
    sets = [f"real_dir={real}", f"synthetic_dir={one_process}"]
    reference = subprocess.run(
        _evaluate(*sets, f"out_dir={tmp_path / 'one'}", f"radiomics.cache_dir={tmp_path / 'one_cache'}"),
        capture_output=True, text=True,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "array"
    tasks = _submit(
        slurm_cluster, _evaluate(*sets, f"out_dir={out}", "array.task=auto", "array.tasks=auto"),
        "--array=0-1", "--job-name=evaluate", f"--output={tmp_path}/%x-%A_%a.out",
    )  # fmt: skip
    finish = _submit(
        slurm_cluster, _evaluate(*sets, f"out_dir={out}", "array.finish=true", "array.tasks=2"),
        f"--dependency=afterok:{tasks}", "--job-name=finish", f"--output={tmp_path}/finish.out",
    )  # fmt: skip
    slurm_cluster.wait_idle(300)
    assert slurm_cluster.job_state(finish) == "COMPLETED", (tmp_path / "finish.out").read_text()[-3000:]
    cached = list((out / ".array" / "radiomics").rglob("*.json"))
    assert len(cached) == 11  # 6 real + 5 synthetic volumes, each featurised once by one task
    a = _numbers(json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"])
    b = _numbers(json.loads((out / "metrics.json").read_text())["metrics"])
    assert {"frd.value", "kid.value", "precision.value", "coverage.value"} <= set(a) and a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-9, rel=0), key
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one" / "per_image.csv"), pd.read_csv(out / "per_image.csv"), rtol=0, atol=1e-9
    )


def _numbers(tree, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON tree by its dotted path."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _numbers(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list):
        return {k: v for i, value in enumerate(tree) for k, v in _numbers(value, f"{prefix}{i}.").items()}
    if isinstance(tree, int | float) and not isinstance(tree, bool):
        return {prefix.rstrip("."): float(tree)}
    return {}
