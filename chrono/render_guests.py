"""How the CLI shows ready-made guests: the progress of a fetch (rich), and the
table of cached guests (chrono.render draws it) with its --json record.  The
library never imports this; it reports through callbacks and returns plain objects."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn)

from chrono.guests import CachedGuest, ProgressEvent, ProgressFn
from chrono.render import Column, Grid, Styled


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


def guests_table(guests: list[CachedGuest]) -> Grid:
    t = Grid("", [Column("guest", bold=True), Column("size", right=True), Column("packages", wrap=True),
                  Column("path", wrap=True)], lines=True)
    for guest in guests:
        if guest.manifest is not None:
            versions: list = [f"{name} {version}"
                              for name, version in guest.manifest.packages.items()]
            if guest.outdated:
                versions.append(Styled(f"built by another chrono: `chrono guest fetch "
                                       f"{guest.name}` rebuilds it", "yellow"))
        else:
            versions = [Styled(guest.problem, "red")]
        t.add(guest.name, decimal(guest.size), versions, str(guest.path))
    return t


def guest_record(guest: CachedGuest) -> dict:
    """A guest in `guest list --json`."""
    return {"name": guest.name, "path": str(guest.path), "size_bytes": guest.size,
            "packages": guest.manifest.packages if guest.manifest is not None else None,
            "problem": guest.problem or None, "outdated": guest.outdated}
