"""Bytes the reader-study viewer sends per case, per coding (by hand; not part of the test run).

For each folder of volumes, every file goes through the study's display preprocessing at ``--grid``
(RAS, trilinear resampling) and 12-bit quantisation (``render.viewer.levels`` 4096), then through
each coding of :mod:`medsynth.study.viewer_payload`; the figure is the smallest whole message (header
block + zlib stream, ``ViewerPayload.smallest_message``) in MB. ``packed12`` is the uncompressed
12-bit stack (two voxels in three bytes) that the viewer sent before, ``words16`` zlib over plain
16-bit words, for comparison. A study sends every case at its largest case's size, with the coding
whose largest case is smallest (``coding: auto``).

    .venv/bin/python benchmarks/viewer_coding.py data/demo/brain data/demo/phantom --grid 128
    .venv/bin/python benchmarks/viewer_coding.py DIR --noise 0.02 0.05   # plus noisy copies

``--noise s`` adds copies with Gaussian noise of s times each volume's 99th percentile (stand-ins
for noisy synthetic volumes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sizes(volume: np.ndarray, level: int) -> dict[str, float]:
    """Message MB per coding, and seconds per coding (deflate included)."""
    from medsynth.study.viewer_payload import CODINGS, HEADER_BLOCK, build_payload, quantise

    render = {"grid": list(volume.shape), "default_preset": "auto", "presets": {},
              "viewer": {"levels": 4096, "deflate_level": level}}  # fmt: skip
    out = {"packed12": (4 + HEADER_BLOCK + volume.size * 3 / 2) / 1e6}
    q = quantise(volume, 4096)[0]
    out["words16"] = (4 + HEADER_BLOCK + len(zlib.compress(q.astype("<u2").tobytes(), level))) / 1e6
    for coding in CODINGS:
        start = time.perf_counter()
        payload = build_payload(volume, (1, 1, 1), {**render, "viewer": {**render["viewer"], "coding": coding}})
        out[f"{coding}_s"] = time.perf_counter() - start
        out[coding] = payload.smallest_message() / 1e6
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--limit", type=int, default=4, help="volumes per folder")
    parser.add_argument("--noise", type=float, nargs="*", default=[])
    parser.add_argument("--deflate-level", type=int, default=6)
    args = parser.parse_args(argv)

    from medsynth.data.reading import VOLUME_SUFFIXES
    from medsynth.study.rendering import load_display_volume

    rng = np.random.default_rng(0)
    rows = []
    for folder in args.folders:
        files = sorted(p for p in folder.iterdir() if p.name.endswith(VOLUME_SUFFIXES))[: args.limit]
        if not files:
            print(f"viewer_coding: {folder} holds no volumes", file=sys.stderr)
            return 2
        volumes = {"": [load_display_volume(f, [args.grid] * 3) for f in files]}
        for s in args.noise:
            volumes[f" + noise {s}"] = [
                v + rng.normal(0, s * np.percentile(v, 99), v.shape).astype(np.float32) for v in volumes[""]
            ]
        for suffix, group in volumes.items():
            measured = [sizes(v, args.deflate_level) for v in group]
            row = {"set": f"{folder.name}{suffix}", "n": len(group)}
            for key in measured[0]:
                values = [m[key] for m in measured]
                row[key] = {"median": round(float(np.median(values)), 3), "max": round(float(max(values)), 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = ["packed12", "words16", "planes", "diff3d"]
    print(f"\n| set ({args.grid}^3) | " + " | ".join(keys) + " | deflate s (planes / diff3d) |")
    print("|---" * (len(keys) + 2) + "|")
    for r in rows:
        cells = " | ".join(f"{r[k]['median']:.2f} ({r[k]['max']:.2f})" for k in keys)
        print(f"| {r['set']} (n={r['n']}) | {cells} | {r['planes_s']['median']:.2f} / {r['diff3d_s']['median']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
