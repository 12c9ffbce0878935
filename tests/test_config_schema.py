"""Typed configs: every stage's composed config is checked against its schema before any work.

Each bad value is one line naming the key (exit 2), through the real CLI, before anything is
written; every stage's defaults pass; every key a schema names exists in its config.
"""

from dataclasses import fields, is_dataclass

import pytest
from omegaconf import OmegaConf

from medsynth import cli
from medsynth.config import compose_stage
from medsynth.config_schema import SCHEMAS, schema_for, validate_config
from medsynth.errors import ConfigError


def _leaf_keys(schema, prefix=""):
    for spec in fields(schema):
        factory = spec.default_factory
        if callable(factory) and is_dataclass(factory):
            yield from _leaf_keys(factory, f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}"


def _declared(cfg, key):
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return node is not None and name in node.keys()


@pytest.mark.parametrize("config_name", sorted(SCHEMAS))
def test_defaults_pass_and_schema_keys_exist(config_name):
    cfg = compose_stage(config_name)  # validates
    assert schema_for(config_name) is SCHEMAS[config_name]
    missing = [key for key in _leaf_keys(SCHEMAS[config_name]) if not _declared(cfg, key)]
    assert not missing, f"schema keys not in conf/{config_name}.yaml: {missing}"


def _one_line_error(capsys, argv, key, words):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"error: {key}:" in err[0] and words in err[0], err[0]


@pytest.mark.parametrize(
    "argv, key, words",
    [
        (["sample", "num_samples=abc", "ckpt=x.ckpt", "out_dir=o"], "num_samples", "expected an integer, got 'abc'"),
        (["sample", "num_samples=0", "ckpt=x.ckpt", "out_dir=o"], "num_samples", "must be >= 1"),
        (["train", "optim.lr=abc", "data.root=."], "optim.lr", "expected a number, got 'abc'"),
        (["train", "trainer.precision=fp8", "data.root=."], "trainer.precision", "unknown value 'fp8'"),
        (["train", "data.val_fraction=1.5", "data.root=."], "data.val_fraction", "must be <= 1.0"),
        (["study", "create", "repeat_fraction=2", "db=x.db"], "repeat_fraction", "must be <= 1.0"),
        (["study", "create", "db=foo://host/x"], "db", "unknown database driver 'foo'"),
        (["analyze", "alpha=0", "out_dir=o", "ratings=r.csv"], "alpha", "must be > 0.0"),
        (["evaluate", "kid.degree=0", "real_dir=a", "synthetic_dir=b", "out_dir=o"], "kid.degree", ">= 1"),
        (["data", "prepare", "input=a", "out_dir=o", "on_duplicate=sometimes"], "on_duplicate", "unknown value"),
        (["data", "demo", "n=many"], "n", "expected an integer"),
        (["data", "prepare", "input=a", "out_dir=o", "progress=maybe"], "progress", "expected true or false"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(capsys, tmp_path, monkeypatch, argv, key, words):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, argv, key, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_out_dir_that_is_a_file(capsys, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    for argv in (
        ["data", "prepare", f"input={tmp_path}", f"out_dir={existing}"],
        ["data", "demo", "n=2", f"out_dir={existing}"],
        ["evaluate", f"real_dir={tmp_path}", f"synthetic_dir={tmp_path}", f"out_dir={existing}"],
        ["sample", "ckpt=x.ckpt", f"out_dir={existing}"],
    ):
        _one_line_error(capsys, argv, "out_dir", "exists and is not a folder")
    assert existing.read_text() == "mine"


def test_db_that_is_not_a_database(capsys, tmp_path):
    text = tmp_path / "ratings.csv"
    text.write_text("reader_id,case_id\n")
    for db in (str(text), f"sqlite:///{text}"):
        _one_line_error(capsys, ["study", "export", f"db={db}", f"out={tmp_path / 'r.csv'}"], "db", "not a SQLite database")
        _one_line_error(capsys, ["analyze", f"db={db}", f"out_dir={tmp_path / 'a'}"], "db", "not a SQLite database")
    _one_line_error(capsys, ["study", "export", f"db={tmp_path}", "out=r.csv"], "db", "is a folder")
    assert text.read_text() == "reader_id,case_id\n" and not (tmp_path / "a").exists()


def test_validate_config_accepts_new_and_valid_values(tmp_path):
    cfg = compose_stage("study", [f"db={tmp_path / 'new.db'}", "repeat_fraction=0", "port=8502"])
    validate_config(cfg, "study")
    cfg = OmegaConf.merge(cfg, {"repeat_fraction": -0.1})
    with pytest.raises(ConfigError, match="repeat_fraction: must be >= 0.0"):
        validate_config(cfg, "study")
