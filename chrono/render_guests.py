"""How the CLI shows ready-made guests with rich: the progress of a fetch, and
the table of cached guests.  The library never imports this; it reports through
callbacks and returns plain objects."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from chrono.guests import CachedGuest, ProgressEvent, ProgressFn


@contextmanager
def progress_view(console: Console) -> Iterator[ProgressFn]:
    """A ProgressFn that shows each step as a line with a bar (at a terminal) or as
    a plain line per step (pipes and files)."""
    if not console.is_terminal:
        seen: list[str] = []

        def plain(event: ProgressEvent) -> None:
            if not seen or seen[-1] != event.step:
                seen.append(event.step)
                console.print(f"chrono: {event.step}", highlight=False, soft_wrap=True)

        yield plain
        return

    columns = (SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.description}"),
               BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
        current = {"step": None, "task": None}

        def show(event: ProgressEvent) -> None:
            if event.step != current["step"]:
                if current["task"] is not None:
                    bars.update(current["task"], total=1, completed=1)
                current["step"] = event.step
                current["task"] = bars.add_task(event.step, total=None)
            if event.fraction is not None:
                bars.update(current["task"], total=1, completed=event.fraction)

        try:
            yield show
            if current["task"] is not None:
                bars.update(current["task"], total=1, completed=1)
        finally:
            bars.stop()


def guests_table(guests: list[CachedGuest]) -> Table:
    table = Table(show_lines=True)
    table.add_column("guest", style="bold")
    table.add_column("size", justify="right")
    table.add_column("packages")
    table.add_column("path", overflow="fold")
    for guest in guests:
        if guest.manifest is not None:
            versions = Text("\n".join(f"{name} {version}"
                                      for name, version in guest.manifest.packages.items()))
            if guest.outdated:
                versions.append(f"\nbuilt by another chrono: `chrono guest fetch {guest.name}` "
                                "rebuilds it", style="yellow")
        else:
            versions = Text(guest.problem, style="red")
        table.add_row(guest.name, decimal(guest.size), versions, Text(str(guest.path)))
    return table
