"""How the CLI shows the snapshot store with rich: tables and verify's progress.

The store library never imports this; it returns plain objects and reports
progress through callbacks.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from chrono.core.board import RAM_BASE
from chrono.store import PAGE_SIZE, ZERO_HASH, Manifest, SnapshotDiff, StoreStats, VerifyReport
from chrono.units import format_size as size  # noqa: F401  (the CLI's one size format)

MAX_RANGES = 8


def console() -> Console:
    """stdout; pipes and files get a wide console so cells do not wrap."""
    out = Console(highlight=False)
    return out if out.is_terminal else Console(width=200, highlight=False)


def short(sid: str | None) -> str:
    return sid[:12] if sid else "-"


def when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))


def ranges(indices: np.ndarray) -> list[tuple[int, int]]:
    """Sorted indices -> inclusive (first, last) runs."""
    if len(indices) == 0:
        return []
    cuts = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(indices)])) - 1
    return [(int(indices[s]), int(indices[e])) for s, e in zip(starts, ends)]


def _runs(indices: np.ndarray, fmt) -> str:
    runs = ranges(indices)
    text = ", ".join(fmt(a, b) for a, b in runs[:MAX_RANGES])
    if len(runs) > MAX_RANGES:
        text += f", ... ({len(runs) - MAX_RANGES} more ranges)"
    return text


# ---- store ---------------------------------------------------------------------------

def stats_table(s: StoreStats) -> Table:
    t = Table(title=f"store {s.path}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column()
    t.add_row("snapshots", str(s.snapshots), f"{s.refs} named")
    t.add_row("blobs", str(s.blobs), f"{s.zstd_blobs} zstd, {s.raw_blobs} raw")
    t.add_row("logical", size(s.logical_bytes),
              f"non-zero pages, state and device trees of every snapshot ({s.logical_pages} pages)")
    t.add_row("unique", size(s.content_bytes), f"each blob once, uncompressed: "
              f"dedup ratio {s.dedup_ratio:.2f}")
    t.add_row("stored", size(s.stored_bytes), f"compressed: ratio {s.compression_ratio:.2f}")
    t.add_row("file", size(s.file_bytes), f"data.mdb; {size(s.used_bytes)} in use, "
              f"map {size(s.map_size)}")
    return t


def problems_table(report: VerifyReport) -> Table:
    t = Table(title=f"{len(report.problems)} problems in store {report.path}", title_justify="left")
    t.add_column("object")
    t.add_column("name", overflow="fold")
    t.add_column("problem", overflow="fold")
    for p in report.problems:
        t.add_row(p.kind, p.name, p.message)
    return t


@contextmanager
def verify_progress(out: Console) -> Iterator:
    """A (phase, done, total) callback: bars at a terminal, nothing otherwise."""
    if not out.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=out, transient=True) as bars:
        tasks = {}

        def show(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bars.add_task(f"checking {phase}", total=total or None)
            bars.update(tasks[phase], completed=done)

        yield show


# ---- snapshots -------------------------------------------------------------------------

def snapshots_table(rows: list[tuple[str, Manifest, list[str]]], store_path) -> Table:
    """rows: (id, manifest, names) sorted by creation time."""
    t = Table(title=f"{len(rows)} snapshots in store {store_path}", title_justify="left")
    for name, justify in (("name", "left"), ("id", "left"), ("created", "left"),
                          ("steps", "right"), ("RAM", "right"), ("disks", "right"),
                          ("parent", "left")):
        t.add_column(name, justify=justify)
    for sid, m, names in rows:
        disks = ", ".join(size(d.size) for d in m.disks) or "-"
        t.add_row(", ".join(names) or "-", short(sid), when(m.created), str(m.steps),
                  size(m.ram.npages * PAGE_SIZE), disks, short(m.parent))
    return t


def snapshot_table(sid: str, m: Manifest, names: list[str], parent_present: bool,
                   nonzero: dict[str, int], blob_sizes: dict[str, int | None]) -> Table:
    t = Table(show_header=False, title=f"snapshot {', '.join(names) or short(sid)}",
              title_justify="left")
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("id", sid)
    t.add_row("names", ", ".join(names) or "- (gc removes unnamed snapshots)")
    parent = m.parent or "-"
    if m.parent and not parent_present:
        parent += " (deleted)"
    t.add_row("parent", parent)
    t.add_row("created", when(m.created))
    t.add_row("position", f"{m.steps} steps, virtual clock {m.vclock}")
    t.add_row("RAM", f"{size(m.ram.npages * PAGE_SIZE)}: {nonzero['ram']} of {m.ram.npages} "
                     f"pages non-zero, {len(m.ram.leaf_keys)} of {len(m.ram.leaves)} leaves stored")
    for i, d in enumerate(m.disks):
        t.add_row(f"disk {i}", f"{size(d.size)}: {nonzero[f'disk {i}']} of {d.table.npages} "
                               f"blocks non-zero")
    for what, key in (("state", m.state), ("device tree", m.dtb)):
        if key is None:
            t.add_row(what, "-")
        else:
            length = blob_sizes.get(what)
            t.add_row(what, f"{key.hex()} ({size(length) if length is not None else 'missing'})"
                      if key != ZERO_HASH else "zero page")
    t.add_row("config", json.dumps(m.config, sort_keys=True, indent=1))
    return t


def diff_table(d: SnapshotDiff, a: Manifest, b: Manifest, name_a: str, name_b: str) -> Table:
    t = Table(title=f"{name_a} -> {name_b}", title_justify="left")
    t.add_column("what", style="bold")
    t.add_column("differ", justify="right")
    t.add_column("where", overflow="fold")
    npages = max(a.ram.npages, b.ram.npages)
    t.add_row("RAM", f"{len(d.ram)} of {npages} pages ({size(len(d.ram) * PAGE_SIZE)})",
              _runs(d.ram, lambda f, l: f"pages {f}-{l} ({RAM_BASE + f * PAGE_SIZE:#x}-"
                    f"{RAM_BASE + (l + 1) * PAGE_SIZE - 1:#x})" if f != l else
                    f"page {f} ({RAM_BASE + f * PAGE_SIZE:#x})"))
    for i, blocks in enumerate(d.disks):
        total = max(x.disks[i].table.npages if i < len(x.disks) else 0 for x in (a, b))
        t.add_row(f"disk {i}", f"{len(blocks)} of {total} blocks ({size(len(blocks) * PAGE_SIZE)})",
                  _runs(blocks, lambda f, l: f"blocks {f}-{l}" if f != l else f"block {f}"))
    t.add_row("state", "differs" if d.state else "same", "CPU and device state")
    t.add_row("config", "differs" if d.config else "same", "")
    t.add_row("device tree", "differs" if d.dtb else "same", "")
    return t
