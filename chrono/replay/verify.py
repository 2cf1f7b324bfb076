"""`chrono trace verify`: is a recording whole?  (Also what import checks.)

A recording is sound when

- its manifest reads (checksum, format, types and invariants: TraceManifest.check);
- its log agrees with it (LogCheck): every event chunk decodes, chunks are
  numbered 0, 1, ... in key order and each begins at the position its key
  says, events never go back and stay within the recording, the first is
  keyframe 0 at the start, keyframe events come in order at their keyframes'
  positions, every load names a snapshot the manifest lists (and every listed
  one is loaded), and the counts (chunks, events, bytes, inputs) are the
  manifest's;
- every keyframe and loaded snapshot is in the store, matches its id, sits at
  its keyframe's position, and every blob it needs (CPU/device state, device
  tree, page-table leaves, the pages under them) is present and matches its
  key.

Problems are reported as lines naming what is damaged; nothing is changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chrono.errors import ChronoError
from chrono.store.blobs import HASH_SIZE, ZERO_HASH, decode_blob
from chrono.store.pagetable import LEAF_PAGES
from chrono.store.store import Reader, Store
from chrono.store.traces import TRACE_ID_BYTES, TraceManifest, read_trace
from chrono.replay.events import (KEYFRAME, LOAD, Event, EventFormatError, chunk_base,
                                 count_input, decode_events, no_inputs, unpack_chunk)

CHUNK_KEY_SIZE = TRACE_ID_BYTES + 12


class LogCheck:
    """Checks a recording's event chunks, fed in key order, against its manifest.

    feed() each (key, value), then finish(); `problems` collects one line per
    problem (a damaged chunk is not looked into further).
    """

    def __init__(self, manifest: TraceManifest):
        self.manifest = manifest
        self.problems: list[str] = []
        self.chunks = self.events = self.log_bytes = 0
        self.inputs = no_inputs()
        self.keyframes = 0              # keyframe events seen (they must come in order)
        self.loads: set[str] = set()
        self.last = manifest.start_position

    def feed(self, key: bytes, value: bytes) -> None:
        m = self.manifest
        index = self.chunks
        self.chunks += 1
        self.log_bytes += len(value)
        where = f"event chunk {index}"
        if len(key) != CHUNK_KEY_SIZE or key[:TRACE_ID_BYTES] != m.id_bytes:
            self.problems.append(f"{where} has a key that is not one of this recording's")
            return
        base, number = chunk_base(key)
        if number != index:
            self.problems.append(f"{where} is numbered {number}: a chunk is missing or extra")
            return
        try:
            events = decode_events(unpack_chunk(value), base)
        except EventFormatError as e:
            self.problems.append(f"{where} does not decode ({e})")
            return
        if not events:
            self.problems.append(f"{where} holds no events")
            return
        if events[0].position != base:
            self.problems.append(f"{where} begins at instruction {events[0].position}, its key "
                                 f"says {base}")
            return
        for event in events:
            problem = self._event(event)
            if problem:
                self.problems.append(f"{where}: {problem}")
                return

    def _event(self, e: Event) -> str | None:
        m = self.manifest
        if e.position < self.last:
            return f"an event at instruction {e.position} comes after one at {self.last}"
        if e.position > m.end_position:
            return f"an event at instruction {e.position} is past the end ({m.end_position})"
        if self.events == 0 and (e.kind, e.value, e.position) != (KEYFRAME, 0, m.start_position):
            return f"the log does not begin with keyframe 0 at instruction {m.start_position}"
        self.last = e.position
        self.events += 1
        count_input(self.inputs, e.kind, e.data)
        if e.kind == LOAD:
            sid = e.data.hex()
            if sid not in m.loads:
                return f"instruction {e.position} loads snapshot {sid}, which the manifest does not list"
            self.loads.add(sid)
        elif e.kind == KEYFRAME:
            if e.value != self.keyframes:
                return f"keyframe {e.value} is logged where keyframe {self.keyframes} is due"
            self.keyframes += 1
            if e.value < len(m.keyframes):
                if m.keyframes[e.value].position != e.position:
                    return (f"keyframe {e.value} is logged at instruction {e.position}, the "
                            f"manifest has it at {m.keyframes[e.value].position}")
            elif m.complete or e.value > len(m.keyframes):
                # A cut-short recording may log the keyframe it never committed (see replay).
                return f"keyframe {e.value} is logged, but the manifest lists {len(m.keyframes)}"
        return None

    def finish(self) -> list[str]:
        m = self.manifest
        out = self.problems
        for what, logged, counted in (("event chunks", self.chunks, m.chunks),
                                      ("events", self.events, m.events),
                                      ("log bytes", self.log_bytes, m.log_bytes)):
            if logged != counted:
                out.append(f"the manifest counts {counted} {what}, the log has {logged}")
        # A recording made before frames were counted has no "frames": it had none.
        inputs = {k: m.inputs.get(k, 0 if k == "frames" else None) for k in self.inputs}
        if not out and inputs != self.inputs:
            out.append(f"the manifest counts inputs {inputs}, the log has {self.inputs}")
        if not out and self.keyframes < len(m.keyframes):
            out.append(f"the log has {self.keyframes} keyframe events, the manifest lists "
                       f"{len(m.keyframes)} keyframes")
        unloaded = sorted(set(m.loads) - self.loads)
        if not out and unloaded:
            out.append(f"the manifest lists loaded snapshot {unloaded[0]}, which the log never loads")
        return out


@dataclass
class TraceReport:
    name: str
    manifest: TraceManifest | None = None
    snapshots: int = 0
    blobs: int = 0                  # distinct blobs it needs, verified
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_traces(store: Store, names: list[str] | None = None) -> list[TraceReport]:
    """Check the recordings `names` (default: all of them); see the module docstring.
    UnknownTraceError for a name that is not a recording."""
    verified: dict[bytes, str | None] = {}      # blob key -> problem (None: sound), shared
    reports = []
    with store.reader() as r:
        if names:
            values = []
            for name in names:
                read_trace(r, name)         # UnknownTraceError if there is none
                values.append((name, r.get_trace(name)))
        else:
            values = list(r.traces())
        for name, value in values:
            reports.append(_verify_one(r, name, value, verified))
    return reports


def _verify_one(r: Reader, name: str, value: bytes, verified: dict) -> TraceReport:
    report = TraceReport(name)
    try:
        m = report.manifest = TraceManifest.decode(value, "its manifest")
    except ChronoError as e:
        report.problems.append(e.message)
        return report
    log = LogCheck(m)
    for key, chunk in r.chunks(m.id_bytes):
        log.feed(key, chunk)
    report.problems += log.finish()
    seen: set[bytes] = set()
    positions: dict[str, list] = {}
    for i, k in enumerate(m.keyframes):
        positions.setdefault(k.snapshot, []).append((i, k))
    for sid in list(dict.fromkeys([k.snapshot for k in m.keyframes] + m.loads)):
        what = f"keyframe {positions[sid][0][0]}" if sid in positions else "loaded snapshot"
        try:
            snap = r.get_snapshot(sid)
        except ChronoError as e:
            report.problems.append(f"{what}: {e.message}")
            continue
        report.snapshots += 1
        for i, k in positions.get(sid, []):
            if (snap.steps, snap.vclock) != (k.steps, k.vclock):
                report.problems.append(f"keyframe {i}: snapshot {sid} is at instruction "
                                       f"{snap.steps:,} (virtual time {snap.vclock / 1e9:.9f} s), "
                                       f"the manifest says {k.steps:,} ({k.vclock / 1e9:.9f} s)")
        needed = [("CPU/device state", snap.state)] + ([("device tree", snap.dtb)] if snap.dtb else [])
        needed += [(f"{table_name} page-table leaf", leaf)
                   for table_name, table in snap.tables() for leaf in sorted(table.leaf_keys)]
        for role, key in needed:
            problem = _blob(r, key, verified)
            seen.add(key)
            if not problem and role.endswith("leaf"):
                try:
                    leaf = r.get_leaf(key)
                except ChronoError as e:
                    problem = f"is not a page-table leaf ({e.message})"
            if problem:
                report.problems.append(f"{what} (snapshot {sid[:12]}): its {role} {key.hex()} {problem}")
                continue
            if role.endswith("leaf"):
                rows = np.frombuffer(leaf, np.uint8).reshape(LEAF_PAGES, HASH_SIZE)
                for row in rows[rows.any(axis=1)]:
                    page = row.tobytes()
                    problem = _blob(r, page, verified)
                    seen.add(page)
                    if problem:
                        report.problems.append(f"{what} (snapshot {sid[:12]}): page {page.hex()} "
                                               f"under its {role} {key.hex()[:12]} {problem}")
    report.blobs = len(seen)
    return report


def _blob(r: Reader, key: bytes, verified: dict) -> str | None:
    """None if blob `key` is present and sound, else what is wrong (memoized in `verified`)."""
    if key == ZERO_HASH:
        return None
    if key not in verified:
        value = r.get_raw(key)
        if value is None:
            verified[key] = "is missing"
        else:
            try:
                decode_blob(key, value)
                verified[key] = None
            except ChronoError as e:
                verified[key] = f"is damaged ({getattr(e, 'reason', e.message)})"
    return verified[key]
