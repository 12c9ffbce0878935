"""``medsynth <stage> key=value ...``: the command-line dispatcher.

Each stage lives in its own module with ``main(argv: list[str]) -> int``. The dispatcher turns
:class:`~medsynth.errors.MedsynthError`, and errors raised by the I/O libraries (SQLAlchemy,
nibabel, SimpleITK, pydicom, file-system errors; :func:`medsynth.errors.library_error_line`),
into one line on stderr and a non-zero exit code. ``--verbose`` (anywhere on the command line) or
``MEDSYNTH_DEBUG=1`` adds the traceback and keeps the library messages :mod:`medsynth.quiet` filters.
Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from medsynth import __version__
from medsynth.errors import LIBRARY_ERROR_EXIT_CODE, MedsynthError, library_error_line
from medsynth.io.leftovers import Leftovers
from medsynth.quiet import silence_library_noise

#: flags that ask for tracebacks (removed before the stage sees its arguments)
VERBOSE_FLAGS = ("--verbose", "-v")
DEBUG_ENV = "MEDSYNTH_DEBUG"

STAGES: dict[str, tuple[str, str]] = {
    "data": ("medsynth.data.cli", "make demo datasets, prepare your own scans (demo | prepare)"),
    "train": ("medsynth.train", "train a 3D diffusion model (Hydra; -m for sweeps)"),
    "sample": ("medsynth.sampling.cli", "generate synthetic NIfTI volumes from a checkpoint"),
    "evaluate": ("medsynth.metrics.cli", "score synthetic volumes against real ones"),
    "study": ("medsynth.study.cli", "run a blinded reader study (create | add-reader | serve | export | demo | simulate)"),
    "analyze": ("medsynth.analysis.cli", "compare reader ratings with automatic metrics"),
    "utility": ("medsynth.utility.cli", "does synthetic data help a downstream model? (real vs synthetic vs both)"),
}

USAGE = (
    "usage: medsynth [--verbose] <stage> [subcommand] [key=value ...]   (medsynth <stage> --help for options)"
)


def format_help() -> str:
    lines = [f"medsynth {__version__}: synthetic 3D medical imaging, from NIfTI to reader study.", "", USAGE, "", "stages:"]
    width = max(len(name) for name in STAGES)
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in STAGES.items()]
    lines += [
        "",
        f"Errors are one line; --verbose (or {DEBUG_ENV}=1) adds the traceback.",
        "The loop: data -> train -> sample -> evaluate -> study -> analyze. See README.md.",
    ]
    return "\n".join(lines)


def debug_requested(args: Sequence[str]) -> bool:
    """``--verbose``/``-v`` among ``args``, or ``MEDSYNTH_DEBUG`` set to a true value."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return any(a in VERBOSE_FLAGS for a in args) or env not in ("", "0", "false", "no")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = debug_requested(args)
    args = [a for a in args if a not in VERBOSE_FLAGS]
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
    if not verbose:
        silence_library_noise()
    module = importlib.import_module(STAGES[stage][0])
    leftovers = Leftovers.before(rest)
    failed = True
    try:
        code = int(module.main(rest) or 0)
        failed = code != 0
        return code
    except MedsynthError as err:
        if verbose:
            traceback.print_exc()
        print(f"medsynth {stage}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"medsynth {stage}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `medsynth <stage> --help | head`: the reader went away, not an error
        sys.stderr.close()
        failed = False
        return 0
    except Exception as err:
        line = library_error_line(err)
        if line is None:
            raise  # a bug: keep the traceback
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else f" (--verbose or {DEBUG_ENV}=1 for the traceback)"
        print(f"medsynth {stage}: error: {line}{hint}", file=sys.stderr)
        return LIBRARY_ERROR_EXIT_CODE
    finally:
        if failed:
            leftovers.remove()  # a failed command leaves no new empty database or output folder


if __name__ == "__main__":
    sys.exit(main())
