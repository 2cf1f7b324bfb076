"""Questions a debugger asks of a recording, answered by replaying only what
they need: where the pc reached an address, what changed between two
positions.  (chrono.replay.timeline does the moving.)"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chrono.errors import UsageError
from chrono.store.manifest import SnapshotDiff, snapshot_diff
from chrono.replay.timeline import Timeline

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
    for position in (first, second):
        if not t.start <= position <= t.end:
            raise UsageError(f"position {position} is outside recording {t.replayer.name!r} "
                             f"(instructions {t.start} to {t.end})")
    snaps = t.replayer.snapshots
    t.seek(first)
    a = snaps.store.get_snapshot(snaps.save())
    t.seek(second)
    b = snaps.store.get_snapshot(snaps.save())
    with snaps.store.reader() as r:
        return snapshot_diff(r, a, b), a, b


@dataclass(frozen=True)
class Printed:
    first: int              # position of the instruction that wrote its first byte
    last: int               # ... and its last byte
    context: str            # the line it is on


def output(t: Timeline, text: str, limit: int = 100) -> list[Printed]:
    """Where the guest's console printed `text` (every occurrence, up to `limit`)."""
    needle = text.encode()
    if not needle:
        return []
    chunks, positions = [], []

    def seen(data: bytes, where: np.ndarray) -> None:
        chunks.append(data)
        positions.append(where)

    t.seek(t.start)
    t.replayer.output_steps = seen
    try:
        t._forward(t.end)
        t.replayer._drain()
    finally:
        t.replayer.output_steps = None
    data = b"".join(chunks)
    where = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    found, at = [], data.find(needle)
    while at >= 0 and len(found) < limit:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        line = data[start:end if end >= 0 else len(data)].decode("utf-8", "replace").strip()
        found.append(Printed(int(where[at]), int(where[at + len(needle) - 1]), line))
        at = data.find(needle, at + 1)
    return found
