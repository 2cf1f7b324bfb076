"""Trace bundles: one portable file with a recording and everything it needs.

`chrono export` writes one, `chrono import` (and `chrono replay FILE`) reads it.
Format 2 (docs/bundle.md says more), integers little-endian:

    magic      13  b"CHRONO-TRACE\\n"
    format      2  bundle format: 2 (blobs of any store codec, LZ4 included) is written,
                   1 (raw and zstd blobs only) still read; another number is refused
                   before anything else is read
    header      4  n, then n bytes of JSON with sorted keys and no spaces: what the
                   bundle holds (describe()).  Import recomputes it from the sections
                   and refuses a header that differs, so it is checked like the rest.
    sections    four, in this order, each:
                  tag      4  b"TRCE", b"CHNK", b"SNAP", b"BLOB"
                  count    8  records
                  length   8  bytes of the records that follow
                  records  count x (key, value length (4), value); the key has a fixed
                           size per section: none, chunk key (28), snapshot id (32),
                           blob key (32)
    end         4  b"END."
    checksum   32  SHA-256 of every byte before it

Values are stored values, byte for byte as in the store:

    TRCE  one record: the trace manifest (chrono.store.traces: SHA-256 + JSON)
    CHNK  the event chunks in key order (chrono.replay.events: codec, SHA-256, zstd)
    SNAP  the snapshot manifests the recording needs (keyframes, loads), in id order
    BLOB  the blobs those snapshots need (chrono.store.blobs: codec + payload): first
          states, device trees and page-table leaves, then the pages under the
          leaves, each group in key order, so an importer knows what each blob is
          (and how big it must be) before it reads it

A trimmed bundle (export --from/--to) holds a recording of its own: a window of
the original, starting at a keyframe, with a keyframe at its end made by
replaying the window while exporting (see export_bundle).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from chrono.errors import (BundleError, StoreCorruptError, StoreError, UsageError,
                           os_error_message)
from chrono.store.capture import config_problem, incompatibility, state_problem
from chrono.store.blobs import HASH_SIZE, PAGE_SIZE, ZERO_HASH, content_size, decode_blob
from chrono.store.gc import reachable
from chrono.store.manifest import Manifest, ManifestFormatError, snapshot_id
from chrono.store.pagetable import LEAF_BYTES, LEAF_PAGES, pages_for
from chrono.store.store import Reader, Store, check_ref_name, ref_name_problem
from chrono.store.traces import (TRACE_FORMAT, TRACE_ID_BYTES, Keyframe, TraceFormatError,
                                 TraceManifest, all_traces, read_trace)
from chrono.replay.events import (KEYFRAME, LOAD, MAX_CHUNK, Event, chunk_key, count_input,
                                 encode_events, no_inputs, pack_chunk)
from chrono.replay.verify import CHUNK_KEY_SIZE, LogCheck

MAGIC = b"CHRONO-TRACE\n"
FORMAT = 2                  # written
READABLE_FORMATS = (1, 2)   # read: format 1 differs only in holding no LZ4 blobs
_PREAMBLE = struct.Struct("<13sH")
_U32 = struct.Struct("<I")
_SECTION = struct.Struct("<4sQQ")
TRACE, CHUNKS, SNAPSHOTS, BLOBS = b"TRCE", b"CHNK", b"SNAP", b"BLOB"
SECTIONS = (TRACE, CHUNKS, SNAPSHOTS, BLOBS)
_KEY_SIZE = {TRACE: 0, CHUNKS: CHUNK_KEY_SIZE, SNAPSHOTS: HASH_SIZE, BLOBS: HASH_SIZE}
_WHAT = {TRACE: "the trace manifest", CHUNKS: "event chunk", SNAPSHOTS: "snapshot",
         BLOBS: "blob"}
END = b"END."
CHECKSUM = 32
MIN_SIZE = _PREAMBLE.size + _U32.size + 2 + len(SECTIONS) * _SECTION.size + len(END) + CHECKSUM

# Bounds on what a bundle may declare, checked before anything is allocated.
MAX_HEADER = 1 << 20
MAX_SMALL_BLOB = 4 << 20            # a CPU/device state or a device tree
_MAX_VALUE = {TRACE: 64 << 20,      # trace manifest JSON
              CHUNKS: 33 + MAX_CHUNK + (MAX_CHUNK >> 7) + 1024,   # a zstd frame of MAX_CHUNK bytes
              SNAPSHOTS: 64 << 20,  # a manifest of a 2 TiB machine
              BLOBS: 1 + MAX_SMALL_BLOB}
CHUNK_EVENT_BYTES = 256 << 10       # encoded events per chunk of a trimmed recording


@dataclass
class BundleInfo:
    """What export_bundle wrote."""

    path: Path
    bytes: int
    name: str
    start: int                      # first position of the recording in the bundle
    end: int
    keyframes: int
    chunks: int
    snapshots: int
    blobs: int
    origin: dict | None             # a trimmed bundle: {"trace", "from", "to"}

    @property
    def instructions(self) -> int:
        return self.end - self.start


def describe(m: TraceManifest, sections: dict[bytes, tuple[int, int]], blob_content: int,
             state_version: int | None, total: int, fmt: int = FORMAT) -> dict:
    """The header: a summary of the contents, for people and for a quick look
    (`sections` is {tag: (records, bytes)}; `fmt` the bundle's format).
    Import recomputes it."""
    cfg = m.config
    return {
        "format": fmt,
        "trace": m.name,
        "chrono_version": m.chrono_version,
        "core": {"state_version": state_version, "state_size": cfg.get("state_size"),
                 "config_version": cfg.get("version")},
        "isa": cfg.get("isa"),
        "devices": cfg.get("devices"),
        "machine": cfg,
        "positions": {"start": m.start_position, "end": m.end_position},
        "complete": m.complete,
        "outcome": m.outcome,
        "origin": m.origin,
        "counts": {"keyframes": len(m.keyframes), "loads": len(m.loads), "events": m.events,
                   "chunks": sections[CHUNKS][0], "snapshots": sections[SNAPSHOTS][0],
                   "blobs": sections[BLOBS][0]},
        "sizes": {"bundle": total, "trace": sections[TRACE][1], "chunks": sections[CHUNKS][1],
                  "snapshots": sections[SNAPSHOTS][1], "blobs": sections[BLOBS][1],
                  "blob_content": blob_content},
    }


def _header_bytes(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _state_version(state: bytes) -> int | None:
    """The version field of a CPU/device state (native/state.c: magic, version, ...)."""
    return int.from_bytes(state[4:8], "little") if len(state) >= 8 else None


# ==== export ===========================================================================

def export_bundle(store: Store, name: str, path, start: int | None = None,
                  end: int | None = None) -> BundleInfo:
    """Write recording `name` as one bundle file at `path`.

    With `start` and/or `end` (positions), the bundle holds a trimmed copy: it
    starts at the last keyframe at or before `start` and ends at `end` (default:
    the recording's end).  The window is replayed from that keyframe to `end`
    (verifying it), a keyframe snapshot is saved at `end` (in `store`, unnamed:
    gc removes it once the bundle is written), and the copy's manifest carries
    the window's console output hash, so replaying the bundle is verified like
    the original.  The file is written beside `path` and renamed into place:
    there is never a half-written bundle at `path`.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"cannot write bundle {path}: it is a directory; give a file name "
                         f"such as {path / (name + '.chrono')}")
    with store.reader() as r:
        manifest = read_trace(r, name)
    replayer = None
    try:
        chunks = None
        if start is not None or end is not None:
            manifest, chunks, replayer = _trim(store, manifest, start, end)
        with store.reader() as r:
            return _write_bundle(r, manifest, chunks, path)
    finally:
        if replayer is not None:
            replayer.close()


def _trim(store: Store, m: TraceManifest, start: int | None, end: int | None):
    """(manifest, chunks, replayer) of the window start..end of `m` (see export_bundle);
    the replayer holds the end snapshot until it is closed."""
    from chrono.replay.replay import Replayer

    last = m.end_position if m.complete else m.keyframes[-1].position
    start = m.start_position if start is None else start
    end = last if end is None else end
    if not m.start_position <= start <= end <= last:
        raise UsageError(f"instructions {start} to {end} are not a window of recording "
                         f"{m.name!r}: it has instructions {m.start_position} to {last}; "
                         f"give --from and --to within them, --from first")
    first = max(i for i, k in enumerate(m.keyframes) if k.position <= start)
    keyframes = [copy.copy(m.keyframes[first])]
    events = [Event(keyframes[0].position, KEYFRAME, value=0)]
    loads: list[str] = []

    def applied(event: Event) -> None:
        if event.kind == KEYFRAME:
            if event.value >= len(m.keyframes):
                return                  # never committed (a recording cut short)
            keyframes.append(copy.copy(m.keyframes[event.value]))
            event = Event(event.position, KEYFRAME, value=len(keyframes) - 1)
        elif event.kind == LOAD and event.data.hex() not in loads:
            loads.append(event.data.hex())
        events.append(event)

    replayer = Replayer(store, m.name, start=first)
    try:
        report = replayer.replay(end, applied=applied)
    except BaseException:
        replayer.close()
        raise
    machine = replayer.machine
    events.append(Event(end, KEYFRAME, value=len(keyframes)))
    keyframes.append(Keyframe(end, machine.steps, machine.vclock, report.snapshot_id))
    trimmed = TraceManifest(
        id=os.urandom(TRACE_ID_BYTES).hex(), name=m.name, created=time.time(),
        chrono_version=m.chrono_version, config=m.config, rtc_epoch_ns=m.rtc_epoch_ns,
        digest_interval=m.digest_interval, keyframe_interval=m.keyframe_interval,
        start_position=keyframes[0].position, keyframes=keyframes, loads=loads,
        end_position=end, end_vclock=machine.vclock, output_bytes=report.output_bytes,
        output_sha256=report.output_sha256, complete=True,
        outcome=m.outcome if m.complete and end == m.end_position else "trimmed",
        origin={"trace": m.name, "from": start, "to": end})
    chunks = _pack(trimmed, events)
    return trimmed, chunks, replayer


def _pack(m: TraceManifest, events: list[Event]) -> list[tuple[bytes, bytes]]:
    """Chunks for `events` (cut after each keyframe and every CHUNK_EVENT_BYTES, as
    the recorder does); fills in the manifest's log counts."""
    chunks, run, size = [], [], 0

    def flush():
        nonlocal run, size
        if run:
            base = run[0].position
            chunks.append((chunk_key(m.id_bytes, base, len(chunks)),
                           pack_chunk(encode_events(run, base))))
        run, size = [], 0

    inputs = no_inputs()
    for e in events:
        run.append(e)
        size += len(e.data) + 4
        count_input(inputs, e.kind, e.data)
        if e.kind == KEYFRAME or size >= CHUNK_EVENT_BYTES:
            flush()
    flush()
    m.chunks, m.events, m.inputs = len(chunks), len(events), inputs
    m.log_bytes = sum(len(v) for _, v in chunks)
    return chunks


def _write_bundle(r: Reader, m: TraceManifest, chunks, path: Path) -> BundleInfo:
    """Gather and check everything in one read transaction, then write the file."""
    where = f"recording {m.name!r} in store {r.store.path}"
    if chunks is None:
        chunks = list(r.chunks(m.id_bytes))
    log = LogCheck(m)
    for key, value in chunks:
        log.feed(key, value)
    problems = log.finish()
    if problems:
        raise StoreCorruptError(f"{where} is damaged: {problems[0]}; run `chrono trace verify`")

    snapshots = []
    for sid in sorted(m.snapshot_ids()):
        value = r.get_snapshot(sid).encode()
        if snapshot_id(value) != sid:
            raise StoreCorruptError(f"snapshot {sid} of {where} does not re-encode to its id; "
                                    f"run `chrono store verify`")
        snapshots.append((bytes.fromhex(sid), value))
    by_id = {key.hex(): Manifest.decode(value) for key, value in snapshots}
    named = set().union(*(s.blob_keys() for s in by_id.values()))
    pages = reachable(r, m.snapshot_ids()) - named
    blob_keys = sorted(named) + sorted(pages)

    # Every blob is read and verified before a byte is written: a damaged store
    # gives an error here, never a bundle that import would refuse.
    first_state = by_id[m.keyframes[0].snapshot].state
    blob_bytes = content = 0
    state_version = None
    for key in blob_keys:
        value = r.get_raw(key)
        if value is None:
            raise StoreCorruptError(f"blob {key.hex()} of {where} is missing; run "
                                    f"`chrono store verify`")
        data = decode_blob(key, value, str(r.store.path))
        content += len(data)
        blob_bytes += HASH_SIZE + _U32.size + len(value)
        if key == first_state:
            state_version = _state_version(data)

    trace_value = m.encode()
    sections = {TRACE: (1, _U32.size + len(trace_value)),
                CHUNKS: (len(chunks), sum(CHUNK_KEY_SIZE + _U32.size + len(v) for _, v in chunks)),
                SNAPSHOTS: (len(snapshots), sum(HASH_SIZE + _U32.size + len(v) for _, v in snapshots)),
                BLOBS: (len(blob_keys), blob_bytes)}
    fixed = (_PREAMBLE.size + _U32.size + len(SECTIONS) * _SECTION.size
             + sum(n for _, n in sections.values()) + len(END) + CHECKSUM)
    total = fixed
    while True:         # the header holds the total size, which includes the header
        header = _header_bytes(describe(m, sections, content, state_version, total))
        if fixed + len(header) == total:
            break
        total = fixed + len(header)

    def records():
        yield TRACE, [(b"", trace_value)]
        yield CHUNKS, chunks
        yield SNAPSHOTS, snapshots
        yield BLOBS, ((key, r.get_raw(key)) for key in blob_keys)

    with _AtomicFile(path) as out:
        out.write(_PREAMBLE.pack(MAGIC, FORMAT) + _U32.pack(len(header)) + header)
        for tag, items in records():
            count, length = sections[tag]
            out.write(_SECTION.pack(tag, count, length))
            for key, value in items:
                out.write(key + _U32.pack(len(value)))
                out.write(value)
        out.write(END)
        out.finish()
    return BundleInfo(path, total, m.name, m.start_position, m.end_position, len(m.keyframes),
                      len(chunks), len(snapshots), len(blob_keys), m.origin)


class _AtomicFile:
    """A file written beside `path`, hashed as it goes; finish() appends the
    checksum, syncs and renames it over `path`.  Removed if anything fails."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        self.hash = hashlib.sha256()
        self.done = False

    def __enter__(self):
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as e:
            raise UsageError(f"cannot write bundle {self.path}: {e.strerror}; check the "
                             f"directory") from None
        self.file = os.fdopen(fd, "wb")
        return self

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.file.write(data)

    def finish(self) -> None:
        self.file.write(self.hash.digest())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        self.done = True
        try:
            fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    def __exit__(self, kind, exc, tb):
        if not self.done:
            self.file.close()
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise UsageError(f"cannot write bundle {self.path}: {exc.strerror or exc}; "
                                 f"nothing was written") from None


# ==== import ===========================================================================

def import_bundle(store: Store, path, name: str | None = None) -> TraceManifest:
    """Import the recording in bundle `path` into `store` (as `name`, default
    the name it was recorded under); returns its manifest.

    Everything is read and checked before anything is written (docs/bundle.md
    lists the checks); then one write transaction adds the blobs, snapshots,
    event chunks and manifest, all or nothing.  A damaged, truncated, unknown
    or unsafe bundle raises BundleError naming the file and the problem, and
    the store is unchanged.  The recording keeps its id unless the store
    already uses it (a bundle imported twice, under two names); then its
    chunks are keyed under a fresh id.  Importing a bundle whose recording is
    already in the store under that name, identical, changes nothing and
    returns it; another recording of that name is an error (use `name`).
    """
    path = Path(path)
    if name is not None:
        check_ref_name(name)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UsageError(os_error_message(f"bundle {path}", e)) from None
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            digest = _check_whole(f, size, path)
            f.seek(0)
            plan = _Verify(store, path, name).run(_Source(f, size, path), digest)
            f.seek(0)
            return _commit(store, plan, _Source(f, size, path), digest)
        except OSError as e:
            raise UsageError(os_error_message(f"bundle {path}", e)) from None


def _damaged(path: Path, what: str) -> BundleError:
    return BundleError(f"bundle {path} is damaged: {what}; nothing was imported (get a good "
                       f"copy of it)")


def _unsafe(path: Path, what: str) -> BundleError:
    return BundleError(f"bundle {path} is unsafe: {what}; nothing was imported")


class _Source:
    """Reads a bundle, never past its end, hashing what it reads."""

    def __init__(self, f: BinaryIO, size: int, path: Path):
        self.f, self.left, self.path = f, size, path
        self.offset = 0
        self.hash = hashlib.sha256()

    def read(self, n: int, what: str, hashed: bool = True) -> bytes:
        if n > self.left:
            raise _damaged(self.path, f"it ends inside {what} (byte {self.offset} of "
                                      f"{self.offset + self.left})")
        data = self.f.read(n)
        if len(data) != n:
            raise _damaged(self.path, "it changed while it was being read")
        if hashed:
            self.hash.update(data)
        self.left -= n
        self.offset += n
        return data

    def header(self) -> bytes:
        magic, version = _PREAMBLE.unpack(self.read(_PREAMBLE.size, "its preamble"))
        if magic != MAGIC or version not in READABLE_FORMATS:
            raise _damaged(self.path, "its preamble changed")
        self.format = version
        (length,) = _U32.unpack(self.read(_U32.size, "its header length"))
        if length > MAX_HEADER:
            raise _damaged(self.path, f"its header claims {length} bytes")
        return self.read(length, "its header")

    def records(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """(tag, key, value) of every record; then the end mark and the checksum,
        which must match everything read and end the file."""
        for tag in SECTIONS:
            at = self.offset
            got, count, length = _SECTION.unpack(self.read(_SECTION.size, "a section header"))
            if got != tag:
                raise _damaged(self.path, f"section {tag.decode()} was expected at byte {at}, "
                                          f"found {got!r}")
            room = self.left - len(END) - CHECKSUM
            keysize = _KEY_SIZE[tag]
            if length > room:
                raise _damaged(self.path, f"section {tag.decode()} claims {length} bytes, but "
                                          f"only {max(room, 0)} remain")
            if count * (keysize + _U32.size) > length or (tag == TRACE and count != 1):
                raise _damaged(self.path, f"section {tag.decode()} claims {count} records in "
                                          f"{length} bytes")
            end = self.offset + length
            for i in range(count):
                what = _WHAT[tag] if tag == TRACE else f"{_WHAT[tag]} {i}"
                if self.offset + keysize + _U32.size > end:
                    raise _damaged(self.path, f"{what} runs past the end of its section")
                key = self.read(keysize, what)
                (vlen,) = _U32.unpack(self.read(_U32.size, what))
                if vlen > _MAX_VALUE[tag]:
                    raise _unsafe(self.path, f"{what} claims {vlen} bytes, more than "
                                             f"{_MAX_VALUE[tag]} (the most one can have)")
                if self.offset + vlen > end:
                    raise _damaged(self.path, f"{what} claims {vlen} bytes, more than its "
                                              f"section has left")
                yield tag, key, self.read(vlen, what)
            if self.offset != end:
                raise _damaged(self.path, f"section {tag.decode()} has {end - self.offset} "
                                          f"stray bytes after its last record")
        if self.read(len(END), "its end mark") != END:
            raise _damaged(self.path, "its end mark is missing")
        digest = self.hash.digest()
        if self.read(CHECKSUM, "its checksum", hashed=False) != digest or self.left:
            raise _damaged(self.path, "its checksum does not match its contents")


def _check_whole(f: BinaryIO, size: int, path: Path) -> bytes:
    """Magic, format, declared size and checksum; returns the SHA-256 of the
    contents.  Reads the file once, holding one block at a time."""
    head = f.read(_PREAMBLE.size)
    if len(head) < len(MAGIC) or head[:len(MAGIC)] != MAGIC:
        if MAGIC.startswith(head) and head:
            raise _damaged(path, f"it is truncated ({size} bytes)")
        raise BundleError(f"{path} is not a chrono trace bundle (it does not begin with "
                          f"{MAGIC!r}); give a file written by `chrono export`")
    if len(head) < _PREAMBLE.size:
        raise _damaged(path, f"it is truncated ({size} bytes)")
    _, version = _PREAMBLE.unpack(head)
    if version not in READABLE_FORMATS:
        raise BundleError(f"bundle {path} has format {version}; this chrono reads formats "
                          f"{' and '.join(map(str, READABLE_FORMATS))}: import it with a chrono "
                          f"that reads it")
    declared = _declared_size(f, size)
    if declared is not None and declared > size:
        raise _damaged(path, f"it is truncated: it has {size} of the {declared} bytes its "
                             f"header declares")
    if size < MIN_SIZE:
        raise _damaged(path, f"it is truncated ({size} bytes)")
    f.seek(0)
    h = hashlib.sha256()
    left = size - CHECKSUM
    while left:
        block = f.read(min(left, 1 << 20))
        if not block:
            raise _damaged(path, "it changed while it was being read")
        h.update(block)
        left -= len(block)
    if f.read(CHECKSUM) != h.digest():
        hint = f" ({size} bytes where its header declares {declared})" \
            if declared is not None and declared != size else ""
        raise _damaged(path, f"its checksum does not match its contents{hint}: it was altered "
                             f"or cut short")
    return h.digest()


def _declared_size(f: BinaryIO, size: int) -> int | None:
    """The size the header declares, if the header reads (only for a better message)."""
    raw = f.read(_U32.size)
    if len(raw) < _U32.size:
        return None
    (length,) = _U32.unpack(raw)
    if length > min(MAX_HEADER, size):
        return None
    try:
        value = json.loads(f.read(length))["sizes"]["bundle"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return value if isinstance(value, int) else None


@dataclass
class _Plan:
    """What pass 1 verified, for the write."""

    path: Path
    manifest: TraceManifest
    name: str
    from_store: set[bytes]           # blobs the snapshots need that the store supplies


class _Verify:
    """Pass 1: reads every record and checks it; holds keys, never blobs."""

    def __init__(self, store: Store, path: Path, name: str | None):
        self.store, self.path, self.name = store, path, name
        self.manifest: TraceManifest | None = None
        self.log: LogCheck | None = None
        self.counts = {tag: [0, 0] for tag in SECTIONS}
        self.previous = {CHUNKS: b"", SNAPSHOTS: b""}
        self.snapshots: dict[str, Manifest] = {}
        # What each blob is, as far as known: its size is checked before decoding.
        self.states: set[bytes] = set()
        self.dtbs: set[bytes] = set()
        self.leaves: set[bytes] = set()
        self.pages: set[bytes] = set()
        self.blobs: set[bytes] = set()
        self.blob_content = 0
        self.state_version = None

    def run(self, src: _Source, digest: bytes) -> _Plan:
        header = src.header()
        self.format = src.format
        for tag, key, value in src.records():
            count = self.counts[tag]
            count[0] += 1
            count[1] += len(key) + _U32.size + len(value)
            if tag == TRACE:
                self.trace(value)
            elif tag == CHUNKS:
                self.chunk(key, value)
            elif tag == SNAPSHOTS:
                self.snapshot(key, value)
            else:
                self.blob(key, value)
        if src.hash.digest() != digest:
            raise _damaged(self.path, "it changed while it was being read")
        return self.finish(header, src.offset)

    # ---- records ----------------------------------------------------------------------
    def trace(self, value: bytes) -> None:
        try:
            m = TraceManifest.parse(value)
        except TraceFormatError as e:
            raise BundleError(f"bundle {self.path} holds a recording of trace format "
                              f"{e.format!r}; this chrono reads format {TRACE_FORMAT}: import "
                              f"it with a chrono that reads it") from None
        except ValueError as e:
            raise _damaged(self.path, f"its trace manifest is malformed ({e})") from None
        problem = ref_name_problem(m.name) if self.name is None else None
        if problem:
            raise _unsafe(self.path, f"its recording is named {m.name!r}, and {problem}; "
                                     f"import it with --name NAME")
        problem = config_problem(m.config)
        if problem:
            raise BundleError(f"bundle {self.path} holds a recording this chrono cannot replay: "
                              f"{problem}; nothing was imported")
        self.manifest = m
        self.log = LogCheck(m)
        self.expected = {k.snapshot: [] for k in m.keyframes}
        for k in m.keyframes:
            self.expected[k.snapshot].append(k)
        for sid in m.loads:
            self.expected.setdefault(sid, [])
        with self.store.reader() as r:
            _existing(r, self.name or m.name, m)

    def chunk(self, key: bytes, value: bytes) -> None:
        self._in_order(CHUNKS, key)
        self.log.feed(key, value)
        if self.log.problems:
            raise _damaged(self.path, self.log.problems[0])

    def snapshot(self, key: bytes, value: bytes) -> None:
        self._in_order(SNAPSHOTS, key)
        sid = key.hex()
        if snapshot_id(value) != sid:
            raise _damaged(self.path, f"snapshot {sid} does not match its id")
        if sid not in self.expected:
            raise _unsafe(self.path, f"it carries snapshot {sid}, which its recording does not use")
        try:
            manifest = Manifest.decode(value)
            canonical = manifest.encode() == value
        except ManifestFormatError as e:
            raise BundleError(f"bundle {self.path} holds snapshot {sid} in a format this chrono "
                              f"does not read ({e}): import it with a chrono that reads it") from None
        except (ValueError, TypeError, RecursionError) as e:
            raise _damaged(self.path, f"snapshot {sid} is malformed ({e})") from None
        problem = None if canonical else "it is not in the form chrono writes"
        problem = problem or _config_problem(manifest, self.manifest.config,
                                             keyframe=bool(self.expected[sid]))
        for k in self.expected[sid]:
            if (manifest.steps, manifest.vclock) != (k.steps, k.vclock):
                problem = (f"it is at instruction {manifest.steps:,} (virtual time "
                           f"{manifest.vclock / 1e9:.9f} s), its keyframe at {k.steps:,} "
                           f"({k.vclock / 1e9:.9f} s)")
        if problem:
            raise _damaged(self.path, f"snapshot {sid}: {problem}")
        self.snapshots[sid] = manifest
        self.states.add(manifest.state)
        if manifest.dtb:
            self.dtbs.add(manifest.dtb)
        for _, table in manifest.tables():
            self.leaves |= table.leaf_keys

    def blob(self, key: bytes, value: bytes) -> None:
        if not self.blobs:
            self._snapshots_complete()
        name = key.hex()
        if key == ZERO_HASH or key in self.blobs:
            raise _damaged(self.path, f"blob {name} is stored twice, or is the zero-page "
                                      f"sentinel")
        if not value:
            raise _damaged(self.path, f"blob {name} is empty")
        # Its size, from its header, must be one a blob in its place has: a zstd
        # frame claiming more (a decompression bomb) is refused without inflating it.
        allowed = []
        if key in self.pages:
            allowed.append(("a page", PAGE_SIZE, PAGE_SIZE))
        if key in self.leaves:
            allowed.append(("a page-table leaf", LEAF_BYTES, LEAF_BYTES))
        if key in self.states:
            allowed.append(("a CPU/device state", 1, MAX_SMALL_BLOB))
        if key in self.dtbs:
            allowed.append(("a device tree", 1, MAX_SMALL_BLOB))
        if not allowed:
            raise _unsafe(self.path, f"it carries blob {name}, which none of its snapshots "
                                     f"uses (before the leaf naming it, if any)")
        size = content_size(value)
        wrong = [a for a in allowed if size is None or not a[1] <= size <= a[2]]
        if wrong:       # a blob in several places must fit each (a leaf is never a page)
            role, low, high = wrong[0]
            expected = f"{low} bytes" if low == high else f"at most {high} bytes"
            raise _unsafe(self.path, f"blob {name} claims "
                                     f"{'no size' if size is None else f'{size} bytes'} where "
                                     f"{role} has {expected}")
        try:
            data = decode_blob(key, value)
        except StoreCorruptError as e:
            raise _damaged(self.path, f"blob {name} does not match its key ({e.reason})") from None
        if key in self.states:
            self._check_state(key, data)
        self.blobs.add(key)
        self.blob_content += len(data)
        if key in self.leaves and len(data) == LEAF_BYTES:
            self._add_pages(data)
        if key == self._first_state():
            self.state_version = _state_version(data)

    def _check_state(self, key: bytes, state: bytes) -> None:
        """Replay loads every state its snapshots name: each must be one this core loads."""
        problem = state_problem(state)
        if problem:
            raise _damaged(self.path, f"blob {key.hex()}, a CPU/device state, is not one this "
                                      f"chrono loads ({problem})")

    def _store_leaf(self, r: Reader, key: bytes) -> bytes:
        """A leaf the bundle's snapshots name and the store supplies: a blob of
        the store that is no leaf (a page, a state) is the bundle's error."""
        data = r.get_blob(key)          # damage in the store is the store's error
        if len(data) != LEAF_BYTES:
            raise _damaged(self.path, f"its snapshots name blob {key.hex()} of store "
                                      f"{self.store.path} as a page-table leaf, and it is not one")
        return data

    def _first_state(self) -> bytes | None:
        snap = self.snapshots.get(self.manifest.keyframes[0].snapshot)
        return snap.state if snap is not None else None

    def _add_pages(self, leaf: bytes) -> None:
        rows = np.frombuffer(leaf, np.uint8).reshape(LEAF_PAGES, HASH_SIZE)
        self.pages.update(row.tobytes() for row in rows[rows.any(axis=1)])

    def _in_order(self, tag: bytes, key: bytes) -> None:
        if key <= self.previous[tag]:
            raise _damaged(self.path, f"{_WHAT[tag]} {key.hex()} is out of order or repeated")
        self.previous[tag] = key

    def _snapshots_complete(self) -> None:
        missing = sorted(set(self.expected) - set(self.snapshots))
        if missing:
            raise _damaged(self.path, f"snapshot {missing[0]}, which its recording needs, is "
                                      f"not in it")

    # ---- after the last record --------------------------------------------------------
    def finish(self, header: bytes, total: int) -> _Plan:
        m = self.manifest
        problems = self.log.finish()
        if problems:
            raise _damaged(self.path, problems[0])
        self._snapshots_complete()
        from_store: set[bytes] = set()
        needed = (self.states | self.dtbs | self.leaves | self.pages) - self.blobs - {ZERO_HASH}
        if needed:
            # A bundle may leave out blobs the store has (this chrono's exports never do).
            with self.store.reader() as r:
                for key in sorted(needed):
                    if not r.has_blob(key):
                        raise _damaged(self.path, f"blob {key.hex()}, which its snapshots "
                                                  f"need, is neither in it nor in store "
                                                  f"{self.store.path}")
                    from_store.add(key)
                    if key in self.states:
                        self._check_state(key, r.get_blob(key))
                    if key in self.leaves:
                        self._add_pages(self._store_leaf(r, key))
                    if key == self._first_state():
                        self.state_version = _state_version(r.get_blob(key))
            # Pages under leaves the store supplied are in the store as well (a store
            # holds a leaf's pages as long as the leaf), so nothing more is needed.
        sections = {tag: tuple(c) for tag, c in self.counts.items()}
        expected = _header_bytes(describe(m, sections, self.blob_content, self.state_version,
                                          total, self.format))
        if header != expected:
            raise _damaged(self.path, "its header does not describe its contents")
        return _Plan(self.path, m, self.name or m.name, from_store)


def _config_problem(manifest: Manifest, recording: dict, keyframe: bool) -> str | None:
    """Can replay rebuild the snapshot's machine (guest_from_snapshot), does its
    configuration agree with its tables, and is it the recording's machine (a
    keyframe's configuration is the recording's, a loaded snapshot's one the
    recording's machine can restore)?"""
    cfg = manifest.config
    problem = config_problem(cfg)
    if problem:
        return problem
    if pages_for(cfg["ram_size"]) != manifest.ram.npages:
        return "its RAM size does not match its page table"
    disk = cfg["disk_size"]
    if disk is None and manifest.disks:
        return "it has a disk table but its machine has no disk"
    if disk is not None and (len(manifest.disks) != 1 or manifest.disks[0].size != disk):
        return "its disk size does not match its disk table"
    if keyframe and json.dumps(cfg, sort_keys=True) != json.dumps(recording, sort_keys=True):
        return "its machine configuration is not its recording's"
    found = incompatibility(recording, cfg)
    if found:
        return f"it was taken on a machine with another {found[1]} than its recording's"
    return None


def _existing(r: Reader, name: str, m: TraceManifest) -> TraceManifest | None:
    """None if `name` is free; the recording there if it is `m`, imported already
    (same id, same everything); UsageError if another recording has the name."""
    value = r.get_trace(name)
    if value is None:
        return None
    existing = TraceManifest.decode(value, f"recording {name!r} in store {r.store.path}")
    renamed = copy.copy(m)
    renamed.name = name
    if existing.encode() == renamed.encode():
        return existing
    raise UsageError(f"a recording named {name!r} already exists in store {r.store.path}: "
                     f"import this one with --name NAME, or remove that one with "
                     f"`chrono trace rm {name}`")


def _commit(store: Store, plan: _Plan, src: _Source, digest: bytes) -> TraceManifest:
    """Pass 2: one write transaction, fed by reading the file again.  The file
    must hash as in pass 1 (else nothing is committed): what is written is what
    was checked."""
    m = copy.copy(plan.manifest)
    m.name = plan.name
    batch: list[tuple[bytes, bytes]] = []
    snapshots = []
    with store.writer() as w:
        existing = _existing(w, m.name, m)
        if existing is not None:
            return existing
        for key in plan.from_store:
            if not w.has_blob(key):
                raise StoreError(f"blob {key.hex()} left store {store.path} while bundle "
                                 f"{plan.path} was being checked (gc?); import it again")
        if _id_taken(w, m.id_bytes):
            m.id = os.urandom(TRACE_ID_BYTES).hex()
        prefix = m.id_bytes
        src.header()
        for tag, key, value in src.records():
            if tag == CHUNKS:
                w.put_chunk(prefix + key[TRACE_ID_BYTES:], value)
            elif tag == SNAPSHOTS:
                snapshots.append((key, value))
            elif tag == BLOBS:
                batch.append((key, value))
                if len(batch) >= 256:
                    w.put_blobs(batch)
                    batch = []
        w.put_blobs(batch)
        if src.hash.digest() != digest:
            raise _damaged(plan.path, "it changed while it was being imported")
        for key, value in snapshots:
            if w.put_snapshot(Manifest.decode(value)) != key.hex():
                raise _damaged(plan.path, f"snapshot {key.hex()} changed while it was being "
                                          f"imported")
        w.put_trace(m.name, m.encode())
    return m


def _id_taken(r: Reader, trace_id: bytes) -> bool:
    """Does the store use this trace id already (a recording, or stray chunks)?"""
    if next(iter(r.chunks(trace_id)), None) is not None:
        return True
    return any(t.id_bytes == trace_id for t in all_traces(r))
