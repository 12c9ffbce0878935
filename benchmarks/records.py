"""Benchmark records: ``{name, value, unit, detail}`` rows, their JSON file and a markdown table."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Record:
    """One measured figure. ``detail`` says how it was measured (shapes, repeats, raw timings)."""

    name: str
    value: float | None
    unit: str
    detail: dict[str, Any] = field(default_factory=dict)


class RecordBook:
    """Records in the order they were measured; :meth:`write` saves JSON + markdown atomically."""

    def __init__(self, out: str | Path | None = None) -> None:
        self.records: list[Record] = []
        self.out = out
        self.extra_markdown: list[str] = []  # tables appended to the markdown (e.g. the step profile)

    def add(self, name: str, value: float | None, unit: str, **detail: Any) -> Record:
        """Record a figure, print it, and rewrite the output files (an interrupted run keeps what it measured)."""
        record = Record(name, None if value is None else float(value), unit, detail)
        self.records.append(record)
        print(f"  {name} = {format_value(record.value)} {unit}", flush=True)
        if self.out is not None:
            self.write(self.out)
        return record

    def replace(self, name: str, value: float | None, unit: str, **detail: Any) -> Record:
        """Like :meth:`add`, but drop an earlier record of the same name first (progress records)."""
        self.records = [r for r in self.records if r.name != name]
        return self.add(name, value, unit, **detail)

    def get(self, name: str) -> Record | None:
        return next((r for r in self.records if r.name == name), None)

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.records], indent=2, default=str)

    def markdown(self) -> str:
        lines = ["| name | value | unit | detail |", "|---|---:|---|---|"]
        for r in self.records:
            lines.append(f"| {r.name} | {format_value(r.value)} | {r.unit} | {short_detail(r.detail)} |")
        return "\n".join(lines) + "\n" + self.ablation_markdown() + "".join("\n" + t for t in self.extra_markdown)

    def ablation_markdown(self) -> str:
        """The ``ablation_train_<side>[variant]`` / ``ablation_denoise_<side>[variant]`` records as one
        table with the speedup of each variant over the first (the baseline); empty without them."""
        rows: dict[str, dict[str, float | None]] = {}
        for r in self.records:
            for kind in ("train", "denoise"):
                prefix = f"ablation_{kind}_"
                if r.name.startswith(prefix) and "[" in r.name:
                    variant = r.name[r.name.index("[") + 1 : -1]
                    rows.setdefault(variant, {})[kind] = r.value
        if not rows:
            return ""
        first = next(iter(rows.values()))
        lines = [
            "",
            "| variant | train s/step | train x | denoise s/step | denoise x |",
            "|---|---:|---:|---:|---:|",
        ]
        for variant, values in rows.items():
            cells = []
            for kind in ("train", "denoise"):
                value, base = values.get(kind), first.get(kind)
                speedup = base / value if value and base else None
                cells += [format_value(value), format_value(speedup)]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> tuple[Path, Path]:
        """Write ``out`` (JSON list) and ``out`` with suffix ``.md`` (the table), each via temp + rename."""
        out = Path(out)
        md = out.with_suffix(".md")
        for path, text in ((out, self.to_json()), (md, self.markdown())):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)
        return out, md


def format_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def short_detail(detail: dict[str, Any], limit: int = 160) -> str:
    """The detail dict on one line for the table (raw timing lists are left to the JSON)."""
    parts = []
    for key, value in detail.items():
        if isinstance(value, list) and len(value) > 4:
            continue
        if isinstance(value, float):
            value = format_value(value)
        parts.append(f"{key}={value}")
    text = ", ".join(parts).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."
