"""The dispatcher: help, unknown stages, one-line errors."""

import subprocess
import sys

import pytest

from medsynth import cli
from medsynth.errors import ConfigError


def test_help_lists_every_stage(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in ("data", "train", "sample", "evaluate", "study", "analyze"):
        assert f"  {stage}" in out


def test_unknown_stage_is_one_line_and_nonzero(capsys):
    assert cli.main(["bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus" in err[0]


def test_medsynth_error_becomes_one_line(monkeypatch, capsys):
    class Fake:
        @staticmethod
        def main(argv):
            raise ConfigError("data.root", "folder does not exist")

    monkeypatch.setattr(cli.importlib, "import_module", lambda name: Fake)
    assert cli.main(["data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["medsynth data: error: data.root: folder does not exist"]


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_console_script_runs(args):
    proc = subprocess.run([sys.executable, "-m", "medsynth.cli", *args], capture_output=True, text=True)
    assert proc.returncode == 0 and "medsynth" in proc.stdout
