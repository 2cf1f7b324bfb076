"""How the CLI shows recordings with rich (the trace library returns plain objects)."""
from __future__ import annotations

from rich.table import Table

from chrono.render_store import short, size, when
from chrono.store.traces import TraceManifest

STEPS_PER_SECOND = 1_000_000_000        # virtual time: one instruction step is 1 ns


def _status(m: TraceManifest) -> str:
    if not m.complete:
        return "cut short"
    return m.outcome or "complete"


def traces_table(rows: list[TraceManifest], store_path) -> Table:
    t = Table(title=f"{len(rows)} recordings in store {store_path}", title_justify="left")
    for name, justify in (("name", "left"), ("created", "left"), ("instructions", "right"),
                          ("virtual time", "right"), ("keyframes", "right"),
                          ("inputs", "right"), ("log", "right"), ("ended", "left"),
                          ("from", "left")):
        t.add_column(name, justify=justify)
    for depth, m in _tree(rows):
        origin = ""
        if m.origin:
            origin = f"trimmed from {m.origin['trace']} {m.origin['from']:,}..{m.origin['to']:,}"
        elif m.parent:
            origin = f"branch of {m.parent['trace']} at {m.parent['position']:,}"
        name = ("  " * (depth - 1) + "└─ " if depth else "") + m.name
        t.add_row(name, when(m.created), f"{m.length:,}", _vtime(m), str(len(m.keyframes)),
                  str(_input_count(m)), size(m.log_bytes), _status(m), origin)
    return t


def _tree(rows: list[TraceManifest]) -> list[tuple[int, TraceManifest]]:
    """Recordings in tree order: each followed by the branches that left it."""
    names = {m.name for m in rows}
    children: dict[str | None, list[TraceManifest]] = {}
    for m in rows:
        parent = m.parent["trace"] if m.parent and m.parent["trace"] in names else None
        children.setdefault(parent, []).append(m)
    out, seen = [], set()

    def walk(name, depth):
        for m in children.get(name, []):
            if m.name not in seen:
                seen.add(m.name)
                out.append((depth, m))
                walk(m.name, depth + 1)
    walk(None, 0)
    out += [(0, m) for m in rows if m.name not in seen]     # a cycle cannot hide one
    return out


def _vtime(m: TraceManifest) -> str:
    start = m.keyframes[0].vclock
    return f"{(m.end_vclock - start) / STEPS_PER_SECOND:.3f} s"


def _input_count(m: TraceManifest) -> int:
    return sum(m.inputs.get(k, 0) for k in ("console", "entropy", "skips", "loads"))


def trace_table(m: TraceManifest, snapshot_bytes: int, blobs: int) -> Table:
    t = Table(title=f"recording {m.name}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("id", m.id)
    t.add_row("created", f"{when(m.created)} by chrono {m.chrono_version}")
    t.add_row("status", _status(m))
    t.add_row("instructions", f"{m.length:,} (positions {m.start_position:,} to {m.end_position:,})")
    t.add_row("virtual time", _vtime(m))
    i = m.inputs
    t.add_row("inputs", f"{i.get('console', 0)} console bytes, {i.get('entropy', 0)} entropy "
              f"bytes, {i.get('skips', 0)} idle skips, {i.get('loads', 0)} machine loads")
    t.add_row("RTC epoch", f"{m.rtc_epoch_ns} ns since 1970")
    t.add_row("console output", f"{m.output_bytes:,} bytes")
    per_k = m.log_bytes / max(m.length, 1) * 1000
    t.add_row("log", f"{m.events} events in {m.chunks} chunks, {size(m.log_bytes)} "
              f"({per_k:.3f} bytes per 1,000 instructions)")
    t.add_row("keyframes", f"{len(m.keyframes)}, every {m.keyframe_interval:,} instructions; "
              f"light digests every {m.digest_interval:,}")
    t.add_row("size", f"{size(m.log_bytes + snapshot_bytes)}: log + {blobs} blobs of snapshot "
              f"data ({size(snapshot_bytes)} stored, shared with other snapshots)")
    t.add_row("machine", f"{m.config.get('isa', '?')}, {m.config.get('ram_size', 0) >> 20} MiB RAM, "
              f"{', '.join(m.config.get('devices', []))}")
    if m.parent:
        t.add_row("branch of", f"{m.parent['trace']} at instruction {m.parent['position']:,}")
    if m.origin:
        t.add_row("trimmed from", f"{m.origin['trace']} (instructions {m.origin['from']:,} "
                  f"to {m.origin['to']:,})")
    for k in m.keyframes[:3]:
        t.add_row("keyframe", f"{k.position:,}: snapshot {short(k.snapshot)}")
    if len(m.keyframes) > 3:
        t.add_row("keyframe", f"... and {len(m.keyframes) - 3} more")
    return t
