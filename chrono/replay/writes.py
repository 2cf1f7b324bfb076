"""Who wrote this last: the write index of a recording and the last-write query.

The index says, for every interval of INTERVAL instructions, which RAM pages
were written in it (by the hart or by device DMA), and keeps a checkpoint
snapshot every CHECKPOINT instructions.  It is built lazily, by one replay
of the recording the first time a query needs it, and stored beside the
recording (in the store's events database, under the recording's id), so
later queries, in any process, start at once.

A query for [address, +size) before position P walks the intervals back from
P, skips every interval that did not write the address's page, and replays
only the candidates -- from the nearest checkpoint -- with a write watchpoint
on the range, keeping the last hit.  Its checkpoints are unnamed snapshots:
if `chrono store gc` removes them, the next query builds the index again.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np
import zstandard

from chrono.core.machine import PAGE_SIZE, Watch
from chrono.core.board import RAM_BASE
from chrono.errors import UsageError
from chrono.replay.timeline import Checkpoint, Timeline

INTERVAL = 1 << 20          # instructions per index entry
CHECKPOINT = 1 << 26        # instructions between the index's checkpoints
INDEX_FORMAT = 1
_KEY_SUFFIX = b"write-index"
_MAX_INDEX = 1 << 30        # decompressed bytes a stored index may claim


@dataclass(frozen=True)
class LastWrite:
    position: int           # of the writing instruction (the state just before it)
    pc: int
    instruction: int        # its encoding (16 or 32 bits)
    priv: int               # 0 U, 1 S, 3 M
    device: bool            # device DMA during the instruction at pc, not the hart
    address: int            # the first byte of the range it wrote


@dataclass
class WriteIndex:
    start: int
    end: int
    pages: list[np.ndarray]             # per interval: RAM page numbers written, sorted
    checkpoints: list[Checkpoint]

    def interval_of(self, position: int) -> int:
        return (position - self.start) // INTERVAL

    # ---- stored form: SHA-256, then zstd(JSON header, NUL, offsets, pages) -------------
    def encode(self) -> bytes:
        head = json.dumps({"format": INDEX_FORMAT, "interval": INTERVAL, "start": self.start,
                           "end": self.end,
                           "checkpoints": [[c.position, c.event_index, c.snapshot]
                                           for c in self.checkpoints]}).encode()
        lengths = np.array([len(p) for p in self.pages], dtype=np.uint32)
        flat = np.concatenate(self.pages).astype(np.uint32) if self.pages else np.zeros(0, np.uint32)
        body = head + b"\0" + struct.pack("<I", len(lengths)) + lengths.tobytes() + flat.tobytes()
        packed = zstandard.ZstdCompressor(level=3).compress(body)
        return hashlib.sha256(packed).digest() + packed

    @classmethod
    def decode(cls, value: bytes) -> "WriteIndex | None":
        """The index, or None when it is damaged or of another format (rebuild it)."""
        digest, packed = value[:32], value[32:]
        if hashlib.sha256(packed).digest() != digest:
            return None
        try:
            body = zstandard.ZstdDecompressor().decompress(packed, max_output_size=_MAX_INDEX)
            head, rest = body.split(b"\0", 1)
            meta = json.loads(head)
            if meta.get("format") != INDEX_FORMAT or meta.get("interval") != INTERVAL:
                return None
            (count,) = struct.unpack_from("<I", rest)
            lengths = np.frombuffer(rest, np.uint32, count, 4)
            flat = np.frombuffer(rest, np.uint32, offset=4 + 4 * count)
            if int(lengths.sum()) != len(flat):
                return None
            pages = np.split(flat.astype(np.int64), np.cumsum(lengths)[:-1]) if count else []
            checkpoints = [Checkpoint(p, e, s, temporary=True) for p, e, s in meta["checkpoints"]]
            return cls(meta["start"], meta["end"], pages, checkpoints)
        except (ValueError, KeyError, TypeError, zstandard.ZstdError, struct.error):
            return None


def _key(t: Timeline) -> bytes:
    return t.manifest.id_bytes + _KEY_SUFFIX


def load_index(t: Timeline) -> WriteIndex | None:
    """The stored index, if it is there, sound, and its checkpoints still exist."""
    with t.store.reader() as r:
        value = r.get_event_record(_key(t))
        index = WriteIndex.decode(value) if value else None
        if index is None or index.end != t.end:
            return None
        if not all(r.has_snapshot(c.snapshot) for c in index.checkpoints):
            return None
    return index


def build_index(t: Timeline, progress=lambda done, total: None) -> WriteIndex:
    """Replay the whole recording once, noting the pages each interval wrote."""
    m, r = t.machine, t.replayer
    t.seek(t.start)
    saved_checkpointing, t.checkpointing = t.checkpointing, False
    r.verify_keyframes = False              # this pass clears the dirty map itself
    try:
        m.clear_ram_dirty()
        pages, checkpoints, since_save = [], [], set()
        position = t.start
        while position < t.end:
            target = min(position + INTERVAL, t.end)
            t._forward(target)
            written = np.flatnonzero(m.ram_dirty)
            pages.append(written)
            since_save.update(written.tolist())
            m.clear_ram_dirty()
            position = t.position
            if (position - t.start) % CHECKPOINT == 0 and position < t.end:
                # A snapshot needs every page written since the last one marked.
                m.ram_dirty[list(since_save)] = 1
                sid = r.snapshots.save()
                since_save.clear()
                checkpoint = Checkpoint(position, t.next_event, sid, temporary=True,
                                        window=r.window.copy())
                checkpoints.append(checkpoint)
                t.checkpoints.append(checkpoint)
            progress(position - t.start, t.end - t.start)
        m.ram_dirty[list(since_save)] = 1
    finally:
        t.checkpointing = saved_checkpointing
        r.verify_keyframes = True
    index = WriteIndex(t.start, t.end, pages, checkpoints)
    with t.store.writer() as w:
        w.put_chunk(_key(t), index.encode())
    return index


def open_index(t: Timeline, progress=lambda done, total: None) -> WriteIndex:
    index = load_index(t)
    if index is None:
        index = build_index(t, progress)
    else:
        known = {c.position for c in t.checkpoints}
        t.checkpoints += [c for c in index.checkpoints if c.position not in known]
    return index


def last_write(t: Timeline, address: int, size: int = 1, before: int | None = None,
               physical: bool = False, progress=lambda done, total: None) -> LastWrite | None:
    """The last write to [address, +size) before position `before` (default:
    the end), by the hart or by DMA; None if nothing in the recording wrote it.
    A virtual address is translated at `before`."""
    from chrono.gdb.memory import translate
    before = t.end if before is None else max(t.start, min(before, t.end))
    index = open_index(t, progress)
    t.seek(before)
    target = address if physical else translate(t.machine, address)
    if target is None:
        raise UsageError(f"address {address:#x} is not mapped at instruction {before} "
                         f"(give a physical address with --physical)")
    m = t.machine
    if not (RAM_BASE <= target and target + size <= RAM_BASE + m.ram_size):
        raise UsageError(f"{size} bytes at {target:#x} are not in guest RAM")
    first = (target - RAM_BASE) // PAGE_SIZE
    last = (target + size - 1 - RAM_BASE) // PAGE_SIZE
    wanted = np.arange(first, last + 1)
    for interval in range(index.interval_of(before - 1), -1, -1):
        if not np.isin(wanted, index.pages[interval]).any():
            continue
        begin = index.start + interval * INTERVAL
        found = _last_hit(t, target, size, begin, min(begin + INTERVAL, before))
        if found is not None:
            return found
    return None


def _last_hit(t: Timeline, address: int, size: int, begin: int, end: int) -> LastWrite | None:
    """The last write to the range in [begin, end), replaying just that."""
    m = t.machine
    t.seek(begin)
    saved = set(t.breakpoints)          # only the watchpoint may stop this pass
    for pc in saved:
        t.remove_breakpoint(pc)
    t.add_watchpoint(address, size, Watch.WRITE, physical=True)
    hits = []
    try:
        while t.position < end:
            halt = t._forward(end, stop_at_breakpoints=True)
            if halt is None or halt.reason != "watch":
                break
            hits.append((halt.position - 1, m.watch_hit()))
    finally:
        t.remove_watchpoint(address, size, Watch.WRITE)
        for pc in saved:
            t.add_breakpoint(pc)
    if not hits:
        return None
    position, hit = hits[-1]
    t.seek(position)
    from chrono.gdb.memory import read
    code = read(m, hit.pc, 4) or b"\0\0\0\0"
    word = int.from_bytes(code, "little")
    instruction = word if word & 3 == 3 else word & 0xFFFF
    return LastWrite(position, hit.pc, instruction, m.priv, hit.device, hit.address)
