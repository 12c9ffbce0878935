"""``medsynth <stage> key=value ...``: the command-line dispatcher.

Each stage lives in its own module with ``main(argv: list[str]) -> int``. The dispatcher turns
:class:`~medsynth.errors.MedsynthError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from medsynth import __version__
from medsynth.errors import MedsynthError

STAGES: dict[str, tuple[str, str]] = {
    "data": ("medsynth.data.cli", "make demo datasets, prepare your own scans (demo | prepare)"),
    "train": ("medsynth.train", "train a 3D diffusion model (Hydra; -m for sweeps)"),
    "sample": ("medsynth.sampling.cli", "generate synthetic NIfTI volumes from a checkpoint"),
    "evaluate": ("medsynth.metrics.cli", "score synthetic volumes against real ones"),
    "study": ("medsynth.study.cli", "run a blinded reader study (create | add-reader | serve | export | demo | simulate)"),
    "analyze": ("medsynth.analysis.cli", "compare reader ratings with automatic metrics"),
    "utility": ("medsynth.utility.cli", "does synthetic data help a downstream model? (real vs synthetic vs both)"),
}

USAGE = "usage: medsynth <stage> [subcommand] [key=value ...]   (medsynth <stage> --help for options)"


def format_help() -> str:
    lines = [f"medsynth {__version__}: synthetic 3D medical imaging, from NIfTI to reader study.", "", USAGE, "", "stages:"]
    width = max(len(name) for name in STAGES)
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in STAGES.items()]
    lines += ["", "The loop: data -> train -> sample -> evaluate -> study -> analyze. See README.md."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(format_help())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"medsynth {__version__}")
        return 0
    stage, rest = args[0], args[1:]
    if stage not in STAGES:
        print(f"medsynth: error: unknown stage '{stage}' (choose from {', '.join(STAGES)})", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    try:
        return int(module.main(rest) or 0)
    except MedsynthError as err:
        print(f"medsynth {stage}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"medsynth {stage}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `medsynth <stage> --help | head`: the reader went away, not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
