"""A real one-node SLURM cluster on loopback for the tests: munged + slurmctld + slurmd.

Debian's ``slurm-wlm`` (22.05) and ``munge`` run from ``tests/slurm/slurm.conf.in``; every file they
write (state, spool, logs, the munge key and socket) lives in one temporary folder, on free ports, so
the cluster neither needs nor touches /etc. :class:`SlurmCluster` starts the daemons as child
processes, waits until the node is idle and stops them (and any job left) on :meth:`stop`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

TEMPLATE = Path(__file__).parent / "slurm" / "slurm.conf.in"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
MISSING_MESSAGE = (
    "SLURM tests need Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge; .ci/run installs them)"
)


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin") / name)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SlurmCluster:
    """One partition (``debug``) with one node (this host) declaring ``cpus`` CPUs.

    ``env`` is the environment for SLURM clients (``sbatch``, ``squeue``, submitit): it points
    ``SLURM_CONF`` at this cluster's config.
    """

    def __init__(self, workdir: Path, cpus: int = 4, memory_mb: int = 8000):
        self.workdir = Path(workdir)
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.hostname = socket.gethostname()
        self.conf = self.workdir / "slurm.conf"
        self._procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------------------------------ start/stop
    def start(self, timeout: float = 60.0) -> SlurmCluster:
        w = self.workdir
        for sub in ("munge", "state", "spool", "log"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / "munge").chmod(0o700)
        key = w / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, slurmd_port = _free_ports(2)
        self.conf.write_text(
            TEMPLATE.read_text().format(
                workdir=w,
                hostname=self.hostname,
                ctld_port=ctld_port,
                slurmd_port=slurmd_port,
                user=getpass.getuser(),
                cpus=self.cpus,
                memory_mb=self.memory_mb,
            )
        )
        munge = w / "munge"
        self._spawn(
            [
                _which("munged"), "--foreground", "--force",
                f"--socket={munge / 'munge.socket'}", f"--key-file={key}",
                f"--log-file={w / 'log' / 'munged.log'}", f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
            "munged",
        )  # fmt: skip
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged socket")
        self._spawn([_which("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._wait(lambda: self._ok(["scontrol", "ping"]), timeout, "slurmctld to answer")
        self._spawn([_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.hostname], "slurmd")
        self._wait(lambda: self.node_state() == "idle", timeout, "the node to be idle")
        return self

    def stop(self) -> None:
        if self._procs:
            subprocess.run(["scancel", "--full", "--user", getpass.getuser()], env=self.env, capture_output=True)
            self._wait(lambda: not self.queue(), 20.0, "jobs to end", raise_=False)
        for proc in reversed(self._procs):  # slurmd, slurmctld, munged
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ queries
    def run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, **kwargs)

    def node_state(self) -> str:
        proc = self.run(["sinfo", "-h", "-N", "-o", "%T"])
        return proc.stdout.strip().rstrip("*") if proc.returncode == 0 else ""

    def queue(self) -> list[str]:
        """``JOBID STATE`` lines of the jobs still known to slurmctld as pending or running."""
        proc = self.run(["squeue", "-h", "-o", "%i %T"])
        return [line for line in proc.stdout.splitlines() if line.strip()]

    def job_state(self, job_id: str) -> str:
        proc = self.run(["scontrol", "show", "job", "-o", str(job_id)])
        for field in proc.stdout.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return ""

    def wait_idle(self, timeout: float = 300.0) -> None:
        """Wait until no job is pending or running."""
        self._wait(lambda: not self.queue(), timeout, "the queue to drain")

    def log_tail(self, name: str = "slurmctld", chars: int = 3000) -> str:
        path = self.workdir / "log" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ------------------------------------------------------------------------------------------ helpers
    def _spawn(self, cmd: list[str], name: str) -> None:
        out = open(self.workdir / "log" / f"{name}.stdout", "wb")  # noqa: SIM115 (kept open for the daemon)
        self._procs.append(
            subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        )

    def _ok(self, args: list[str]) -> bool:
        return self.run(args).returncode == 0

    def _wait(self, ready, timeout: float, what: str, raise_: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self._procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                if not raise_:
                    return
                self.stop()
                logs = "\n".join(self.log_tail(n, 1500) for n in ("slurmctld", "slurmd", "munged"))
                raise RuntimeError(f"SLURM test cluster: gave up waiting for {what} (exited: {dead})\n{logs}")
            time.sleep(0.3)
