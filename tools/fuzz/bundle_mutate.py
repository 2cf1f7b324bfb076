#!/usr/bin/env python3
"""Bundle mutator: feeds damaged and hostile trace bundles to `chrono import`.

    python3 tools/fuzz/bundle_mutate.py --seed 1 --count 10000 --time-limit 3600

Setup (once, in a temporary directory): the demo guest is recorded with the
real CLI (`chrono record`: a plain session with several keyframes, and one
that saves and loads a snapshot) and exported (`chrono export`, whole and
trimmed).  Two base stores are made that already hold other things: one with
another recording and its named snapshot, and the same plus a copy of a
source recording (so an import must give the chunks a fresh trace id).

Each case takes a seed, picks a source bundle, a base store and a mutation,
and makes one mutant.  Mutations are byte-level (bit flips, random bytes,
truncation at random and at every structure boundary, insertion, deletion,
count and length fields set to 0, -1, huge and off by one, sections
duplicated or reordered) and structural: a record, field or blob of the
parsed bundle is changed and then, usually, every hash above it is
recomputed -- blob keys, the page-table leaves naming them, the snapshot
manifests naming those, snapshot ids in the trace manifest and in the log's
load events, chunk hashes, the trace manifest's checksum, the header, the
whole-file checksum -- so that the mutant gets past the integrity checks and
exercises the parser and the semantic checks behind them (manifests, page
tables, event logs, keyframe references, names, invalid UTF-8, path-like names).

Then, in a fresh copy of the base store, in a worker process:

- import_bundle() in-process.  A refusal must be a ChronoError of one line
  naming the file, and the store must be exactly as before: every key and
  value of every database is compared (the base store was verified sound
  once, so an unchanged store needs no second verify).  Anything else is a
  "traceback" (an exception that is not a ChronoError) or a "partial import".
- if accepted: the recording is replayed in-process and the store verified
  (`store verify`'s checks, recordings included).

What "accepted" must guarantee -- the contract this fuzzer enforces: the
imported recording is whole and the store is sound (verify finds nothing,
every other recording, snapshot and name is untouched), and replaying it
either reproduces it or ends with the divergence error (DivergenceError,
exit status 9), and the divergence is allowed only when the bundle differs
in meaning from its source (its log, manifests or contents, not merely in
encoding: a zstd frame re-encoded or a JSON text respaced decodes to the
same recording, which must replay exactly).  Import cannot run the guest,
so a self-consistent bundle of a run that never happened is accepted, and
replay is what must say so.  Any other outcome -- a traceback, a crash of
the C core, a hang, any other error, a verify problem -- is
"accepted-but-broken".

A case runs in a worker process (a pool of `--workers`, restarted when one
dies): a worker killed by a signal is a "crash", one that does not answer
within `--case-timeout` seconds a "hang".  With `--cli-every N`, every Nth
case is also run through the real CLI (`chrono import`, then `chrono
replay` and `chrono store verify` if accepted) in subprocesses, checking the
one-line error, the exit code (< 128) and the absence of tracebacks.

Prints the count per class and the seeds of failures; `--keep DIR` writes
each failing mutant there; `--case SEED` reruns single cases.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHRONO = [sys.executable, "-P", "-m", "chrono.cli"]

MAGIC = b"CHRONO-TRACE\n"
TAGS = (b"TRCE", b"CHNK", b"SNAP", b"BLOB")
KEY_SIZE = {b"TRCE": 0, b"CHNK": 28, b"SNAP": 32, b"BLOB": 32}
SECTION_NAME = {b"TRCE": "trace", b"CHNK": "chunks", b"SNAP": "snapshots", b"BLOB": "blobs"}
ZERO = bytes(32)

FAILURES = ("crash", "traceback", "hang", "partial import", "accepted-but-broken", "bad refusal")

# Sessions of the demo guest (Ctrl-A c toggles the monitor).
MON = b"\x01c"
PLAIN = b"write a hello\nsync\nbench 1\nls\npoweroff\n"
LOADING = (b"write a one\n" + MON + b"savevm s1\n" + MON + b"write b two\n" + MON
           + b"loadvm s1\n" + MON + b"ls\npoweroff\n")
OTHER = (b"write z zzz\n" + MON + b"savevm kept\n" + MON + b"ls\npoweroff\n")


# ==== the format (docs/bundle.md), read and written independently of chrono ============

@dataclass
class Bundle:
    """A parsed bundle: header (dict, or raw bytes when it is not JSON) and records."""

    version: int
    header: dict
    sections: dict                   # tag -> [(key, value)]

    def copy(self) -> "Bundle":
        return Bundle(self.version, copy.deepcopy(self.header),
                      {t: list(r) for t, r in self.sections.items()})


@dataclass
class Layout:
    """Offsets in a serialized bundle, for byte-level mutations."""

    fields: list = field(default_factory=list)        # (offset, struct format, what)
    boundaries: list = field(default_factory=list)    # offsets where a structure begins
    sections: dict = field(default_factory=dict)      # tag -> (start, end) of the section


def parse(data: bytes) -> tuple[Bundle, Layout]:
    version = struct.unpack_from("<H", data, 13)[0]
    (hlen,) = struct.unpack_from("<I", data, 15)
    lay = Layout(fields=[(15, "<I", "header length")], boundaries=[0, 13, 15, 19, 19 + hlen])
    header = json.loads(data[19:19 + hlen])
    at = 19 + hlen
    sections = {}
    for tag in TAGS:
        start = at
        got, count, length = struct.unpack_from("<4sQQ", data, at)
        assert got == tag, (got, tag)
        lay.fields += [(at + 4, "<Q", f"{tag.decode()} count"), (at + 12, "<Q", f"{tag.decode()} length")]
        at += 20
        lay.boundaries += [at - 16, at - 8, at]
        records = []
        for _ in range(count):
            key = data[at:at + KEY_SIZE[tag]]
            (vlen,) = struct.unpack_from("<I", data, at + KEY_SIZE[tag])
            lay.fields.append((at + KEY_SIZE[tag], "<I", f"{tag.decode()} value length"))
            lay.boundaries += [at, at + KEY_SIZE[tag]]
            at += KEY_SIZE[tag] + 4
            records.append((key, data[at:at + vlen]))
            at += vlen
        lay.sections[tag] = (start, at)
        sections[tag] = records
    lay.boundaries += [at, at + 4, len(data) - 32, len(data)]
    assert data[at:at + 4] == b"END." and at + 36 == len(data)
    return Bundle(version, header, sections), lay


def trace_json(b: Bundle) -> dict | None:
    """The trace manifest's JSON, if its one record is readable."""
    try:
        return json.loads(b.sections[b"TRCE"][0][1][32:])
    except (ValueError, IndexError, RecursionError):
        return None


def set_trace_json(b: Bundle, m: dict) -> None:
    text = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
    b.sections[b"TRCE"][0] = (b"", hashlib.sha256(text).digest() + text)


def blob_content(value: bytes) -> bytes | None:
    import lz4.block
    import zstandard
    if value[:1] == b"\x00":
        return value[1:]
    if value[:1] == b"\x02":
        try:
            return lz4.block.decompress(value[1:]) if len(value) >= 5 and int.from_bytes(
                value[1:5], "little") <= 1 << 23 else None
        except lz4.block.LZ4BlockError:
            return None
    if value[:1] == b"\x01":
        try:
            return zstandard.ZstdDecompressor().decompress(value[1:], max_output_size=1 << 23)
        except zstandard.ZstdError:
            return None
    return None


def encode_blob(content: bytes) -> tuple[bytes, bytes]:
    """As chrono writes a blob (LZ4, or raw when that saves less than 1/32)."""
    import lz4.block
    packed = lz4.block.compress(content, store_size=True)
    value = b"\x02" + packed if len(packed) < len(content) - len(content) // 32 else b"\x00" + content
    return hashlib.sha256(content).digest(), value


def fix_header(b: Bundle, total_hint: int = 0) -> None:
    """Bring the header up to date with the contents, as docs/bundle.md describes it."""
    h = b.header
    if not isinstance(h, dict):
        return
    sizes = {SECTION_NAME[t]: sum(len(k) + 4 + len(v) for k, v in r) for t, r in b.sections.items()}
    h.setdefault("counts", {})
    h.setdefault("sizes", {})
    for t, r in b.sections.items():
        if t != b"TRCE" and isinstance(h["counts"], dict):
            h["counts"][SECTION_NAME[t]] = len(r)
    if isinstance(h["sizes"], dict):
        h["sizes"].update(sizes)
        content = 0
        for _, v in b.sections[b"BLOB"]:
            c = blob_content(v) if v else None
            content += len(c) if c is not None else 0
        h["sizes"]["blob_content"] = content
    m = trace_json(b)
    if isinstance(m, dict):
        try:
            cfg = m.get("config") if isinstance(m.get("config"), dict) else {}
            h["trace"] = m.get("name")
            h["chrono_version"] = m.get("chrono_version")
            h["core"] = {"state_version": _state_version(b, m), "state_size": cfg.get("state_size"),
                         "config_version": cfg.get("version")}
            h["isa"], h["devices"], h["machine"] = cfg.get("isa"), cfg.get("devices"), m.get("config")
            h["positions"] = {"start": m.get("start_position"), "end": m.get("end_position")}
            h["complete"], h["outcome"], h["origin"] = m.get("complete"), m.get("outcome"), m.get("origin")
            if isinstance(h["counts"], dict):
                h["counts"]["keyframes"] = len(m.get("keyframes") or [])
                h["counts"]["loads"] = len(m.get("loads") or [])
                h["counts"]["events"] = m.get("events")
        except (TypeError, AttributeError):
            pass


def _state_version(b: Bundle, m: dict) -> int | None:
    try:
        sid = bytes.fromhex(m["keyframes"][0]["snapshot"])
        snap = dict(b.sections[b"SNAP"]).get(sid)
        state_key = snap[64:96] if snap else None
        value = dict(b.sections[b"BLOB"]).get(state_key)
        content = blob_content(value) if value else None
        return int.from_bytes(content[4:8], "little") if content and len(content) >= 8 else None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def build(b: Bundle, header: bool = True, checksum: bool = True, section_order=TAGS) -> bytes:
    """Serialize; with `header`, the header is brought up to date (its total size too)."""
    body = b""
    for tag in section_order:
        records = b.sections.get(tag, [])
        payload = b"".join(k + struct.pack("<I", len(v)) + v for k, v in records)
        body += struct.pack("<4sQQ", tag, len(records), len(payload)) + payload
    if header:
        fix_header(b)
    for _ in range(4):
        text = b.header if isinstance(b.header, bytes) else \
            json.dumps(b.header, sort_keys=True, separators=(",", ":")).encode()
        data = MAGIC + struct.pack("<H", b.version) + struct.pack("<I", len(text)) + text + body + b"END."
        total = len(data) + 32
        if not header or not isinstance(b.header, dict) or not isinstance(b.header.get("sizes"), dict) \
                or b.header["sizes"].get("bundle") == total:
            break
        b.header["sizes"]["bundle"] = total
    return data + (hashlib.sha256(data).digest() if checksum else bytes(32))


def resum(data: bytes) -> bytes:
    return data[:-32] + hashlib.sha256(data[:-32]).digest()


# ==== re-keying: a changed object gets a new key, and so does everything naming it ======

def sort_bundle(b: Bundle) -> None:
    """Records in the order export writes them (blobs: states, trees, leaves, then pages)."""
    b.sections[b"CHNK"].sort(key=lambda r: r[0])
    b.sections[b"SNAP"].sort(key=lambda r: r[0])
    pages = _page_keys(b)
    b.sections[b"BLOB"].sort(key=lambda r: (r[0] in pages, r[0]))


def _page_keys(b: Bundle) -> set[bytes]:
    out = set()
    named = set()
    for _, v in b.sections[b"SNAP"]:
        named |= _named_keys(v)
    for k, v in b.sections[b"BLOB"]:
        if k in named:
            c = blob_content(v)
            if c is not None and len(c) == 16384:
                out |= {c[i:i + 32] for i in range(0, 16384, 32)}
    return (out - {ZERO}) - named


def _named_keys(snapshot: bytes) -> set[bytes]:
    """Keys a snapshot manifest names: state, device tree, leaves (chrono.store.manifest)."""
    try:
        from chrono.store.manifest import Manifest
        return Manifest.decode(snapshot).blob_keys()
    except Exception:               # noqa: BLE001 -- a mutated manifest may not decode
        return set()


def rekey_blob(b: Bundle, old: bytes, new: bytes, depth: int = 0) -> None:
    """Blob `old` is now `new`: fix the leaves and manifests naming it (so far: a
    mutant leaf may name itself)."""
    for i, (k, v) in enumerate(list(b.sections[b"BLOB"])):
        if depth > 8:
            break
        c = blob_content(v)
        if c is None or len(c) != 16384 or old not in c:
            continue
        rows = [c[j:j + 32] for j in range(0, 16384, 32)]
        if old not in rows:
            continue
        leaf = b"".join(new if r == old else r for r in rows)
        key, value = encode_blob(leaf)
        b.sections[b"BLOB"][i] = (key, value)
        rekey_blob(b, k, key, depth + 1)
    for i, (k, v) in enumerate(list(b.sections[b"SNAP"])):
        if old in v:
            nv = v.replace(old, new)
            b.sections[b"SNAP"][i] = (hashlib.sha256(nv).digest(), nv)
            rekey_snapshot(b, k, hashlib.sha256(nv).digest())


def rekey_snapshot(b: Bundle, old: bytes, new: bytes, depth: int = 0) -> None:
    """Snapshot `old` is now `new`: fix the trace manifest, load events and child parents
    (a chain of parents is followed only so far: a mutant may make one its own parent)."""
    m = trace_json(b)
    if m is not None:
        text = json.dumps(m, sort_keys=True, separators=(",", ":")).replace(old.hex(), new.hex())
        set_trace_json(b, json.loads(text))
    for i, (k, v) in enumerate(list(b.sections[b"CHNK"])):
        events = chunk_content(v)
        if events is not None and old in events:
            b.sections[b"CHNK"][i] = (k, pack_chunk(events.replace(old, new)))
    for i, (k, v) in enumerate(list(b.sections[b"SNAP"])):
        if k != new and v[8:40] == old and depth < 64:
            nv = v[:8] + new + v[40:]
            b.sections[b"SNAP"][i] = (hashlib.sha256(nv).digest(), nv)
            rekey_snapshot(b, k, hashlib.sha256(nv).digest(), depth + 1)


def chunk_content(value: bytes) -> bytes | None:
    import zstandard
    try:
        return zstandard.ZstdDecompressor().decompress(value[33:], max_output_size=1 << 25)
    except zstandard.ZstdError:
        return None


def pack_chunk(encoded: bytes, level: int = 3) -> bytes:
    import zstandard
    frame = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(encoded)
    return b"\x01" + hashlib.sha256(encoded).digest() + frame


def replace_blob(b: Bundle, index: int, content: bytes) -> None:
    old = b.sections[b"BLOB"][index][0]
    key, value = encode_blob(content)
    b.sections[b"BLOB"][index] = (key, value)
    rekey_blob(b, old, key)


def replace_snapshot(b: Bundle, index: int, value: bytes) -> None:
    old = b.sections[b"SNAP"][index][0]
    new = hashlib.sha256(value).digest()
    b.sections[b"SNAP"][index] = (new, value)
    rekey_snapshot(b, old, new)


# ==== the log ============================================================================

def log_events(b: Bundle):
    """Every event of the bundle's log, decoded with chrono's own codec (a list), or None."""
    from chrono.replay.events import decode_events
    out = []
    for key, value in b.sections[b"CHNK"]:
        content = chunk_content(value)
        if content is None:
            return None
        try:
            out += decode_events(content, struct.unpack(">QI", key[-12:])[0])
        except ValueError:
            return None
    return out


def set_log(b: Bundle, events, rng: random.Random, fix_counts: bool) -> None:
    """Re-encode `events` into chunks (split where the original split, or at random) and,
    with `fix_counts`, set the manifest's counts to what the log now holds."""
    from chrono.replay.events import CONSOLE, ENTROPY, LOAD, SKIP, encode_events
    m = trace_json(b)
    if m is None or not events:
        return
    tid = bytes.fromhex(m["id"]) if isinstance(m.get("id"), str) and len(m["id"]) == 32 else bytes(16)
    pieces = rng.choice([1, 1, 2, 3, len(events)])
    cuts = sorted(rng.sample(range(1, len(events)), min(pieces - 1, len(events) - 1))) \
        if len(events) > 1 else []
    chunks = []
    for n, (s, e) in enumerate(zip([0, *cuts], [*cuts, len(events)])):
        part = events[s:e]
        base = part[0].position
        try:
            encoded = encode_events(part, base)
        except (ValueError, OverflowError):
            return
        chunks.append((tid + struct.pack(">QI", base, n), pack_chunk(encoded)))
    b.sections[b"CHNK"] = chunks
    if fix_counts:
        m["chunks"], m["events"] = len(chunks), len(events)
        m["log_bytes"] = sum(len(v) for _, v in chunks)
        m["inputs"] = {"console": sum(len(e.data) for e in events if e.kind == CONSOLE),
                       "entropy": sum(len(e.data) for e in events if e.kind == ENTROPY),
                       "skips": sum(e.kind == SKIP for e in events),
                       "loads": sum(e.kind == LOAD for e in events)}
        set_trace_json(b, m)


# ==== values to try ======================================================================

def edge_ints(rng: random.Random, old=0) -> int:
    old = old if isinstance(old, int) else 0
    return rng.choice([0, 1, -1, old + 1, old - 1, old * 2, old + rng.randint(2, 10 ** 6),
                       2 ** 31 - 1, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1,
                       2 ** 64, 2 ** 100, -(2 ** 63)])


def edge_values(rng: random.Random, old=None):
    return rng.choice([None, True, False, 0, -1, 1.5, float("nan"), float("inf"), "", "x",
                       [], {}, [1], {"a": 1}, "0" * 64, edge_ints(rng, old), str(old)])


NAMES = ["", ".", "..", "../x", "../../etc/passwd", "/abs", "a/b", "a\\b", "C:\\x", "~", "-x",
         " x", "x ", "x\x00y", "x\ny", "x\x1b[2J", "\u202eevil", "zero\u200bwidth", "\udcff\udcfe",
         "a\udc80b", "x" * 256, "x" * 10000, "lease/host/1/x", "demo", "other", "demo-copy",
         "kept", "s1", "名前", "é", "e\u0301", "\ufeffbom", "nul\x00", "tab\tx", "line\u2028x",
         "CON", "*", "?", "%s%n", "{name}", "$(touch x)"]


# ==== mutations ==========================================================================

def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes, dict]:
    """A mutant of `data`: (what was done, bytes, import options)."""
    options = {}
    if rng.random() < 0.05:
        options["name"] = rng.choice(NAMES + ["fresh-name"])
    for _ in range(20):
        kind = rng.choices(list(MUTATIONS), weights=[w for w, _ in MUTATIONS.values()])[0]
        try:
            what, mutant = MUTATIONS[kind][1](data, rng)
        except _Skip:
            continue
        except (RecursionError, ValueError, KeyError, IndexError, TypeError, struct.error):
            continue        # a mutation this bundle's shape does not allow
        if mutant != data:
            return f"{kind}: {what}", mutant, options
    return "identity", data, options


class _Skip(Exception):
    """This mutation does not apply to this bundle."""


def _body(data):
    return bytearray(data[:-32])


def _finish(body, data, rng, p=0.8):
    """Checksum recomputed with probability `p`, else the old one kept."""
    if rng.random() < p:
        return " (checksum recomputed)", bytes(body) + hashlib.sha256(body).digest()
    return "", bytes(body) + data[-32:]


def m_flip(data, rng):
    body = _body(data)
    at = rng.randrange(len(body))
    body[at] ^= 1 << rng.randrange(8)
    note, out = _finish(body, data, rng)
    return f"bit flip at {at}{note}", out


def m_bytes(data, rng):
    body = _body(data)
    spots = [rng.randrange(len(body)) for _ in range(rng.randint(1, 16))]
    for at in spots:
        body[at] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    note, out = _finish(body, data, rng)
    return f"bytes changed at {spots[:4]}{note}", out


def m_truncate(data, rng):
    _, lay = parse(data)
    if rng.random() < 0.5:
        at = rng.randrange(len(data))
    else:
        at = max(0, min(len(data) - 1, rng.choice(lay.boundaries) + rng.choice([-1, 0, 0, 1])))
    out = data[:at]
    if rng.random() < 0.6 and len(out) > 32:      # and a checksum made for what is left
        out = out + hashlib.sha256(out).digest()
        return f"cut at {at}, checksum appended", out
    return f"cut at {at}", out


def m_insert(data, rng):
    body = _body(data)
    _, lay = parse(data)
    at = rng.choice(lay.boundaries[:-2]) if rng.random() < 0.5 else rng.randrange(len(body) + 1)
    at = min(at, len(body))
    blob = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8, 20, 36, rng.randint(1, 300)])))
    body[at:at] = blob
    note, out = _finish(body, data, rng)
    return f"{len(blob)} bytes inserted at {at}{note}", out


def m_delete(data, rng):
    body = _body(data)
    _, lay = parse(data)
    at = rng.choice(lay.boundaries[:-3]) if rng.random() < 0.5 else rng.randrange(len(body))
    n = rng.choice([1, 4, 8, 20, 32, 36, rng.randint(1, 300)])
    del body[at:at + n]
    note, out = _finish(body, data, rng)
    return f"{n} bytes deleted at {at}{note}", out


def m_field(data, rng):
    body = _body(data)
    _, lay = parse(data)
    at, fmt, what = rng.choice(lay.fields)
    width = struct.calcsize(fmt)
    (old,) = struct.unpack_from(fmt, body, at)
    new = rng.choice([0, 1, old + 1, old - 1, old + 32, old - 32, old * 2, 2 ** (8 * width) - 1,
                      2 ** (8 * width - 1), 2 ** (8 * width - 1) - 1, rng.getrandbits(8 * width),
                      len(data), len(data) - at]) % (1 << (8 * width))
    struct.pack_into(fmt, body, at, new)
    note, out = _finish(body, data, rng, 0.9)
    return f"{what} at {at}: {old} -> {new}{note}", out


def m_sections(data, rng):
    """Sections duplicated, dropped, swapped or reordered (whole-file checksum recomputed)."""
    _, lay = parse(data)
    spans = [data[s:e] for s, e in (lay.sections[t] for t in TAGS)]
    head = data[:lay.sections[b"TRCE"][0]]
    choice = rng.randrange(5)
    if choice == 0:
        i = rng.randrange(4)
        spans.insert(i, spans[i])
        what = f"section {TAGS[i].decode()} twice"
    elif choice == 1:
        i = rng.randrange(4)
        del spans[i]
        what = f"section {TAGS[i].decode()} dropped"
    elif choice == 2:
        i, j = rng.sample(range(4), 2)
        spans[i], spans[j] = spans[j], spans[i]
        what = f"sections {TAGS[i].decode()} and {TAGS[j].decode()} swapped"
    elif choice == 3:
        rng.shuffle(spans)
        what = "sections shuffled"
    else:
        spans.append(spans[rng.randrange(4)])
        what = "a section after the last"
    out = head + b"".join(spans) + b"END."
    return what, out + hashlib.sha256(out).digest()


def _structural(fn):
    """A structural mutation: fn(bundle, rng) changes the parsed bundle and says what it
    did; the result is rebuilt with its header and checksum fixed (mostly)."""
    def run(data, rng):
        b, _ = parse(data)
        what = fn(b, rng)
        header = rng.random() < 0.95
        return what + ("" if header else " (header left)"), build(b, header=header)
    run.__name__ = fn.__name__
    return run


@_structural
def s_records(b, rng):
    """Records duplicated, dropped, swapped, moved between sections; keys changed."""
    tag = rng.choice([t for t in TAGS if b.sections[t]])
    records = b.sections[tag]
    i = rng.randrange(len(records))
    choice = rng.randrange(7)
    if choice == 0:
        records.insert(i, records[i])
        return f"{tag.decode()} record {i} twice"
    if choice == 1:
        del records[i]
        return f"{tag.decode()} record {i} dropped"
    if choice == 2 and len(records) > 1:
        j = rng.randrange(len(records))
        records[i], records[j] = records[j], records[i]
        return f"{tag.decode()} records {i} and {j} swapped"
    if choice == 3:
        other = rng.choice([t for t in TAGS if t != tag and KEY_SIZE[t] == KEY_SIZE[tag]] or [tag])
        b.sections[other].append(records.pop(i))
        return f"{tag.decode()} record {i} moved to {other.decode()}"
    if choice == 4 and KEY_SIZE[tag]:
        k, v = records[i]
        records[i] = (bytes(len(k)) if rng.random() < 0.3 else bytes(rng.randrange(256) for _ in k), v)
        return f"{tag.decode()} record {i} key changed"
    if choice == 5:
        k, v = records[i]
        records[i] = (k, v[:rng.randrange(len(v) + 1)])
        return f"{tag.decode()} record {i} value cut"
    records.reverse()
    return f"{tag.decode()} records reversed"


@_structural
def s_header(b, rng):
    """A header field changed (import recomputes the header: it must refuse)."""
    h = b.header
    if rng.random() < 0.1:
        b.header = rng.choice([b"", b"{}", b"[]", b"null", b"{" * 5000, b"\xff\xfe",
                               json.dumps(h, indent=1).encode()])
        return "header replaced"
    paths = [(k,) for k in h] + [(k, j) for k in h if isinstance(h[k], dict) for j in h[k]]
    path = rng.choice(paths)
    target = h
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = edge_values(rng, target[path[-1]])
    build(b)                # fix the rest ...
    target = b.header       # ... then change it again: the fix rewrote derived fields
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = edge_values(rng, target[path[-1]])
    b.header = json.dumps(b.header, sort_keys=True, separators=(",", ":")).encode()
    return f"header {'.'.join(path)} changed"


TRACE_FIELDS = ["id", "name", "created", "chrono_version", "config", "rtc_epoch_ns",
                "digest_interval", "keyframe_interval", "start_position", "keyframes", "loads",
                "chunks", "events", "log_bytes", "inputs", "end_position", "end_vclock",
                "output_bytes", "output_sha256", "complete", "outcome", "origin", "parent",
                "format", "extra"]


@_structural
def s_trace(b, rng):
    """A trace manifest field changed; its checksum recomputed (mostly)."""
    m = trace_json(b)
    if m is None:
        raise _Skip
    name = rng.choice(TRACE_FIELDS)
    old = m.get(name)
    if name == "name":
        m[name] = rng.choice(NAMES + [edge_values(rng)])
    elif name == "keyframes":
        ks = m["keyframes"]
        choice = rng.randrange(6)
        if choice == 0 and ks:
            k = rng.choice(ks)
            f = rng.choice(["position", "steps", "vclock", "snapshot"])
            k[f] = edge_values(rng, k[f]) if f == "snapshot" or rng.random() < 0.3 else edge_ints(rng, k[f])
        elif choice == 1 and ks:
            del ks[rng.randrange(len(ks))]
        elif choice == 2 and ks:
            i = rng.randrange(len(ks))
            ks.insert(i, copy.deepcopy(ks[i]))
        elif choice == 3 and len(ks) > 1:
            i, j = rng.sample(range(len(ks)), 2)
            ks[i]["snapshot"], ks[j]["snapshot"] = ks[j]["snapshot"], ks[i]["snapshot"]
        elif choice == 4 and ks:
            rng.choice(ks)["extra"] = 1
        else:
            m["keyframes"] = edge_values(rng)
    elif name == "loads":
        sids = [k.hex() for k, _ in b.sections[b"SNAP"]]
        m["loads"] = rng.choice([[], sids[:1], sids, m["loads"] * 2, [hashlib.sha256(b"x").hexdigest()],
                                 edge_values(rng)])
    elif name == "config":
        _mutate_config(m["config"], rng)
    elif name == "inputs":
        key = rng.choice(list(m["inputs"]) + ["more"])
        m["inputs"][key] = edge_values(rng, m["inputs"].get(key))
    elif name == "origin":
        m["origin"] = rng.choice([None, {"trace": "x", "from": 0, "to": 1}, {"trace": 1}, edge_values(rng)])
    elif name == "parent":
        m["parent"] = rng.choice([None, {"trace": "x", "position": 0}, {"trace": "../x", "position": -1},
                                  edge_values(rng)])
    elif name == "extra":
        m["extra"] = 1
    elif isinstance(old, bool) or not isinstance(old, int) or rng.random() < 0.3:
        m[name] = edge_values(rng, old)
    else:
        m[name] = edge_ints(rng, old)
    if rng.random() < 0.9:
        set_trace_json(b, m)
    else:
        text = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
        b.sections[b"TRCE"][0] = (b"", b.sections[b"TRCE"][0][1][:32] + text)
    return f"trace manifest {name} changed"


def _mutate_config(cfg: dict, rng: random.Random) -> str:
    key = rng.choice(list(cfg) + ["more"])
    choice = rng.randrange(4)
    if choice == 0:
        cfg.pop(key, None)
    elif choice == 1 and key in ("ram_size", "disk_size", "state_size", "version"):
        cfg[key] = edge_ints(rng, cfg.get(key))
    elif choice == 2 and isinstance(cfg.get(key), list) and cfg[key]:
        cfg[key][rng.randrange(len(cfg[key]))] = edge_values(rng)
    else:
        cfg[key] = edge_values(rng, cfg.get(key))
    return key


@_structural
def s_trace_raw(b, rng):
    """The trace manifest's JSON text altered as bytes (invalid UTF-8, escapes, spacing)."""
    value = b.sections[b"TRCE"][0][1]
    text = value[32:]
    m = json.loads(text)
    name = json.dumps(m["name"]).encode()
    choice = rng.randrange(6)
    if choice == 0:
        new = text.replace(b'"name":' + name, b'"name":"' + rng.choice(
            [b"\xff\xfe", b"de\xc0\xafmo", b"\xed\xa0\x80", b"a\x80", b"\xf4\x90\x80\x80"]) + b'"')
    elif choice == 1:
        new = text.replace(b'"name":' + name, b'"name":"' + rng.choice(
            [b"\\ud800", b"\\udcff", b"x\\u0000", b"\\u002e\\u002e/x", b"\\u202e"]) + b'"')
    elif choice == 2:
        new = json.dumps(m, indent=rng.choice([None, 1]), sort_keys=rng.random() < 0.5).encode()
    elif choice == 3:
        new = text.replace(b"}", b',"name":"dup"}', 1) if rng.random() < 0.5 else text + b" "
    elif choice == 4:
        new = b"\xef\xbb\xbf" + text
    else:
        new = text[:rng.randrange(len(text))]
    b.sections[b"TRCE"][0] = (b"", hashlib.sha256(new).digest() + new)
    return f"trace manifest text altered ({choice})"


@_structural
def s_events(b, rng):
    """Events changed, added, removed; chunks re-encoded, counts mostly fixed."""
    from chrono.replay.events import CONSOLE, DIGEST, ENTROPY, KEYFRAME, LOAD, SKIP, Event
    events = log_events(b)
    if not events:
        raise _Skip
    i = rng.randrange(len(events))
    e = events[i]
    choice = rng.randrange(10)
    if choice == 0:                       # a position moved
        pos = max(0, rng.choice([e.position + 1, e.position - 1, 0, e.position * 2, 2 ** 63,
                                 2 ** 64 - 1, e.position + rng.randint(1, 10 ** 6)]))
        events[i] = Event(pos, e.kind, e.data, e.value)
        what = f"event {i} moved to {pos}"
    elif choice == 1:
        del events[i]
        what = f"event {i} removed"
    elif choice == 2:
        events.insert(i, e)
        what = f"event {i} twice"
    elif choice == 3:                     # console input changed
        data = e.data or b"x"
        data = rng.choice([data[:-1], data + b"\n", bytes([data[0] ^ 1]) + data[1:], b"",
                           b"\x00" * rng.randint(1, 200), b"x" * 5000, b"\x01c"])
        events[i] = Event(e.position, CONSOLE if e.kind != ENTROPY else ENTROPY, data, 0)
        what = f"event {i} input {data[:16]!r}"
    elif choice == 4:
        value = rng.choice([0, 1, 2 ** 32, 2 ** 63, 2 ** 64 - 1, 10 ** 9])
        events.insert(i, Event(e.position, SKIP, b"", value))
        what = f"skip of {value} at {e.position}"
    elif choice == 5:
        sids = [k for k, _ in b.sections[b"SNAP"]] + [hashlib.sha256(b"none").digest()]
        sid = rng.choice(sids)
        events.insert(i, Event(e.position, LOAD, sid, 0))
        m = trace_json(b)
        if rng.random() < 0.7 and sid.hex() not in m["loads"]:
            m["loads"].append(sid.hex())
            set_trace_json(b, m)
        what = f"load of {sid.hex()[:12]} at {e.position}"
    elif choice == 6:
        value = rng.choice([0, 1, e.value + 1, max(e.value - 1, 0), 2 ** 63])
        events.insert(i, Event(e.position, KEYFRAME, b"", value)) if rng.random() < 0.5 else \
            events.__setitem__(i, Event(e.position, KEYFRAME, b"", value))
        what = f"keyframe event {value} at {e.position}"
    elif choice == 7:
        digests = [j for j, x in enumerate(events) if x.kind == DIGEST]
        j = rng.choice(digests) if digests else i
        d = bytearray(events[j].data or bytes(280))
        d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        events[j] = Event(events[j].position, DIGEST, bytes(d), 0)
        what = f"digest {j} changed"
    elif choice == 8:
        events.insert(i, Event(e.position, ENTROPY, bytes(rng.randint(1, 64)), 0))
        what = f"entropy at {e.position}"
    else:
        rng.shuffle(events)
        events.sort(key=lambda x: x.position)
        what = "events at a position reordered"
    set_log(b, events, rng, fix_counts=rng.random() < 0.85)
    return what


def _snapshot_fields(value: bytes) -> dict:
    """Offsets in a snapshot manifest (chrono.store.manifest's layout)."""
    config_len = struct.unpack_from("<I", value, 128)[0]
    ram = 132 + config_len
    return {"flags": (6, "<H"), "parent": (8, "32s"), "steps": (40, "<Q"), "vclock": (48, "<Q"),
            "created": (56, "<Q"), "state": (64, "32s"), "dtb": (96, "32s"),
            "config_len": (128, "<I"), "ram npages": (ram, "<Q"), "ram nleaves": (ram + 8, "<I")}


@_structural
def s_snapshot(b, rng):
    """A snapshot manifest changed; its id recomputed, and every reference to it."""
    if not b.sections[b"SNAP"]:
        raise _Skip
    i = rng.randrange(len(b.sections[b"SNAP"]))
    sid, value = b.sections[b"SNAP"][i]
    fields = _snapshot_fields(value)
    choice = rng.randrange(7)
    v = bytearray(value)
    if choice <= 1:
        name = rng.choice(list(fields))
        at, fmt = fields[name]
        if fmt == "32s":
            keys = [k for k, _ in b.sections[b"BLOB"]] + [ZERO, bytes(range(32)),
                                                         sid, b.sections[b"SNAP"][0][0]]
            struct.pack_into(fmt, v, at, rng.choice(keys))
        else:
            width = struct.calcsize(fmt)
            struct.pack_into(fmt, v, at, edge_ints(rng, struct.unpack_from(fmt, v, at)[0]) % (1 << 8 * width))
        what = f"snapshot {i} {name}"
        if name in ("steps", "vclock") and rng.random() < 0.7:       # and the keyframe agrees
            new = struct.unpack_from("<Q", v, at)[0]
            m = trace_json(b)
            for k in m["keyframes"]:
                if k["snapshot"] == sid.hex():
                    k[name] = new
            set_trace_json(b, m)
    elif choice == 2:                    # the configuration
        from chrono.store.manifest import Manifest
        man = Manifest.decode(value)
        cfg = copy.deepcopy(man.config)
        key = _mutate_config(cfg, rng)
        text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        v = bytearray(value[:128] + struct.pack("<I", len(text)) + text + value[132 + fields_len(value):])
        what = f"snapshot {i} config {key}"
    elif choice == 3:                    # a leaf key in its RAM table
        at = fields["ram nleaves"][0] + 4
        n = struct.unpack_from("<I", v, at - 4)[0]
        j = rng.randrange(max(n, 1))
        keys = [k for k, _ in b.sections[b"BLOB"]] + [ZERO, hashlib.sha256(b"absent").digest()]
        v[at + 32 * j:at + 32 * j + 32] = rng.choice(keys)
        what = f"snapshot {i} ram leaf {j}"
    elif choice == 4:                    # RAM size and table grown or shrunk together
        from chrono.store.manifest import Manifest
        from chrono.store.pagetable import PageTable
        man = Manifest.decode(value)
        pages = rng.choice([1, 511, 512, 513, man.ram.npages // 2, man.ram.npages + 1,
                            man.ram.npages * 2, 0])
        leaves = list(man.ram.leaves[:-(-pages // 512)])
        leaves += [ZERO] * (-(-pages // 512) - len(leaves))
        cfg = dict(man.config, ram_size=pages * 4096)
        man = copy.copy(man)
        object.__setattr__(man, "ram", PageTable(pages, leaves))
        object.__setattr__(man, "config", cfg)
        v = bytearray(man.encode())
        what = f"snapshot {i} ram of {pages} pages"
    elif choice == 5:
        v += rng.choice([b"\x00", b"\x00\x00", bytes(40)])
        what = f"snapshot {i} trailing bytes"
    else:                                # disks added or removed
        from chrono.store.manifest import DiskTable, Manifest
        from chrono.store.pagetable import PageTable
        man = Manifest.decode(value)
        size = rng.choice([0, 1, 4096, 4097, 2 ** 21, 2 ** 40])
        disks = rng.choice([(), man.disks * 2, (DiskTable(size, PageTable.empty(-(-size // 4096))),)])
        if size < 2 ** 30:
            man = copy.copy(man)
            object.__setattr__(man, "disks", tuple(disks))
            v = bytearray(man.encode())
        what = f"snapshot {i} disks"
    replace_snapshot(b, i, bytes(v))
    sort_bundle(b)
    return what


@_structural
def s_machine(b, rng):
    """The machine configuration changed alike in the trace manifest and in every
    snapshot (as a recording of another machine would have it)."""
    from chrono.store.manifest import Manifest
    m = trace_json(b)
    if m is None or not isinstance(m.get("config"), dict):
        raise _Skip
    cfg = copy.deepcopy(m["config"])
    key = _mutate_config(cfg, rng)
    m["config"] = cfg
    set_trace_json(b, m)
    for i in range(len(b.sections[b"SNAP"])):
        value = b.sections[b"SNAP"][i][1]
        try:
            Manifest.decode(value)
        except ValueError:
            continue
        text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=True).encode()
        replace_snapshot(b, i, value[:128] + struct.pack("<I", len(text)) + text
                         + value[132 + fields_len(value):])
    sort_bundle(b)
    return f"machine {key} = {str(cfg.get(key))[:40]}"


@_structural
def s_state(b, rng):
    """A CPU/device state changed (its bytes, fields set to edge values), re-keyed up the tree."""
    from chrono.store.manifest import Manifest
    states = set()
    for _, v in b.sections[b"SNAP"]:
        try:
            states.add(Manifest.decode(v).state)
        except ValueError:
            pass
    found = [i for i, (k, _) in enumerate(b.sections[b"BLOB"]) if k in states]
    if not found:
        raise _Skip
    i = rng.choice(found)
    c = bytearray(blob_content(b.sections[b"BLOB"][i][1]))
    spots = []
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        width = rng.choice([1, 2, 4, 8])
        at = rng.randrange(40, len(c) - width) if rng.random() < 0.9 else rng.randrange(0, 40)
        at -= at % width
        value = rng.choice([0, 1, 2 ** (8 * width) - 1, 2 ** (8 * width - 1), rng.getrandbits(8 * width),
                            int.from_bytes(c[at:at + width], "little") + rng.choice([-1, 1, 16, 64, 256])])
        c[at:at + width] = (value % (1 << 8 * width)).to_bytes(width, "little")
        spots.append(at)
    replace_blob(b, i, bytes(c))
    sort_bundle(b)
    return f"state {i} changed at {spots[:6]}"


def fields_len(value: bytes) -> int:
    return struct.unpack_from("<I", value, 128)[0]


@_structural
def s_blob(b, rng):
    """A blob's content changed (state, device tree, leaf or page), re-keyed up the tree."""
    if not b.sections[b"BLOB"]:
        raise _Skip
    i = rng.randrange(len(b.sections[b"BLOB"]))
    content = blob_content(b.sections[b"BLOB"][i][1])
    if content is None:
        raise _Skip
    c = bytearray(content)
    choice = rng.randrange(6)
    if choice == 0 and c:
        for _ in range(rng.randint(1, 8)):
            c[rng.randrange(len(c))] ^= 1 << rng.randrange(8)
        what = "bits flipped"
    elif choice == 1 and c:
        at = rng.randrange(0, max(1, len(c) - 8), 4)
        c[at:at + 8] = struct.pack("<Q", edge_ints(rng) % (1 << 64))
        what = f"8 bytes at {at} set"
    elif choice == 2 and len(c) == 16384:          # a leaf row pointed elsewhere
        j = rng.randrange(512)
        keys = [k for k, _ in b.sections[b"BLOB"]] + [ZERO, hashlib.sha256(b"absent").digest()]
        c[32 * j:32 * j + 32] = rng.choice(keys)
        what = f"leaf row {j}"
    elif choice == 3:
        c = c[:rng.randrange(len(c) + 1)] if rng.random() < 0.5 else c + bytes(rng.choice([1, 8, 4096]))
        what = f"resized to {len(c)}"
    elif choice == 4 and len(c) > 8:               # a CPU/device state's header
        at = rng.choice([0, 4, 8, 12, 16, 20, 24, 28, 32, 36])
        c[at:at + 4] = struct.pack("<I", edge_ints(rng) % (1 << 32))
        what = f"u32 at {at}"
    else:
        c = bytearray(len(c))
        what = "zeroed"
    replace_blob(b, i, bytes(c))
    sort_bundle(b)
    return f"blob {i} {what}"


@_structural
def s_codec(b, rng):
    """A blob or chunk re-encoded: the same content (import may accept it), or a
    frame that declares another size or none."""
    import zstandard
    if rng.random() < 0.3 and b.sections[b"CHNK"]:
        i = rng.randrange(len(b.sections[b"CHNK"]))
        k, v = b.sections[b"CHNK"][i]
        content = chunk_content(v)
        if content is None:
            raise _Skip
        choice = rng.randrange(3)
        if choice == 0:
            v = pack_chunk(content, level=rng.choice([1, 19]))
        elif choice == 1:
            frame = zstandard.ZstdCompressor(write_content_size=False).compress(content)
            v = v[:33] + frame
        else:
            v = v[:33] + zstandard.ZstdCompressor().compress(content) * 2
        b.sections[b"CHNK"][i] = (k, v)
        return f"chunk {i} re-encoded ({choice})"
    i = rng.randrange(len(b.sections[b"BLOB"]))
    k, v = b.sections[b"BLOB"][i]
    content = blob_content(v)
    if content is None:
        raise _Skip
    choice = rng.randrange(7)
    if choice == 0:
        v = b"\x00" + content
    elif choice == 1:
        v = b"\x01" + zstandard.ZstdCompressor(level=19, write_content_size=True).compress(content)
    elif choice == 2:
        v = b"\x01" + zstandard.ZstdCompressor(write_content_size=False).compress(content)
    elif choice == 3:
        v = b"\x01" + zstandard.ZstdCompressor(write_checksum=True).compress(content)
    elif choice == 4:
        v = b"\x01" + zstandard.ZstdCompressor().compress(content) + b"\x00junk"
    elif choice == 5:
        half = len(content) // 2
        cctx = zstandard.ZstdCompressor(write_content_size=True)
        v = b"\x01" + cctx.compress(content[:half]) + cctx.compress(content[half:])
    else:
        v = bytes([rng.choice([2, 0xFF, 0x80])]) + v[1:]
    b.sections[b"BLOB"][i] = (k, v)
    return f"blob {i} re-encoded ({choice})"


MUTATIONS = {
    "flip": (6, m_flip), "bytes": (4, m_bytes), "truncate": (5, m_truncate),
    "insert": (3, m_insert), "delete": (3, m_delete), "field": (6, m_field),
    "sections": (2, m_sections), "records": (5, s_records), "header": (3, s_header),
    "trace": (12, s_trace), "trace-text": (3, s_trace_raw), "events": (12, s_events),
    "snapshot": (10, s_snapshot), "machine": (6, s_machine), "state": (10, s_state), "blob": (10, s_blob), "codec": (4, s_codec),
}


# ==== meaning: is an accepted mutant the same recording as its source? =================

def meaning(data: bytes):
    """What a bundle means, encodings aside: the trace manifest (without its id),
    the events, the snapshot manifests and the blob keys (content hashes)."""
    b, _ = parse(data)
    m = trace_json(b) or {}
    m.pop("id", None)
    events = log_events(b)
    return (json.dumps(m, sort_keys=True), [(e.position, e.kind, e.data, e.value) for e in events or []],
            sorted(v for _, v in b.sections[b"SNAP"]), sorted(k for k, _ in b.sections[b"BLOB"]))


# ==== setup ==============================================================================

def _cli(*args, input=None, timeout=300, env=None):
    return subprocess.run(CHRONO + [str(a) for a in args], input=input, capture_output=True,
                          timeout=timeout, env=env)


def _must(proc, what):
    if proc.returncode != 0:
        raise SystemExit(f"setup: {what} failed: {proc.stderr.decode(errors='replace')}")


def setup(work: Path) -> dict:
    """Record, export and build the base stores (the real CLI, as a user would)."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    _must(_cli("record", "--name", "demo", "--keyframe-interval", 1 << 20, "--store", src,
               input=PLAIN), "record demo")
    _must(_cli("record", "--name", "tiny", "--store", src, input=LOADING), "record tiny")
    bundles = {}
    for name in ("demo", "tiny"):
        bundles[name] = work / f"{name}.chrono"
        _must(_cli("export", name, "-o", bundles[name], "--store", src), f"export {name}")
    bundles["window"] = work / "window.chrono"
    _must(_cli("export", "demo", "-o", bundles["window"], "--from", 1_500_000, "--to", 3_000_000,
               "--store", src), "export a window")
    stores = {}
    plain = work / "base-plain"
    _must(_cli("record", "--name", "other", "--store", plain, input=OTHER), "record other")
    shared = work / "base-shared"
    shutil.copytree(plain, shared)
    _must(_cli("import", bundles["demo"], "--name", "demo-copy", "--store", shared), "import")
    _must(_cli("import", bundles["tiny"], "--name", "tiny-copy", "--store", shared), "import")
    stores = {"plain": plain, "shared": shared}
    for path in stores.values():
        _must(_cli("store", "verify", "--store", path), f"verify {path}")
    return {"bundles": {k: str(v) for k, v in bundles.items()},
            "stores": {k: str(v) for k, v in stores.items()}}


def store_digest(path: Path) -> str:
    """SHA-256 over every key and value of every database of the LMDB store at `path`
    (read with lmdb directly, not through chrono)."""
    import lmdb
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=64, subdir=True)
    h = hashlib.sha256()
    try:
        with env.begin() as txn:
            names = [bytes(k) for k, _ in txn.cursor()]
        for name in [None] + names:
            try:
                db = env.open_db(name, create=False) if name else None
            except lmdb.Error:
                continue
            with env.begin(db=db) as txn:
                h.update(b"db:" + (name or b""))
                for k, v in txn.cursor():
                    h.update(struct.pack("<II", len(k), len(v)) + bytes(k) + bytes(v))
    finally:
        env.close()
    return h.hexdigest()


# ==== one case ===========================================================================

def make_case(setup_info: dict, seed: int, sources: dict) -> tuple[str, str, str, bytes, dict]:
    """(source, store, what, mutant, options) for case `seed`."""
    rng = random.Random(seed)
    source = rng.choice(sorted(setup_info["bundles"]))
    base = rng.choice(sorted(setup_info["stores"]))
    what, mutant, options = mutate(sources[source], rng)
    return source, base, what, mutant, options


def run_case(setup_info: dict, seed: int, sources: dict, digests: dict, scratch: Path,
             cli: bool = False) -> dict:
    """Make and try case `seed`; returns {"class", "detail", ...}."""
    from chrono.errors import ChronoError, DivergenceError
    from chrono.store.store import Store
    from chrono.store.verify import verify
    from chrono.replay.bundle import import_bundle
    from chrono.replay.replay import Replayer
    from chrono.replay.verify import verify_traces

    source, base, what, mutant, options = make_case(setup_info, seed, sources)
    out = {"seed": seed, "source": source, "store": base, "what": what, "options": repr(options)}
    store_path = scratch / "store"
    shutil.rmtree(store_path, ignore_errors=True)
    shutil.copytree(setup_info["stores"][base], store_path)
    path = scratch / "mutant.chrono"
    path.write_bytes(mutant)
    try:
        with Store(store_path) as store:
            try:
                m = import_bundle(store, path, **options)
            except ChronoError as e:
                out.update(refusal=e.message, exit=e.exit_code)
                m = None
        if m is None:
            if store_digest(store_path) != digests[base]:
                out.update({"class": "partial import", "detail": out["refusal"]})
            elif "\n" in out["refusal"] or (out["exit"] == 7 and str(path) not in out["refusal"]):
                out.update({"class": "bad refusal", "detail": out["refusal"]})
            else:
                out["class"] = "refused"
            if cli and "\x00" not in str(options.get("name")):     # argv cannot hold NUL
                _cli_check(out, path, store_path, None)
            return out
        same = meaning(mutant) == meaning(sources[source])
        out["identical"] = same
        with Store(store_path) as store:
            replayer = None
            try:
                replayer = Replayer(store, m.name)
                replayer.replay()
                out["replay"] = "matched"
            except DivergenceError as e:
                out["replay"] = e.message
            except ChronoError as e:
                out["replay"] = f"error {type(e).__name__}: {e.message}"
            finally:
                if replayer is not None:
                    replayer.close()
            report = verify(store)
            problems = [str(p) for p in report.problems]
            problems += [f"recording {t.name}: {p}" for t in verify_traces(store) for p in t.problems]
        if problems:
            out.update({"class": "accepted-but-broken", "detail": f"verify: {problems[0]}"})
        elif out["replay"].startswith("error"):
            out.update({"class": "accepted-but-broken", "detail": out["replay"]})
        elif out["replay"] != "matched" and same:
            out.update({"class": "accepted-but-broken", "detail": f"identical, yet {out['replay']}"})
        else:
            out["class"] = "accepted" if same else (
                "accepted, diverged" if out["replay"] != "matched" else "accepted, replayed")
        if cli and "\x00" not in str(options.get("name")):
            shutil.rmtree(store_path)
            shutil.copytree(setup_info["stores"][base], store_path)
            _cli_check(out, path, store_path, m.name)
    except Exception as e:              # noqa: BLE001 -- what the fuzzer is for
        out.update({"class": "traceback", "detail": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=-6)})
    return out


def _cli_check(out: dict, path: Path, store_path: Path, accepted_name: str | None) -> None:
    """The same case through the real CLI: one line, same exit code, no traceback, no crash."""
    opts = ["--name", out["options"] and eval(out["options"]).get("name")] \
        if "name" in out["options"] else []     # noqa: S307 -- our own repr of a dict of str
    runs = [["import", path, *opts, "--store", store_path]]
    if accepted_name is not None:
        runs += [["replay", accepted_name, "-q", "--store", store_path],
                 ["store", "verify", "--store", store_path]]
    for args in runs:
        try:
            proc = _cli(*args, timeout=120)
        except subprocess.TimeoutExpired:
            out.update({"class": "hang", "detail": f"`chrono {args[0]}` did not finish in 120 s"})
            return
        err = proc.stderr.decode(errors="replace")
        if proc.returncode < 0 or proc.returncode >= 128:
            out.update({"class": "crash", "detail": f"`chrono {args[0]}` exit {proc.returncode}: {err[-300:]}"})
            return
        if "Traceback" in err:
            out.update({"class": "traceback", "detail": f"`chrono {args[0]}`: {err[-500:]}"})
            return
        if args[0] == "import" and accepted_name is None:
            lines = err.strip().splitlines()
            if proc.returncode != out.get("exit") or len(lines) != 1 or not lines[0].startswith("chrono: error: "):
                out.update({"class": "bad refusal", "detail": f"CLI exit {proc.returncode}: {err[:300]}"})
                return
        elif args[0] == "replay" and proc.returncode not in (0, 9):
            out.update({"class": "accepted-but-broken", "detail": f"CLI replay exit {proc.returncode}: {err[:300]}"})
            return
        elif args[0] != "replay" and proc.returncode != 0:
            out.update({"class": "accepted-but-broken", "detail": f"CLI {args[0]} exit {proc.returncode}: {err[:300]}"})
            return


# ==== workers ============================================================================

def worker_main(setup_file: str) -> None:
    """Read case seeds (one per line) on stdin, answer one JSON line each on fd 3."""
    answer = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    info = json.loads(Path(setup_file).read_text())
    sources = {k: Path(v).read_bytes() for k, v in info["bundles"].items()}
    digests = {k: store_digest(Path(v)) for k, v in info["stores"].items()}
    with tempfile.TemporaryDirectory(prefix="bundle-fuzz-w-") as scratch:
        for line in sys.stdin:
            seed, cli = json.loads(line)
            result = run_case(info, seed, sources, digests, Path(scratch), cli)
            answer.write(json.dumps(result) + "\n")
            answer.flush()


class Worker:
    def __init__(self, setup_file: Path):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(setup_file)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self.seed = None
        self.started = 0.0

    def give(self, seed: int, cli: bool) -> None:
        self.seed, self.started = seed, time.monotonic()
        self.proc.stdin.write(json.dumps([seed, cli]) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()


def case_seed(seed: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:6], "big")


def fuzz(seed: int, count: int, time_limit: float, workers: int = 1, case_timeout: float = 60,
         cli_every: int = 0, keep: Path | None = None, seeds: list[int] | None = None,
         work: Path | None = None, echo=print) -> dict:
    """Run the fuzzer; returns {"counts": Counter, "failures": [results], "cases": n, "seconds": t}."""
    started = time.monotonic()
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bundle-fuzz-")
        work = Path(tmp.name)
    setup_file = work / "setup.json"
    if not setup_file.exists():
        setup_file.write_text(json.dumps(setup(work)))
    info = json.loads(setup_file.read_text())
    sources = {k: Path(v).read_bytes() for k, v in info["bundles"].items()}
    todo = list(seeds) if seeds is not None else [case_seed(seed, i) for i in range(count)]
    todo.reverse()
    counts, tried, failures = Counter(), Counter(), []
    pool = [Worker(setup_file) for _ in range(max(1, workers))]
    idle = list(pool)
    busy = {}
    done = 0

    def record(result):
        nonlocal done
        done += 1
        counts[result["class"]] += 1
        tried[str(result.get("what", "?")).split(":")[0]] += 1
        if result["class"] in FAILURES:
            failures.append(result)
            echo(f"FAIL {result['class']}: seed {result['seed']} ({result.get('source')}, "
                 f"{result.get('store')}, {result.get('what')}): {result.get('detail', '')[:300]}")
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                _, _, _, mutant, _ = make_case(info, result["seed"], sources)
                (keep / f"{result['seed']}.chrono").write_bytes(mutant)

    try:
        while todo or busy:
            out_of_time = time.monotonic() - started > time_limit
            while idle and todo and not out_of_time:
                w = idle.pop()
                s = todo.pop()
                w.give(s, bool(cli_every) and (done + len(busy)) % cli_every == 0)
                busy[w.proc.stdout.fileno()] = w
            if not busy:
                break
            ready, _, _ = select.select(list(busy), [], [], 1.0)
            for fd in ready:
                w = busy.pop(fd)
                line = w.proc.stdout.readline()
                if line:
                    record(json.loads(line))
                    idle.append(w)
                    continue
                w.proc.wait()
                _, _, what, _, _ = make_case(info, w.seed, sources)
                record({"seed": w.seed, "class": "crash", "what": what,
                        "detail": f"worker exit {w.proc.returncode}"})
                pool.remove(w)
                w = Worker(setup_file)
                pool.append(w)
                idle.append(w)
            now = time.monotonic()
            for fd, w in list(busy.items()):
                if now - w.started > case_timeout:
                    busy.pop(fd)
                    w.kill()
                    _, _, what, _, _ = make_case(info, w.seed, sources)
                    record({"seed": w.seed, "class": "hang", "what": what,
                            "detail": f"no answer in {case_timeout} s"})
                    pool.remove(w)
                    w = Worker(setup_file)
                    pool.append(w)
                    idle.append(w)
            if done and done % 500 == 0 and ready:
                echo(f"... {done} cases, {time.monotonic() - started:.0f} s: {dict(counts)}")
    finally:
        for w in pool:
            w.kill()
        if tmp is not None:
            tmp.cleanup()
    return {"counts": counts, "tried": tried, "failures": failures, "cases": done,
            "seconds": time.monotonic() - started}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=600, help="seconds (default 600)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--case-timeout", type=float, default=60)
    ap.add_argument("--cli-every", type=int, default=0, metavar="N",
                    help="run every Nth case through the real CLI too")
    ap.add_argument("--keep", type=Path, metavar="DIR", help="write failing mutants here")
    ap.add_argument("--work", type=Path, metavar="DIR",
                    help="keep the recordings and base stores here (reused if present)")
    ap.add_argument("--case", type=int, action="append", metavar="SEED", help="run only these cases")
    ap.add_argument("--worker", metavar="SETUP", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    r = fuzz(args.seed, args.count, args.time_limit, args.workers, args.case_timeout,
             args.cli_every, args.keep, args.case, args.work)
    failed = sum(r["counts"][c] for c in FAILURES)
    print(f"bundle_mutate: seed {args.seed}: {r['cases']} mutants in {r['seconds']:.0f} s: "
          + ", ".join(f"{n} {c}" for c, n in sorted(r["counts"].items())) + f"; {failed} failures")
    print("mutations tried: " + ", ".join(f"{k} {n}" for k, n in sorted(r["tried"].items())))
    if r["failures"]:
        print("failing seeds: " + " ".join(str(f["seed"]) for f in r["failures"]))
    return 1 if failed else 0


if __name__ == "__main__":
    # The chrono under test is the one Python imports (the installed one, or
    # a checkout named by PYTHONPATH), never the source tree beside this file
    # by default: after `pip install .` that has no built core.
    sys.exit(main())
