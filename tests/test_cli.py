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


def _stage_raising(monkeypatch, error):
    class Fake:
        @staticmethod
        def main(argv):
            raise error

    monkeypatch.setattr(cli.importlib, "import_module", lambda name: Fake)


def test_library_errors_are_one_line_traceback_only_when_verbose(monkeypatch, capsys, tmp_path):
    import sqlite3

    from sqlalchemy.exc import DatabaseError

    monkeypatch.delenv("MEDSYNTH_DEBUG", raising=False)
    error = DatabaseError("PRAGMA journal_mode=WAL", {}, sqlite3.DatabaseError("file is not a database"))
    _stage_raising(monkeypatch, error)
    assert cli.main(["study", "export"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "database: file is not a database" in err[0] and "--verbose" in err[0], err
    assert cli.main(["study", "export", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("medsynth study: error: database:")
    monkeypatch.setenv("MEDSYNTH_DEBUG", "1")
    assert cli.main(["study", "export"]) == 1 and "Traceback" in capsys.readouterr().err


def test_file_system_and_simpleitk_errors_name_the_file(monkeypatch, capsys, tmp_path):
    import SimpleITK as sitk

    monkeypatch.delenv("MEDSYNTH_DEBUG", raising=False)
    _stage_raising(monkeypatch, IsADirectoryError(21, "Is a directory", str(tmp_path)))
    assert cli.main(["evaluate"]) == 1
    assert capsys.readouterr().err.startswith(f"medsynth evaluate: error: {tmp_path}: Is a directory")
    bad = tmp_path / "scan.mha"
    bad.write_text("not an image")
    try:
        sitk.ReadImage(str(bad))
    except RuntimeError as err:
        _stage_raising(monkeypatch, err)
    assert cli.main(["evaluate"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SimpleITK" in err[0] and "scan.mha" in err[0], err


def test_a_bug_keeps_its_traceback(monkeypatch):
    _stage_raising(monkeypatch, ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        cli.main(["evaluate"])
