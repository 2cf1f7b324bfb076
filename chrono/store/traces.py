"""Recordings in the store: the trace manifest and its stored form.

A recording (trace) is a starting snapshot plus the log of every
non-deterministic input (chrono.trace.events), with keyframe snapshots along
the way.  Its manifest, stored under its name in the `traces` database, says
where everything is:

- `id`: 16 random bytes (hex); event chunks are keyed by it;
- `keyframes`: (position, guest steps, virtual clock, snapshot id); the first
  is where replay starts, the last (once complete) is the final state;
- `loads`: snapshots the log restores (loadvm, reboot);
- `chunks`, `events`, `log_bytes`: the input log;
- the machine configuration, the RTC epoch, versions, counts, and how it ended.

Stored value: SHA-256 of the JSON text, then the JSON text; every read checks it.
Positions count instructions from the start of the recording; a trimmed
recording keeps its original's numbering and starts at `start_position`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from chrono.errors import StoreCorruptError, StoreFormatError, UnknownTraceError

TRACE_FORMAT = 1
TRACE_ID_BYTES = 16


@dataclass
class Keyframe:
    position: int
    steps: int
    vclock: int
    snapshot: str


@dataclass
class TraceManifest:
    id: str
    name: str
    created: float
    chrono_version: str
    config: dict
    rtc_epoch_ns: int
    digest_interval: int
    keyframe_interval: int
    start_position: int = 0
    keyframes: list[Keyframe] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    chunks: int = 0
    events: int = 0
    log_bytes: int = 0
    inputs: dict = field(default_factory=lambda: {"console": 0, "entropy": 0, "skips": 0, "loads": 0})
    end_position: int = 0
    end_vclock: int = 0
    output_bytes: int = 0
    output_sha256: str = hashlib.sha256(b"").hexdigest()
    complete: bool = False
    outcome: str = ""
    origin: dict | None = None      # a trimmed copy: {"trace": name, "from": pos, "to": pos}
    format: int = TRACE_FORMAT

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.id)

    @property
    def length(self) -> int:
        """Instructions from the first keyframe to the end."""
        return self.end_position - self.start_position

    def snapshot_ids(self) -> set[str]:
        """Every snapshot the recording needs: its keyframes and what it loads."""
        return {k.snapshot for k in self.keyframes} | set(self.loads)

    def keyframe_at_or_before(self, position: int) -> Keyframe:
        best = self.keyframes[0]
        for k in self.keyframes:
            if k.position <= position:
                best = k
        return best

    def encode(self) -> bytes:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(text).digest() + text

    @classmethod
    def decode(cls, value: bytes, where: str) -> "TraceManifest":
        """Parse and check a stored manifest; `where` names it in errors."""
        digest, text = value[:32], value[32:]
        if hashlib.sha256(text).digest() != digest:
            raise StoreCorruptError(f"{where} is damaged (its manifest does not match its "
                                    f"checksum); run `chrono trace verify`")
        try:
            raw = json.loads(text)
            if raw.get("format") != TRACE_FORMAT:
                raise StoreFormatError(f"{where} has trace format {raw.get('format')!r}; this "
                                       f"chrono reads format {TRACE_FORMAT}: use a chrono that "
                                       f"reads it")
            raw["keyframes"] = [Keyframe(**k) for k in raw["keyframes"]]
            manifest = cls(**raw)
            manifest.check()
        except StoreFormatError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise StoreCorruptError(f"{where} is damaged (its manifest is malformed: {e}); "
                                    f"remove it with `chrono trace rm`") from None
        return manifest

    def check(self) -> None:
        """Types and invariants (a manifest may come from a hostile bundle)."""
        ints = (self.start_position, self.chunks, self.events, self.log_bytes, self.end_position,
                self.end_vclock, self.output_bytes, self.digest_interval,
                self.keyframe_interval, self.rtc_epoch_ns)
        if not all(isinstance(v, int) and v >= 0 for v in ints):
            raise ValueError("a count or position is not a non-negative integer")
        if not (isinstance(self.id, str) and len(self.id) == 2 * TRACE_ID_BYTES):
            raise ValueError("bad id")
        bytes.fromhex(self.id)
        if not self.keyframes:
            raise ValueError("no keyframes")
        previous = self.start_position
        for k in self.keyframes:
            if not all(isinstance(v, int) and v >= 0 for v in (k.position, k.steps, k.vclock)):
                raise ValueError("a keyframe position is not a non-negative integer")
            if k.position < previous or k.position > self.end_position:
                raise ValueError("keyframes out of order")
            _check_sid(k.snapshot)
            previous = k.position
        if self.keyframes[0].position != self.start_position:
            raise ValueError("the first keyframe is not at the start")
        for sid in self.loads:
            _check_sid(sid)
        if not isinstance(self.config, dict) or not isinstance(self.inputs, dict):
            raise ValueError("bad configuration")
        if self.digest_interval <= 0 or self.keyframe_interval <= 0:
            raise ValueError("bad intervals")


def _check_sid(sid) -> None:
    if not (isinstance(sid, str) and len(sid) == 64):
        raise ValueError("bad snapshot id")
    bytes.fromhex(sid)


def read_trace(reader, name: str) -> TraceManifest:
    """The manifest of recording `name` (UnknownTraceError if there is none)."""
    value = reader.get_trace(name)
    if value is None:
        raise UnknownTraceError(f"no recording named {name!r} in store {reader.store.path} "
                                f"(`chrono trace list` shows them)")
    return TraceManifest.decode(value, f"recording {name!r} in store {reader.store.path}")


def all_traces(reader) -> list[TraceManifest]:
    """Every readable recording (damaged ones are left to `trace verify`)."""
    out = []
    for name, value in reader.traces():
        try:
            out.append(TraceManifest.decode(value, f"recording {name!r}"))
        except (StoreCorruptError, StoreFormatError):
            continue
    return out
