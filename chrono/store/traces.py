"""Recordings in the store: the trace manifest and its stored form.

A recording (trace) is a starting snapshot plus the log of every
non-deterministic input (chrono.replay.events), with keyframe snapshots along
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


class TraceFormatError(ValueError):
    """A manifest of a trace format this chrono does not read."""

    def __init__(self, format):
        super().__init__(f"trace format {format!r}")
        self.format = format


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
    inputs: dict = field(default_factory=lambda: {"console": 0, "entropy": 0, "skips": 0,
                                                  "loads": 0, "frames": 0})
    end_position: int = 0
    end_vclock: int = 0
    output_bytes: int = 0
    output_sha256: str = hashlib.sha256(b"").hexdigest()
    complete: bool = False
    outcome: str = ""
    origin: dict | None = None      # a trimmed copy: {"trace": name, "from": pos, "to": pos}
    parent: dict | None = None      # a branch gone live from a replay: {"trace": name, "position": pos}
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
            return cls._from_json(text)
        except TraceFormatError as e:
            raise StoreFormatError(f"{where} has trace format {e.format!r}; this chrono reads "
                                   f"format {TRACE_FORMAT}: use a chrono that reads it") from None
        except ValueError as e:
            raise StoreCorruptError(f"{where} is damaged (its manifest is malformed: {e}); "
                                    f"remove it with `chrono trace rm`") from None

    @classmethod
    def parse(cls, value: bytes) -> "TraceManifest":
        """Parse and check a manifest from anywhere (a bundle): ValueError saying
        what is wrong, TraceFormatError for a format this chrono does not read."""
        digest, text = value[:32], value[32:]
        if hashlib.sha256(text).digest() != digest:
            raise ValueError("it does not match its checksum")
        return cls._from_json(text)

    @classmethod
    def _from_json(cls, text: bytes) -> "TraceManifest":
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if raw.get("format") != TRACE_FORMAT:
                raise TraceFormatError(raw.get("format"))
            raw["keyframes"] = [Keyframe(**k) for k in raw["keyframes"]]
            manifest = cls(**raw)
            manifest.check()
        except TraceFormatError:
            raise
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError(str(e)) from None
        return manifest

    def check(self) -> None:
        """Types and invariants (a manifest may come from a hostile bundle)."""
        ints = (self.start_position, self.chunks, self.events, self.log_bytes, self.end_position,
                self.end_vclock, self.output_bytes, self.digest_interval,
                self.keyframe_interval, self.rtc_epoch_ns)
        if not all(_is_count(v) for v in ints):
            raise ValueError("a count or position is not an integer from 0 to 2^63 - 1")
        if not _is_hex(self.id, 2 * TRACE_ID_BYTES):
            raise ValueError("bad id")
        if not (isinstance(self.name, str) and isinstance(self.chrono_version, str)
                and isinstance(self.outcome, str) and isinstance(self.complete, bool)
                and isinstance(self.created, (int, float)) and _is_hex(self.output_sha256, 64)):
            raise ValueError("a name, version, outcome, flag, time or hash has the wrong type")
        if not isinstance(self.keyframes, list) or not isinstance(self.loads, list):
            raise ValueError("keyframes or loads are not lists")
        if self.origin is not None and not (
                isinstance(self.origin, dict) and isinstance(self.origin.get("trace"), str)
                and all(isinstance(self.origin.get(k), int) for k in ("from", "to"))):
            raise ValueError("bad origin")
        if self.parent is not None and not (
                isinstance(self.parent, dict) and isinstance(self.parent.get("trace"), str)
                and isinstance(self.parent.get("position"), int)):
            raise ValueError("bad parent")
        if not self.keyframes:
            raise ValueError("no keyframes")
        previous = self.start_position
        for k in self.keyframes:
            if not all(_is_count(v) for v in (k.position, k.steps, k.vclock)):
                raise ValueError("a keyframe position is not an integer from 0 to 2^63 - 1")
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


def _is_count(value) -> bool:
    """A position, clock or count: the core counts in 64 bits, and no run gets near 2^63."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _check_sid(sid) -> None:
    if not _is_hex(sid, 64):
        raise ValueError("bad snapshot id")


def _is_hex(text, length: int) -> bool:
    """`text` is `length` lowercase hex digits (bytes.fromhex alone allows spaces)."""
    return (isinstance(text, str) and len(text) == length
            and all(c in "0123456789abcdef" for c in text))


def read_trace(reader, name: str) -> TraceManifest:
    """The manifest of recording `name` (UnknownTraceError if there is none)."""
    value = reader.get_trace(name)
    if value is None:
        raise UnknownTraceError(f"no recording named {name!r} in store {reader.store.path} "
                                f"(`chrono trace list` shows them)")
    return TraceManifest.decode(value, f"recording {name!r} in store {reader.store.path}")


def all_traces(reader, strict: bool = False) -> list[TraceManifest]:
    """Every readable recording; damaged ones are skipped (left to `trace
    verify`), or with `strict` raise what is wrong with the first."""
    out = []
    for name, value in reader.traces():
        try:
            out.append(TraceManifest.decode(value, f"recording {name!r}"))
        except (StoreCorruptError, StoreFormatError):
            if strict:
                raise
    return out
