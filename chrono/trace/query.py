"""Questions a debugger asks of a recording, answered by replaying only what
they need: where the pc reached an address, what changed between two
positions.  (chrono.trace.timeline does the moving.)"""
from __future__ import annotations

from dataclasses import dataclass

from chrono.store.manifest import SnapshotDiff, snapshot_diff
from chrono.trace.timeline import Timeline

MAX_HITS = 100_000


@dataclass
class Hits:
    positions: list[int]
    truncated: bool             # more than MAX_HITS


def hits(t: Timeline, pc: int, start: int | None = None, end: int | None = None,
         limit: int = MAX_HITS) -> Hits:
    """Positions in [start, end) where the hart is about to execute `pc`."""
    start = t.start if start is None else max(start, t.start)
    end = t.end if end is None else min(end, t.end)
    t.seek(start)
    found = []
    had = pc in t.breakpoints
    t.add_breakpoint(pc)
    try:
        if t.pc == pc and t.position < end:
            found.append(t.position)
        while len(found) <= limit:
            halt = t.cont()
            if halt.reason != "breakpoint" or halt.position >= end:
                break
            found.append(halt.position)
    finally:
        if not had:
            t.remove_breakpoint(pc)
    return Hits(found[:limit], len(found) > limit)


def diff(t: Timeline, first: int, second: int) -> tuple[SnapshotDiff, object, object]:
    """Which RAM pages, disk blocks and CPU/device state differ between two
    positions; also the two (temporary, unnamed) snapshots compared."""
    snaps = t.replayer.snapshots
    t.seek(first)
    a = snaps.store.get_snapshot(snaps.save())
    t.seek(second)
    b = snaps.store.get_snapshot(snaps.save())
    with snaps.store.reader() as r:
        return snapshot_diff(r, a, b), a, b
