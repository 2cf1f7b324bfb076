"""How the CLI shows the snapshot store: its tables (chrono.render draws them at
a terminal, as plain rows in pipes), their --json records, and verify's progress.

The store library never imports this; it returns plain objects and reports
progress through callbacks.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from chrono.core.board import RAM_BASE
from chrono.render import Grid, columns, iso_utc, plural, vtime, when
from chrono.store import PAGE_SIZE, ZERO_HASH, Manifest, SnapshotDiff, StoreStats, VerifyReport
from chrono.store.holders import Holders, SnapshotHolders
from chrono.units import format_size as size

MAX_RANGES = 8
GC_REMOVES = "nothing: `chrono store gc` removes it"


def short(sid: str | None) -> str:
    return sid[:12] if sid else "-"


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
        text += f", ... ({plural(len(runs) - MAX_RANGES, 'more range')})"
    return text


# ---- store ---------------------------------------------------------------------------

def stats_table(s: StoreStats) -> Grid:
    t = Grid(f"store {s.path}", columns("what", ">amount", "~detail"), header=False)
    t.columns[0].bold = True
    t.add("store", "", str(s.path))
    t.add("snapshots", f"{s.snapshots:,}", f"{plural(s.refs, 'name')}")
    t.add("blobs", f"{s.blobs:,}", f"{s.lz4_blobs:,} lz4, {s.zstd_blobs:,} zstd, {s.raw_blobs:,} raw")
    t.add("logical", size(s.logical_bytes), f"non-zero pages, state and device trees of every "
          f"snapshot ({plural(s.logical_pages, 'page')})")
    t.add("unique", size(s.content_bytes), f"each blob once, uncompressed: dedup ratio "
          f"{s.dedup_ratio:.2f}")
    t.add("stored", size(s.stored_bytes), f"compressed: ratio {s.compression_ratio:.2f}")
    t.add("file", size(s.file_bytes), f"data.mdb; {size(s.used_bytes)} in use, map "
          f"{size(s.map_size)}")
    if s.pack_bytes:
        t.add("packs", size(s.pack_bytes), f"pages of big captures; {size(s.pack_live_bytes)} "
              f"in use (`chrono store compact` gives the rest back)")
    return t


def stats_record(s: StoreStats) -> dict:
    return {"store": str(s.path), "snapshots": s.snapshots, "names": s.refs, "blobs": s.blobs,
            "lz4_blobs": s.lz4_blobs, "zstd_blobs": s.zstd_blobs, "raw_blobs": s.raw_blobs,
            "logical_bytes": s.logical_bytes, "logical_pages": s.logical_pages,
            "unique_bytes": s.content_bytes, "stored_bytes": s.stored_bytes,
            "dedup_ratio": round(s.dedup_ratio, 4),
            "compression_ratio": round(s.compression_ratio, 4),
            "file_bytes": s.file_bytes, "used_bytes": s.used_bytes, "map_bytes": s.map_size,
            "pack_bytes": s.pack_bytes, "pack_live_bytes": s.pack_live_bytes}


def problems_table(report: VerifyReport) -> Grid:
    t = Grid(f"{plural(len(report.problems), 'problem')} in store {report.path}",
             columns("object", "~name", "~problem"))
    for p in report.problems:
        t.add(p.kind, p.name, p.message)
    return t


def verify_record(report: VerifyReport, recordings: int) -> dict:
    return {"store": str(report.path), "sound": report.ok, "blobs": report.blobs,
            "snapshots": report.snapshots, "page_references": report.pages,
            "names": report.refs, "recordings": recordings,
            "problems": [{"object": p.kind, "name": p.name, "problem": p.message}
                         for p in report.problems]}


@contextmanager
def verify_progress() -> Iterator:
    """A (phase, done, total) callback: bars when stderr is a terminal, else nothing
    (stdout stays the report's alone, so it can be piped or parsed)."""
    from rich.console import Console
    from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn)

    out = Console(stderr=True)
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

def kept_by(h: Holders, unreadable: int = 0) -> str:
    """Why gc keeps a snapshot, in words; or that it removes it."""
    parts = []
    if h.names:
        parts.append("its name" if len(h.names) == 1 else "its names")
    parts += [f"keyframe {k.index} of recording {k.recording}" for k in h.keyframes]
    parts += [f"loaded by recording {name}" for name in h.loaded_by]
    parts += [f"a running guest ({_lease(lease)})" for lease in h.leases]
    if not parts and h.dead_leases:
        return f"nothing: the guest that held it ({_lease(h.dead_leases[0])}) has ended; " \
               f"`chrono store gc` removes it"
    if parts:
        return ", ".join(parts)
    if unreadable:
        return (f"nothing readable: gc removes it once the damaged recording is gone "
                f"(`chrono trace verify`)")
    return GC_REMOVES


def _lease(lease: str) -> str:
    host, _, rest = lease.partition("/")
    return f"pid {rest.partition('/')[0]} on {host}"


Row = tuple[str, Manifest]


def snapshot_order(rows: list[Row], holders: SnapshotHolders, grouped: bool) -> list[list[Row]]:
    """Oldest first, in one group; or `grouped` (`snap list --all`): named
    snapshots, then each recording's (keyframes and loads), then those only a
    running guest holds, then those gc removes; each group oldest first."""
    groups: dict[tuple, list[Row]] = {}
    recordings = sorted({r for sid, _ in rows for r in holders.of(sid).recordings})
    for sid, m in rows:
        h = holders.of(sid)
        if not grouped:
            key = (0,)
        elif h.recordings:
            key = (1, recordings.index(h.recordings[0]))
        elif h.names:
            key = (0,)
        elif h.leases:
            key = (2,)
        else:
            key = (3,)
        groups.setdefault(key, []).append((sid, m))
    return [sorted(groups[k], key=lambda row: (row[1].created_ns, row[0])) for k in sorted(groups)]


def snapshots_table(groups: list[list[Row]], holders: SnapshotHolders, title: str) -> Grid:
    t = Grid(title, columns("~name", "id", "~created", ">instructions", ">virtual time",
                            "~kept by"))
    for group in groups:
        for sid, m in group:
            h = holders.of(sid)
            t.add(", ".join(h.names) or "-", short(sid), when(m.created), f"{m.steps:,}",
                  vtime(m.vclock), kept_by(h, holders.unreadable))
        t.section()
    return t


def snapshot_record(sid: str, m: Manifest, holders: SnapshotHolders) -> dict:
    """A snapshot in `snap list --json` (and the first fields of `snap info --json`)."""
    h = holders.of(sid)
    return {"id": sid, "names": h.names, "created": iso_utc(m.created),
            "instructions": m.steps, "virtual_time_ns": m.vclock,
            "ram_bytes": m.ram.npages * PAGE_SIZE, "disk_bytes": [d.size for d in m.disks],
            "parent": m.parent,
            "keyframe_of": [{"recording": k.recording, "keyframe": k.index,
                             "position": k.position} for k in h.keyframes],
            "loaded_by": h.loaded_by, "leases": h.leases, "gc_removes": not h.kept}


def snapshot_table(sid: str, m: Manifest, holders: SnapshotHolders, parent_present: bool,
                   nonzero: dict[str, int], blob_sizes: dict[str, int | None]) -> Grid:
    h = holders.of(sid)
    t = Grid(f"snapshot {', '.join(h.names) or short(sid)}", columns("what", "~value"),
             header=False)
    t.columns[0].bold = True
    t.add("id", sid)
    t.add("names", ", ".join(h.names) or "-")
    t.add("kept by", kept_by(h, holders.unreadable))
    parent = m.parent or "-"
    if m.parent and not parent_present:
        parent += " (deleted)"
    t.add("parent", parent)
    t.add("created", when(m.created))
    t.add("instructions", f"{m.steps:,}")
    t.add("virtual time", vtime(m.vclock))
    t.add("RAM", f"{size(m.ram.npages * PAGE_SIZE)}: {nonzero['ram']:,} of {m.ram.npages:,} "
                 f"pages non-zero, {len(m.ram.leaf_keys):,} of {len(m.ram.leaves):,} leaves stored")
    for i, d in enumerate(m.disks):
        t.add(f"disk {i}", f"{size(d.size)}: {nonzero[f'disk {i}']:,} of {d.table.npages:,} "
                           f"blocks non-zero")
    for what, key in (("state", m.state), ("device tree", m.dtb)):
        if key is None:
            t.add(what, "-")
        else:
            length = blob_sizes.get(what)
            t.add(what, f"{key.hex()} ({size(length) if length is not None else 'missing'})"
                  if key != ZERO_HASH else "zero page")
    t.add("config", json.dumps(m.config, sort_keys=True))
    return t


def snapshot_info_record(sid: str, m: Manifest, holders: SnapshotHolders, parent_present: bool,
                         nonzero: dict[str, int], blob_sizes: dict[str, int | None]) -> dict:
    def blob(what, key):
        return None if key is None else {"key": key.hex(), "stored_bytes": blob_sizes.get(what)}

    return {**snapshot_record(sid, m, holders),
            "parent_present": parent_present,
            "ram": {"pages": m.ram.npages, "nonzero_pages": nonzero["ram"],
                    "leaves": len(m.ram.leaves), "leaves_stored": len(m.ram.leaf_keys)},
            "disks": [{"bytes": d.size, "blocks": d.table.npages,
                       "nonzero_blocks": nonzero[f"disk {i}"]} for i, d in enumerate(m.disks)],
            "state": blob("state", m.state), "device_tree": blob("device tree", m.dtb),
            "config": m.config}


def diff_table(d: SnapshotDiff, a: Manifest, b: Manifest, name_a: str, name_b: str) -> Grid:
    t = Grid(f"{name_a} -> {name_b}", columns("what", ">differ", "~where"))
    t.columns[0].bold = True
    npages = max(a.ram.npages, b.ram.npages)
    t.add("RAM", f"{len(d.ram):,} of {plural(npages, 'page')} ({size(len(d.ram) * PAGE_SIZE)})",
          _runs(d.ram, lambda f, l: f"pages {f}-{l} ({RAM_BASE + f * PAGE_SIZE:#x}-"
                f"{RAM_BASE + (l + 1) * PAGE_SIZE - 1:#x})" if f != l else
                f"page {f} ({RAM_BASE + f * PAGE_SIZE:#x})"))
    for i, blocks in enumerate(d.disks):
        total = max(x.disks[i].table.npages if i < len(x.disks) else 0 for x in (a, b))
        t.add(f"disk {i}", f"{len(blocks):,} of {plural(total, 'block')} "
                           f"({size(len(blocks) * PAGE_SIZE)})",
              _runs(blocks, lambda f, l: f"blocks {f}-{l}" if f != l else f"block {f}"))
    t.add("state", "differs" if d.state else "same", "CPU and device state")
    t.add("config", "differs" if d.config else "same", "")
    t.add("device tree", "differs" if d.dtb else "same", "")
    return t
