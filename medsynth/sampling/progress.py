"""A rich progress bar for generation: volumes done, volumes/s and ETA, updated every network step."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class VolumesPerSecondColumn(ProgressColumn):
    """Throughput in volumes per second (or seconds per volume when slower than 1/s)."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("-- vol/s", style="progress.data.speed")
        if speed >= 1:
            return Text(f"{speed:.2f} vol/s", style="progress.data.speed")
        return Text(f"{1 / speed:.1f} s/vol", style="progress.data.speed")


class WholeMofNColumn(MofNCompleteColumn):
    """``done/total`` volumes, rounding the fractional progress within a batch down."""

    def render(self, task) -> Text:
        total = int(task.total) if task.total is not None else "?"
        return Text(f"{int(task.completed + 1e-6)}/{total}", style="progress.download")


def generation_progress(disable: bool = False) -> Progress:
    """The bar: description, bar, done/total volumes, volumes/s, elapsed, ETA."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        WholeMofNColumn(),
        VolumesPerSecondColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=disable,
        transient=False,
    )
