"""Replay: re-execute a recording from its first keyframe and prove it exact.

The replayer restores the first keyframe into a fresh machine, then runs
from event to event as fast as the core goes, handing the guest each logged
input at its position.  It checks what the recording kept along the way:

- a light digest (pc, x registers, hash of the CPU/device state) every
  digest interval: a divergence is narrowed to one interval;
- each keyframe in full: CPU/device state, every RAM page and disk block
  that could differ (hashed and compared with the keyframe's page tables);
- the console output: the same bytes (length and SHA-256) as recorded;
- every network frame the guest sends: the same length and hash, sent by the
  instruction at the same position, as the recording logged (checked as they
  come, and at each digest and keyframe that none is missing or extra).

Network frames the guest receives come from the log: a replay never opens a
network.

The first check that fails raises DivergenceError naming the last position
that matched, the first that did not, and what differs.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from collections import deque

from chrono.core.machine import Received, Stop
from chrono.errors import DivergenceError, StoreCorruptError, UsageError
from chrono.store.capture import guest_from_snapshot
from chrono.store.store import Store
from chrono.store.traces import TraceManifest, read_trace
from chrono.replay.events import (CONSOLE, DIGEST, ENTROPY, KEYFRAME, LOAD, NET_RX, NET_TX, SKIP,
                                 Event, EventFormatError, chunk_base, decode_events,
                                 digest_differences, light_digest, tx_length, tx_record,
                                 unpack_chunk)

# Stops a replay runs on through: an entropy request or a network exchange is
# answered by the log.
RUNNING_STOPS = (Stop.BUDGET, Stop.OUTPUT, Stop.INPUT, Stop.ENTROPY, Stop.NET)


@dataclass
class ReplayReport:
    name: str
    start: int                  # first position replayed
    end: int                    # position reached
    keyframes: int = 0          # verified in full
    digests: int = 0            # light digests verified
    inputs: int = 0             # events delivered
    output_bytes: int = 0
    output_matches: bool | None = None   # None: stopped early (--to), not compared
    output_sha256: str = ""              # of the console output replayed
    seconds: float = 0.0
    snapshot: str | None = None          # --to: the name of the snapshot left there
    snapshot_id: str | None = None       # --to: its id
    complete: bool = True                # False: the recording was cut short (to its last keyframe)

    @property
    def instructions(self) -> int:
        return self.end - self.start


def trace_events(store: Store, manifest: TraceManifest, start: int | None = None) -> Iterator[Event]:
    """The recording's events in order (from the chunk holding `start` on, when given)."""
    prefix = manifest.id_bytes
    begin = None if start is None else prefix + start.to_bytes(8, "big") + bytes(4)
    with store.reader() as r:
        keys = [key for key, _ in r.chunks(prefix, begin)]
    for key in keys:
        with store.reader() as r:
            value = r.get_chunk(key)
        base, index = chunk_base(key)
        try:
            events = decode_events(unpack_chunk(value), base)
        except EventFormatError as e:
            raise StoreCorruptError(f"recording {manifest.name!r} in store {store.path} is damaged: "
                                    f"event chunk {index} ({e}); run `chrono trace verify`") from None
        for event in events:
            if start is None or event.position >= start:
                yield event


class Replayer:
    """Replays recording `name` from `store`; console output goes to `output`.

    `start` is the keyframe it starts from (0: the beginning; a later one
    replays a window, as `chrono export --from` does).
    """

    def __init__(self, store: Store, name: str, output: Callable[[bytes], None] = lambda b: None,
                 start: int = 0):
        self.store = store
        with store.reader() as r:
            self.manifest = read_trace(r, name)
        self.name = name
        self.output = output
        if not 0 <= start < len(self.manifest.keyframes):
            raise UsageError(f"recording {name!r} has no keyframe {start} "
                             f"(it has {len(self.manifest.keyframes)})")
        self.start = start
        first = self.manifest.keyframes[start]
        self.guest, self.snapshots = guest_from_snapshot(store, first.snapshot)
        self.machine = self.guest.machine
        self.offset = self.machine.steps - first.position
        self.verified_at = first.position       # last position known to match
        self.verify_keyframes = True            # off for passes that use the dirty maps themselves
        self.output_steps = None                # (bytes, positions of their instructions) -> None
        self.output_hash = hashlib.sha256()     # all output replayed
        self.window = hashlib.sha256()          # ... since the last digest or keyframe
        self.frames_logged: deque[tuple[int, bytes]] = deque()  # NET_TX: (position, record)
        self.frames_sent: deque[tuple[int, bytes]] = deque()    # ... what the guest sent
        self.report = ReplayReport(name, first.position, first.position)

    @property
    def position(self) -> int:
        return self.machine.steps - self.offset

    def close(self) -> None:
        self.snapshots.close()

    # ---- divergence ------------------------------------------------------------------
    def _diverged(self, what: str) -> DivergenceError:
        return DivergenceError(
            f"replay of {self.name!r} diverged: it matched the recording up to instruction "
            f"{self.verified_at}, and at instruction {self.position} {what}")

    # ---- running -----------------------------------------------------------------------
    def _drain(self) -> None:
        if self.output_steps is not None:
            out, steps = self.machine.console_read_steps()
            if out:
                self.output_steps(out, steps.astype("int64") - self.offset)
        else:
            out = self.machine.console_read()
        if out:
            self.output_hash.update(out)
            self.window.update(out)
            self.report.output_bytes += len(out)
            self.output(out)
        self.machine.console_returned()     # given back bytes: the log has their re-delivery
        sent = self.machine.net_sent()
        if sent:
            self.frames_sent.extend((steps - self.offset, tx_record(frame)) for frame, steps in sent)
            self._match_frames()

    # ---- frames the guest sends --------------------------------------------------------
    def _match_frames(self) -> None:
        """Compare the frames sent with those logged, as far as both go."""
        while self.frames_logged and self.frames_sent:
            (logged_at, logged), (sent_at, sent) = self.frames_logged[0], self.frames_sent[0]
            if (logged_at, logged) != (sent_at, sent):
                raise self._diverged(
                    f"the guest sent a network frame of {tx_length(sent)} bytes at instruction "
                    f"{sent_at} where the recording saw it send one of {tx_length(logged)} bytes "
                    f"at instruction {logged_at}"
                    + (" (same length, other content)" if logged_at == sent_at
                       and tx_length(logged) == tx_length(sent) else ""))
            self.frames_logged.popleft()
            self.frames_sent.popleft()

    def _check_frames(self) -> None:
        """At a digest, keyframe or the end: every frame sent before it matched."""
        self._match_frames()
        if self.frames_logged:
            at, record = self.frames_logged[0]
            raise self._diverged(f"the guest has not sent the network frame of "
                                 f"{tx_length(record)} bytes the recording saw it send at "
                                 f"instruction {at}")
        if self.frames_sent:
            at, record = self.frames_sent[0]
            raise self._diverged(f"the guest sent a network frame of {tx_length(record)} bytes "
                                 f"at instruction {at} that the recording did not see")

    def forget_frames(self) -> None:
        """After a restore (time travel): frames before it are not compared."""
        self.frames_logged.clear()
        self.frames_sent.clear()

    def run_to(self, target: int) -> None:
        """Run until position `target` (the recording says the guest gets there)."""
        m = self.machine
        while self.position < target:
            result = m.run(target - self.position)
            self._drain()
            if result.reason in RUNNING_STOPS or self.position >= target:
                continue
            if result.reason == Stop.IDLE:
                if result.executed == 0:
                    raise self._diverged(
                        f"the guest waits for an interrupt (pc {m.pc:#x}) while the recording "
                        f"ran on to instruction {target}")
                continue
            raise self._diverged(f"the guest stopped ({result.reason.name.lower()}, pc "
                                 f"{m.pc:#x}) while the recording ran on to instruction {target}")

    def apply(self, event: Event) -> None:
        m = self.machine
        kind = event.kind
        if kind == CONSOLE:
            taken = m.console_write(event.data)
            if taken != len(event.data):
                raise self._diverged(f"the guest took {taken} of {len(event.data)} console bytes")
            self.report.inputs += 1
        elif kind == ENTROPY:
            m.entropy_write(event.data)         # logged as offered (see the recorder)
            self.report.inputs += 1
        elif kind == NET_RX:
            if m.net_receive(event.data) == Received.NO_BUFFER:
                raise self._diverged(f"the guest has no receive buffer for a network frame of "
                                     f"{len(event.data)} bytes the recording delivered here")
            self.report.inputs += 1
        elif kind == NET_TX:
            self.frames_logged.append((event.position, event.data))
            self._match_frames()
        elif kind == SKIP:
            if m.vclock + event.value >= 1 << 64:
                raise self._diverged(f"the log skips the virtual clock by {event.value}, past "
                                     f"what it can count (it is at {m.vclock})")
            m.skip_to(m.vclock + event.value)
            self.report.inputs += 1
        elif kind == LOAD:
            position = self.position
            self.snapshots.load(event.data.hex())
            self.offset = m.steps - position
            self.report.inputs += 1
        elif kind == DIGEST:
            self._check_frames()
            differences = digest_differences(event.data, light_digest(m, self.window))
            if differences:
                raise self._diverged("; ".join(differences))
            self.window = hashlib.sha256()
            self.verified_at = self.position
            self.report.digests += 1
        elif kind == KEYFRAME:
            self._check_frames()
            self._check_keyframe(event.value)
            self.window = hashlib.sha256()

    def _check_keyframe(self, index: int) -> None:
        if not self.verify_keyframes:
            return
        keyframes = self.manifest.keyframes
        if index >= len(keyframes):
            if not self.manifest.complete and index == len(keyframes):
                return      # taken as the recording was cut short: never committed
            raise StoreCorruptError(f"recording {self.name!r} logs keyframe {index}, but its "
                                    f"manifest lists {len(keyframes)}; run `chrono trace verify`")
        keyframe = keyframes[index]
        if index == 0:
            return          # where we started from
        m = self.machine
        target = self.store.get_snapshot(keyframe.snapshot)
        differences = self.snapshots.differences(target)
        what = []
        if m.vclock != keyframe.vclock:
            what.append(f"virtual time {keyframe.vclock / 1e9:.9f} s recorded, "
                        f"{m.vclock / 1e9:.9f} s replayed")
        if differences.state:
            what.append("CPU/device state differs")
        if differences.ram:
            what.append(f"RAM pages differ ({_pages(differences.ram)})")
        if differences.disk:
            what.append(f"disk blocks differ ({_pages(differences.disk)})")
        if what:
            raise self._diverged(f"keyframe {index}: " + "; ".join(what))
        self.snapshots.adopt(target)
        self.verified_at = self.position
        self.report.keyframes += 1

    def events(self) -> Iterator[Event]:
        """The events to replay: those after the start keyframe's own event (the
        ones before it at its position are already in its snapshot)."""
        first = self.manifest.keyframes[self.start]
        started = False
        for event in trace_events(self.store, self.manifest, first.position):
            if started:
                yield event
            elif event.kind == KEYFRAME and event.value == self.start:
                started = True
            elif event.position > first.position:
                break
        if not started:
            raise StoreCorruptError(f"recording {self.name!r} in store {self.store.path} is "
                                    f"damaged: its log does not have keyframe {self.start}; "
                                    f"run `chrono trace verify`")

    def replay(self, to: int | None = None, snapshot_name: str | None = None,
               applied: Callable[[Event], None] | None = None) -> ReplayReport:
        """Replay to the end, or to position `to`, leaving a snapshot there
        (named `snapshot_name` if given).  `applied(event)` sees each event replayed."""
        manifest = self.manifest
        begin = manifest.keyframes[self.start].position
        end = manifest.end_position if manifest.complete else manifest.keyframes[-1].position
        if to is not None and not begin <= to <= end:
            raise UsageError(f"--to {to} is outside recording {self.name!r} (instructions "
                             f"{begin} to {end})")
        stop = end if to is None else to
        self.report.complete = manifest.complete
        started = time.perf_counter()
        for event in self.events():
            if event.position > stop:
                break
            if event.position == stop and to is not None and event.kind != DIGEST:
                break       # --to: the state as the guest reached it, before inputs there
            self.run_to(event.position)
            self.apply(event)
            if applied is not None:
                applied(event)
        self.run_to(stop)
        self._drain()
        if to is None:
            self._check_frames()
        self.report.end = self.position
        self.report.output_sha256 = self.output_hash.hexdigest()
        if to is None:
            self.report.output_matches = (self.output_hash.hexdigest() == manifest.output_sha256)
            if manifest.complete and not self.report.output_matches:
                raise self._diverged(
                    f"the console output differs ({self.report.output_bytes} bytes replayed, "
                    f"{manifest.output_bytes} recorded)")
        else:
            self.report.snapshot = snapshot_name
            self.report.snapshot_id = self.snapshots.save(snapshot_name)
        self.report.seconds = time.perf_counter() - started
        return self.report


def _pages(numbers: list[int], shown: int = 8) -> str:
    text = ", ".join(str(n) for n in numbers[:shown])
    return text + (f" and {len(numbers) - shown} more" if len(numbers) > shown else "")
