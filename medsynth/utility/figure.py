"""The learning-curve figure of ``medsynth utility`` (matplotlib, written headless)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

ARM_STYLE = {"real": ("tab:blue", "o"), "real+synthetic": ("tab:green", "s"), "synthetic": ("tab:orange", "^")}


def learning_curve(summary: dict, path: str | Path | BinaryIO, dpi: int = 120) -> None:
    """Score (y) against real training subjects (x) per arm, with the bootstrap intervals; PNG to ``path``.

    The synthetic-only arm has no real subjects: a horizontal line with its interval as a band.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=dpi)
    for arm, (colour, marker) in ARM_STYLE.items():
        rows = sorted((r for r in summary["results"] if r["arm"] == arm), key=lambda r: r["n_real"])
        if not rows:
            continue
        if arm == "synthetic":
            r = rows[0]
            ax.axhline(r["score"], color=colour, linestyle="--", label=f"synthetic only ({r['n_synthetic']})")
            if r["ci"][0] is not None:
                ax.axhspan(r["ci"][0], r["ci"][1], color=colour, alpha=0.15)
            continue
        x = [r["n_real"] for r in rows]
        y = [r["score"] for r in rows]
        low = [r["score"] - r["ci"][0] if r["ci"][0] is not None else 0.0 for r in rows]
        high = [r["ci"][1] - r["score"] if r["ci"][1] is not None else 0.0 for r in rows]
        ax.errorbar(x, y, yerr=[low, high], color=colour, marker=marker, capsize=3, label=arm)
    ax.set_xscale("log", base=2)
    sizes = sorted({r["n_real"] for r in summary["results"] if r["n_real"] > 0})
    if sizes:
        ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("real training subjects")
    ax.set_ylabel(f"{summary['score']} on {summary['n_test']} held-out real subjects")
    ax.set_title(f"Downstream {summary['task']}: does synthetic data help?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path if hasattr(path, "write") else str(path), format="png")
    plt.close(fig)
