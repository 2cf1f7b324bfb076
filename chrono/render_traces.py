"""How the CLI shows recordings: their tables (chrono.render draws them) and their
--json records.  The trace library returns plain objects."""
from __future__ import annotations

from chrono.render import Grid, columns, iso_utc, plural, vtime, when
from chrono.render_store import short
from chrono.units import format_size as size
from chrono.store.traces import TraceManifest
from chrono.replay.events import INPUT_COUNTS


def _status(m: TraceManifest) -> str:
    if not m.complete:
        return "cut short"
    return m.outcome or "complete"


def traces_table(rows: list[TraceManifest], store_path) -> Grid:
    t = Grid(f"{plural(len(rows), 'recording')} in store {store_path}",
             columns("~name", "~created", ">instructions", ">virtual time", ">keyframes",
                     ">~log", "~ended", "~from"))
    for depth, m in _tree(rows):
        name = ("  " * (depth - 1) + "└─ " if depth else "") + m.name
        t.add(name, when(m.created), f"{m.length:,}", vtime(_vtime_ns(m)),
              f"{len(m.keyframes):,}", size(m.log_bytes), _status(m), _origin(m))
    return t


def _origin(m: TraceManifest) -> str:
    if m.origin:
        return f"trimmed from {m.origin['trace']} {m.origin['from']:,}..{m.origin['to']:,}"
    if m.parent:
        return f"branch of {m.parent['trace']} at {m.parent['position']:,}"
    return ""


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


def _vtime_ns(m: TraceManifest) -> int:
    return m.end_vclock - m.keyframes[0].vclock


def _input_count(m: TraceManifest) -> int:
    return sum(m.inputs.get(k, 0) for k in INPUT_COUNTS)


def trace_record(m: TraceManifest) -> dict:
    """A recording in `trace list --json` (and the first fields of `trace info --json`)."""
    return {"name": m.name, "id": m.id, "created": iso_utc(m.created),
            "chrono_version": m.chrono_version, "status": _status(m), "complete": m.complete,
            "outcome": m.outcome, "instructions": m.length,
            "start_position": m.start_position, "end_position": m.end_position,
            "virtual_time_ns": _vtime_ns(m), "keyframe_count": len(m.keyframes),
            "inputs": {k: m.inputs.get(k, 0) for k in INPUT_COUNTS},
            "log_bytes": m.log_bytes, "parent": m.parent, "origin": m.origin}


def trace_info_record(m: TraceManifest, snapshot_bytes: int, blobs: int,
                      names: dict[str, list[str]]) -> dict:
    return {**trace_record(m), "rtc_epoch_ns": m.rtc_epoch_ns, "output_bytes": m.output_bytes,
            "events": m.events, "chunks": m.chunks, "keyframe_interval": m.keyframe_interval,
            "digest_interval": m.digest_interval, "snapshot_bytes": snapshot_bytes,
            "snapshot_blobs": blobs, "config": m.config,
            "keyframes": [{"keyframe": i, "position": k.position, "instructions": k.steps,
                           "virtual_time_ns": k.vclock, "snapshot": k.snapshot,
                           "names": names.get(k.snapshot, [])}
                          for i, k in enumerate(m.keyframes)],
            "loads": m.loads}


def trace_table(m: TraceManifest, snapshot_bytes: int, blobs: int,
                names: dict[str, list[str]]) -> Grid:
    """`names`: snapshot id -> its names, for the keyframes that have one."""
    t = Grid(f"recording {m.name}", columns("what", "~value"), header=False)
    t.columns[0].bold = True
    t.add("name", m.name)
    t.add("id", m.id)
    t.add("created", f"{when(m.created)} by chrono {m.chrono_version}")
    t.add("status", _status(m))
    t.add("instructions", f"{m.length:,} (positions {m.start_position:,} to {m.end_position:,})")
    t.add("virtual time", vtime(_vtime_ns(m)))
    i = m.inputs
    t.add("inputs", f"{plural(i.get('console', 0), 'console byte')}, "
          f"{plural(i.get('entropy', 0), 'entropy byte')}, {plural(i.get('skips', 0), 'idle skip')}, "
          f"{plural(i.get('loads', 0), 'machine load')}, "
          f"{plural(i.get('frames', 0), 'network frame')}")
    t.add("RTC epoch", f"{m.rtc_epoch_ns} ns since 1970")
    t.add("console output", plural(m.output_bytes, "byte"))
    per_k = m.log_bytes / max(m.length, 1) * 1000
    t.add("log", f"{plural(m.events, 'event')} in {plural(m.chunks, 'chunk')}, "
          f"{size(m.log_bytes)} ({per_k:.3f} bytes per 1,000 instructions)")
    t.add("keyframes", f"{len(m.keyframes):,}, every {plural(m.keyframe_interval, 'instruction')}; "
          f"light digests every {m.digest_interval:,}")
    t.add("size", f"{size(m.log_bytes + snapshot_bytes)}: log + {plural(blobs, 'blob')} of "
          f"snapshot data ({size(snapshot_bytes)} stored, shared with other snapshots)")
    t.add("machine", f"{m.config.get('isa', '?')}, {m.config.get('ram_size', 0) >> 20} MiB RAM, "
          f"{', '.join(m.config.get('devices', []))}")
    if m.parent:
        t.add("branch of", f"{m.parent['trace']} at instruction {m.parent['position']:,}")
    if m.origin:
        t.add("trimmed from", f"{m.origin['trace']} (instructions {m.origin['from']:,} "
              f"to {m.origin['to']:,})")
    for n, k in enumerate(m.keyframes):
        named = f" ({', '.join(names[k.snapshot])})" if names.get(k.snapshot) else ""
        t.add(f"keyframe {n}", f"position {k.position:,}: snapshot {short(k.snapshot)}{named}")
    for sid in dict.fromkeys(m.loads):
        named = f" ({', '.join(names[sid])})" if names.get(sid) else ""
        t.add("loads", f"snapshot {short(sid)}{named}")
    return t
