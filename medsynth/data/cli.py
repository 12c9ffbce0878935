"""``medsynth data demo|prepare key=value ...``: the data stage entry point."""

from __future__ import annotations

from collections.abc import Sequence

from medsynth.config import compose_stage, format_defaults

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "data_demo",
        "Write an embedded demo dataset: procedural head phantoms (dataset=phantom) or a population of\n"
        "T1 brains made from nilearn's MNI152 2009a template (dataset=brain, needs nilearn).\n"
        "Output: out_dir/<subject_id>.nii.gz (float32, RAS affine in mm) + out_dir/manifest.csv.\n"
        "Example: medsynth data demo dataset=brain n=20 shape=[64,64,64] seed=0 out_dir=data/demo/brain",
    ),
    "prepare": (
        "data_prepare",
        "Turn your scans into a training-ready folder: input is a folder (recursive .nii/.nii.gz/.mha/.nrrd\n"
        "and DICOM series folders), a CSV manifest (column `path` or `file`, plus labels/covariates) or a\n"
        "Decathlon dataset.json. Each volume is reoriented to RAS, resampled to `spacing`, normalised to\n"
        "[-1, 1] (intensity.mode=mr|ct|none), cropped to the foreground and padded/resized to `shape`.\n"
        "Output: out_dir/<subject_id>.nii.gz + manifest.csv + preprocessing.json (+ skipped.csv).\n"
        "Bad files: listed one per line and nothing written (on_error=stop), or skipped (on_error=skip).\n"
        "Example: medsynth data prepare input=data/demo/brain out_dir=data/prepared/brain shape=[64,64,64]",
    ),
}

USAGE = "usage: medsynth data {demo|prepare} [key=value ...]   (medsynth data <subcommand> --help)"


def format_help() -> str:
    lines = [USAGE, "", "subcommands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name.ljust(8)} {text.splitlines()[0]}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Dispatch ``demo`` / ``prepare``; return the exit code (MedsynthError propagates to medsynth.cli)."""
    import sys

    args = list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(format_help())
        return 0
    sub, overrides = args[0], args[1:]
    if sub not in SUBCOMMANDS:
        print(
            f"medsynth data: error: unknown subcommand '{sub}' (choose from demo, prepare)", file=sys.stderr
        )
        return 2
    config_name, description = SUBCOMMANDS[sub]
    if any(a in ("-h", "--help") for a in overrides):
        print(
            f"usage: medsynth data {sub} [key=value ...]\n\n{description}\n\ndefaults ({config_name}.yaml):\n"
        )
        print(format_defaults(config_name))
        return 0
    if sub == "prepare":
        overrides = [_intensity_shorthand(o) for o in overrides]
    cfg = compose_stage(config_name, overrides)
    if sub == "demo":
        from medsynth.data.demo import run_demo

        return run_demo(cfg)
    from medsynth.data.prepare import run_prepare

    return run_prepare(cfg)


def _intensity_shorthand(override: str) -> str:
    """``intensity=mr`` (the documented short form) means ``intensity.mode=mr``."""
    key, _, value = override.partition("=")
    if key == "intensity" and value and not value.startswith("{"):
        return f"intensity.mode={value}"
    return override
