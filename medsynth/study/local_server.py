"""The reader-study app on a local port, for browser tests and the viewer benchmark.

Starts ``medsynth study serve``'s Streamlit command line (:func:`medsynth.study.cli.streamlit_command`)
as a child process, waits for ``/_stcore/health`` and stops it on exit. Headless Chromium (Debian's
``chromium``) is driven with :data:`CHROMIUM_ARGS`: no GPU is needed, the viewer draws on 2D canvases.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from omegaconf import DictConfig

#: headless Chromium flags for Playwright (DOMAIN.md): no sandbox as root, no background traffic
CHROMIUM_ARGS = (
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
)  # fmt: skip


def chromium_path() -> str | None:
    """Debian's chromium executable, or None when it is not installed."""
    return shutil.which("chromium")


class LocalStudyServer:
    """``with LocalStudyServer(cfg, workdir) as base_url: ...`` (cfg: the composed ``study`` config)."""

    def __init__(self, cfg: DictConfig, workdir: str | Path, start_timeout_s: float = 40.0):
        self.cfg, self.workdir, self.start_timeout_s = cfg, Path(workdir), float(start_timeout_s)
        self.base_url = f"http://127.0.0.1:{int(cfg.port)}"
        self.log_path = self.workdir / "streamlit.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        from medsynth.study.cli import serve_env, streamlit_command

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            streamlit_command(self.cfg), env=serve_env(self.cfg), stdout=self._log,
            stderr=subprocess.STDOUT, cwd=self.workdir,
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{self.base_url}/_stcore/health", timeout=1).read() == b"ok":
                    return self.base_url
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
            self._log.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
