"""The input log of a recording: events, their byte encoding, and chunks.

An event happens at a *position*: the number of instructions the recording
had executed when it happened (0 = its start).  Positions never go back, even
when the guest's own instruction counter does (loadvm, reboot).  Several
events may share a position (a guest in WFI takes input without executing).

Kinds and payloads:

    CONSOLE   bytes put into the UART receive FIFO
    ENTROPY   bytes handed to the virtio-rng device
    SKIP      the virtual clock jumped forward by `delta` step units (idle)
    LOAD      the machine was replaced by snapshot `sid` (loadvm, reboot)
    KEYFRAME  keyframe number `index` was taken here (its snapshot is in the manifest)
    DIGEST    a light digest: pc, x1..x31, a hash of the CPU/device state and
              one of the console output since the last digest or keyframe
    NET_RX    an Ethernet frame put into the guest's next receive buffer
              (virtio-net), delivered or dropped there (offers that found no
              buffer changed nothing and are not logged)
    NET_TX    a frame the guest sent, for replay to check: its length (4 bytes)
              and the first 8 bytes of its BLAKE2b hash, at the position of the
              instruction that sent it (the frame itself went to the network)

Encoding of one event: varint(position - previous position), kind byte,
payload (varint length + bytes; varint; 32 bytes; varint; 8 + 31*8 + 16
bytes; varint length + bytes; 12 bytes).  A chunk is a run of events encoded back to back, the first one's
position relative to the chunk's base position, compressed with zstd.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import zstandard

CONSOLE, ENTROPY, SKIP, LOAD, KEYFRAME, DIGEST, NET_RX, NET_TX = 1, 2, 3, 4, 5, 6, 7, 8
KIND_NAMES = {CONSOLE: "console", ENTROPY: "entropy", SKIP: "skip", LOAD: "load",
              KEYFRAME: "keyframe", DIGEST: "digest", NET_RX: "net-rx", NET_TX: "net-tx"}
INPUT_KINDS = (CONSOLE, ENTROPY, SKIP, LOAD, NET_RX)
_BYTES_KINDS = (CONSOLE, ENTROPY, NET_RX)        # payload: varint length + bytes
_FIXED_SIZE = {LOAD: 32, NET_TX: 12}            # payload: so many bytes (DIGEST: DIGEST_SIZE)

# What a manifest counts of its inputs (TraceManifest.inputs): bytes of console
# input and entropy, idle skips, loads, frames delivered to the guest.
INPUT_COUNTS = ("console", "entropy", "skips", "loads", "frames")


def no_inputs() -> dict:
    return {k: 0 for k in INPUT_COUNTS}


def count_input(counts: dict, kind: int, data: bytes) -> None:
    """Add one event to a manifest's input counts (other kinds count nothing)."""
    if kind == CONSOLE:
        counts["console"] += len(data)
    elif kind == ENTROPY:
        counts["entropy"] += len(data)
    elif kind == SKIP:
        counts["skips"] += 1
    elif kind == LOAD:
        counts["loads"] += 1
    elif kind == NET_RX:
        counts["frames"] += 1


_TX = struct.Struct("<I8s")


def tx_record(frame: bytes) -> bytes:
    """A NET_TX payload: what replay compares a sent frame by."""
    return _TX.pack(len(frame), hashlib.blake2b(frame, digest_size=8).digest())


def tx_length(record: bytes) -> int:
    return _TX.unpack(record)[0]

_DIGEST = struct.Struct("<32Q")      # pc, x1..x31
DIGEST_SIZE = _DIGEST.size + 16      # + state hash + output hash
MAX_PAYLOAD = 1 << 20                # no single input is bigger (bounds hostile chunks)
MAX_CHUNK = 16 << 20                 # uncompressed bytes of one chunk, at most


class EventFormatError(ValueError):
    """A chunk does not decode: the caller names the chunk and the store or bundle."""


@dataclass(frozen=True)
class Event:
    position: int
    kind: int
    data: bytes = b""        # CONSOLE, ENTROPY, NET_RX, LOAD (32-byte id), DIGEST, NET_TX
    value: int = 0           # SKIP delta, KEYFRAME index

    def __str__(self) -> str:
        name = KIND_NAMES.get(self.kind, str(self.kind))
        if self.kind in (CONSOLE, ENTROPY):
            return f"{self.position}: {name} {self.data!r}"
        if self.kind == LOAD:
            return f"{self.position}: load {self.data.hex()[:12]}"
        if self.kind == DIGEST:
            return f"{self.position}: digest pc={light_pc(self.data):#x}"
        if self.kind == NET_RX:
            return f"{self.position}: net-rx {len(self.data)} bytes"
        if self.kind == NET_TX:
            return f"{self.position}: net-tx {tx_length(self.data)} bytes {self.data[4:].hex()}"
        return f"{self.position}: {name} {self.value}"


# ---- light digests -------------------------------------------------------------

def light_digest(machine, output) -> bytes:
    """pc, x1..x31, an 8-byte hash of the whole CPU/device state, and the
    first 8 bytes of `output` (a hashlib object fed the console output since
    the last digest or keyframe: replay can start at any keyframe)."""
    regs = [machine.pc] + machine.xregs()[1:]
    state = hashlib.blake2b(machine.save_state(), digest_size=8).digest()
    return _DIGEST.pack(*regs) + state + output.digest()[:8]


def light_pc(data: bytes) -> int:
    return _DIGEST.unpack_from(data)[0]


ABI_NAMES = ("zero ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 "
             "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6").split()


def digest_differences(recorded: bytes, replayed: bytes) -> list[str]:
    """What differs between two light digests, in words (empty: they are equal)."""
    a, b = _DIGEST.unpack_from(recorded), _DIGEST.unpack_from(replayed)
    out = []
    if a[0] != b[0]:
        out.append(f"pc {a[0]:#x} recorded, {b[0]:#x} replayed")
    for i in range(1, 32):
        if a[i] != b[i]:
            out.append(f"x{i} ({ABI_NAMES[i]}) {a[i]:#x} recorded, {b[i]:#x} replayed")
    state = slice(_DIGEST.size, _DIGEST.size + 8)
    if recorded[_DIGEST.size + 8:] != replayed[_DIGEST.size + 8:]:
        out.append("the console output differs")
    if not out and recorded[state] != replayed[state]:
        out.append("CPU/device state (CSRs, FPU, devices or virtual time) differs; "
                   "pc and x registers agree")
    return out


# ---- varints ---------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf):
            raise EventFormatError("ends inside a number")
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise EventFormatError("a number is longer than 64 bits")


# ---- chunks ----------------------------------------------------------------------

def encode_events(events: list[Event], base: int) -> bytes:
    out = bytearray()
    previous = base
    for e in events:
        if e.position < previous:
            raise ValueError(f"event at {e.position} comes after one at {previous}")
        out += _varint(e.position - previous)
        out.append(e.kind)
        if e.kind in _BYTES_KINDS:
            out += _varint(len(e.data)) + e.data
        elif e.kind in (SKIP, KEYFRAME):
            out += _varint(e.value)
        elif e.kind in _FIXED_SIZE or e.kind == DIGEST:
            out += e.data
        else:
            raise ValueError(f"unknown event kind {e.kind}")
        previous = e.position
    return bytes(out)


def decode_events(buf: bytes, base: int) -> list[Event]:
    events = []
    at, position = 0, base
    while at < len(buf):
        delta, at = _read_varint(buf, at)
        position += delta
        if at >= len(buf):
            raise EventFormatError("ends inside an event")
        kind = buf[at]
        at += 1
        value, data = 0, b""
        if kind in _BYTES_KINDS:
            size, at = _read_varint(buf, at)
            if size > MAX_PAYLOAD or at + size > len(buf):
                raise EventFormatError(f"an input of {size} bytes runs past the end")
            data, at = bytes(buf[at:at + size]), at + size
        elif kind in (SKIP, KEYFRAME):
            value, at = _read_varint(buf, at)
        elif kind in _FIXED_SIZE or kind == DIGEST:
            size = _FIXED_SIZE.get(kind, DIGEST_SIZE)
            if at + size > len(buf):
                raise EventFormatError("ends inside an event")
            data, at = bytes(buf[at:at + size]), at + size
        else:
            raise EventFormatError(f"unknown event kind {kind}")
        events.append(Event(position, kind, data, value))
    return events


_CHUNK_HEAD = struct.Struct("<B32s")        # codec, SHA-256 of the encoded events
CODEC_ZSTD = 1


def pack_chunk(encoded: bytes) -> bytes:
    """Stored form of a chunk: codec byte, SHA-256 of the content, zstd frame."""
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(encoded)
    return _CHUNK_HEAD.pack(CODEC_ZSTD, hashlib.sha256(encoded).digest()) + frame


def unpack_chunk(value: bytes) -> bytes:
    """The encoded events of a stored chunk, verified (EventFormatError if damaged)."""
    if len(value) < _CHUNK_HEAD.size:
        raise EventFormatError("shorter than its header")
    codec, digest = _CHUNK_HEAD.unpack_from(value)
    if codec != CODEC_ZSTD:
        raise EventFormatError(f"unknown codec {codec}")
    frame = value[_CHUNK_HEAD.size:]
    try:
        size = zstandard.frame_content_size(frame)
        if size < 0 or size > MAX_CHUNK:
            raise EventFormatError("its zstd header gives no plausible size")
        encoded = zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_CHUNK)
    except zstandard.ZstdError as e:
        raise EventFormatError(f"zstd: {e}") from None
    if hashlib.sha256(encoded).digest() != digest:
        raise EventFormatError("its content does not match its hash")
    return encoded


def chunk_key(trace_id: bytes, base: int, index: int) -> bytes:
    """Chunks sort by trace, then position: a range lookup is one cursor seek."""
    return trace_id + struct.pack(">QI", base, index)


def chunk_base(key: bytes) -> tuple[int, int]:
    """(base position, index) of a chunk key."""
    return struct.unpack(">QI", key[-12:])
