"""Questions asked for every case, loaded from YAML and validated; answers checked against them.

A questions file is ``{"questions": [ {key, type, text, ...}, ... ]}`` with types:

- ``bool``: ``labels: {true: "...", false: "..."}``; the value is true/false.
- ``choice``: ``options: [ ... ]`` (strings); the value is one option.
- ``likert``: integer ``min``..``max`` (default 1..5), optional ``anchors: {1: "...", 5: "..."}``.
- ``text``: free text up to ``max_length`` characters (default 2000).

Every question has ``required`` (default true; text defaults to false).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from medsynth.errors import ConfigError, InputFileError, MedsynthError

TYPES = ("bool", "choice", "likert", "text")
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class AnswerError(MedsynthError):
    """An answer that does not fit its question (unknown key, out of range, missing)."""


def load_questions(path: str | Path) -> list[dict]:
    """Read and validate a questions YAML file; return the normalised question list.

    Raises:
        InputFileError: missing or unreadable file, or invalid questions (the reason names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "questions file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise InputFileError(path, f"not valid YAML ({' '.join(str(err).split())[:150]})") from None
    try:
        return validate_questions(data)
    except ConfigError as err:
        raise InputFileError(path, str(err)) from None


def validate_questions(data: Any) -> list[dict]:
    """Check a parsed questions document; return the question dicts with defaults filled in.

    Raises:
        ConfigError: naming the offending ``questions[i].field``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list) or not data["questions"]:
        raise ConfigError("questions", "expected a mapping with a non-empty list 'questions'")
    out, seen = [], set()
    for i, q in enumerate(data["questions"]):
        where = f"questions[{i}]"
        if not isinstance(q, dict):
            raise ConfigError(where, "expected a mapping")
        key = q.get("key")
        if not isinstance(key, str) or not key or set(key) - _KEY_CHARS:
            raise ConfigError(f"{where}.key", "must be lower_snake_case letters, digits, _")
        if key in seen:
            raise ConfigError(f"{where}.key", f"duplicate key '{key}'")
        seen.add(key)
        qtype = q.get("type")
        if qtype not in TYPES:
            raise ConfigError(f"{where}.type", f"must be one of {', '.join(TYPES)}")
        text = q.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}.text", "must be a non-empty string")
        norm = {"key": key, "type": qtype, "text": text, "help": str(q.get("help", ""))}
        norm["required"] = bool(q.get("required", qtype != "text"))
        if qtype == "bool":
            labels = q.get("labels") or {True: "Yes", False: "No"}
            if not isinstance(labels, dict) or set(labels) != {True, False}:
                raise ConfigError(f"{where}.labels", "needs exactly the keys true and false")
            norm["labels"] = {"true": str(labels[True]), "false": str(labels[False])}
        elif qtype == "choice":
            options = q.get("options")
            if (
                not isinstance(options, list)
                or len(options) < 2
                or len(set(map(str, options))) != len(options)
            ):
                raise ConfigError(f"{where}.options", "needs a list of at least 2 distinct options")
            norm["options"] = [str(o) for o in options]
        elif qtype == "likert":
            lo, hi = q.get("min", 1), q.get("max", 5)
            if not isinstance(lo, int) or not isinstance(hi, int) or isinstance(lo, bool) or hi <= lo:
                raise ConfigError(f"{where}.min", "min and max must be integers with min < max")
            anchors = q.get("anchors") or {}
            if not isinstance(anchors, dict) or any(
                not isinstance(k, int) or not lo <= k <= hi for k in anchors
            ):
                raise ConfigError(f"{where}.anchors", f"keys must be integers in {lo}..{hi}")
            norm.update(min=lo, max=hi, anchors={str(k): str(v) for k, v in anchors.items()})
        else:
            max_length = q.get("max_length", 2000)
            if not isinstance(max_length, int) or max_length < 1:
                raise ConfigError(f"{where}.max_length", "must be a positive integer")
            norm["max_length"] = max_length
        out.append(norm)
    return out


def validate_answers(questions: list[dict], answers: dict[str, Any]) -> dict[str, str]:
    """Check every answer against its question; return ``{key: JSON text}`` ready to store.

    Unanswered optional questions are left out. Raises :class:`AnswerError` for an unknown
    question, a missing required answer, or a value of the wrong type or out of range.
    """
    by_key = {q["key"]: q for q in questions}
    unknown = sorted(set(answers) - set(by_key))
    if unknown:
        raise AnswerError(f"unknown question '{unknown[0]}'")
    stored: dict[str, str] = {}
    for key, q in by_key.items():
        value = answers.get(key)
        if value is None or (q["type"] == "text" and isinstance(value, str) and not value.strip()):
            if q["required"]:
                raise AnswerError(f"question '{key}' needs an answer")
            continue
        stored[key] = json.dumps(_check_value(q, value))
    return stored


def _check_value(q: dict, value: Any) -> Any:
    key, qtype = q["key"], q["type"]
    if qtype == "bool":
        if not isinstance(value, bool):
            raise AnswerError(f"question '{key}' takes true or false, got {value!r}")
        return value
    if qtype == "choice":
        if value not in q["options"]:
            raise AnswerError(f"question '{key}': {value!r} is not one of {q['options']}")
        return value
    if qtype == "likert":
        if isinstance(value, bool) or not isinstance(value, int) or not q["min"] <= value <= q["max"]:
            raise AnswerError(f"question '{key}' takes an integer in {q['min']}..{q['max']}, got {value!r}")
        return int(value)
    if not isinstance(value, str) or len(value) > q["max_length"]:
        raise AnswerError(f"question '{key}' takes text of at most {q['max_length']} characters")
    return value

