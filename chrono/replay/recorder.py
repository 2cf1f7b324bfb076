"""Recording: run a guest as `chrono run` does, logging every input.

The session loop (chrono.core.session) drives a RecordingMachine instead of
the machine itself.  It is the machine with the host's five ways into the
guest intercepted — console bytes, entropy bytes, network frames, idle clock
jumps, and whole-machine replacement (loadvm, reboot) — each logged as an
event at the position where it happened.  Nothing else the host does changes
what the guest computes, so these events and the first keyframe determine the
run.  Frames the guest sends are logged too, as a length and a hash at the
position of the instruction that sent them: replay checks the guest sends the
same (it has no network to send them to).

Along the way the recorder logs a light digest every DIGEST_INTERVAL
instructions and takes a keyframe snapshot every `keyframe_interval`
instructions, at each savevm and at the end.  A keyframe commits in one write
transaction with the log up to it and the updated trace manifest, so the
store always holds a consistent, replayable prefix of the recording.
"""
from __future__ import annotations

import copy
import hashlib
import os
import time

from chrono import version
from chrono.core.machine import Machine, Received, RunResult
from chrono.store.capture import Snapshots
from chrono.store.traces import TRACE_ID_BYTES, Keyframe, TraceManifest
from chrono.replay.events import (CONSOLE, DIGEST, ENTROPY, KEYFRAME, LOAD, NET_RX, NET_TX, SKIP,
                                 Event, chunk_key, count_input, encode_events, light_digest,
                                 pack_chunk, tx_record)

DIGEST_INTERVAL = 1 << 20           # instructions between light digests
KEYFRAME_INTERVAL = 1 << 30         # default instructions between keyframes (see docs/trace.md)
# Encoded log bytes that make a chunk between keyframes.  Only memory depends on
# it (a recording cut short replays to its last keyframe): network frames log
# megabytes a second, and each flush is a durable commit.
FLUSH_BYTES = 4 << 20


class Recorder:
    """Records one guest (a chrono.core.launch.Guest) into a store under `name`."""

    def __init__(self, snapshots: Snapshots, name: str,
                 keyframe_interval: int = KEYFRAME_INTERVAL, reboot=None, parent: dict | None = None):
        """`parent` ({"trace", "position"}) names the recording this one branches
        from; the branch goes on with its positions."""
        self.snapshots = snapshots
        self.store = snapshots.store
        self.guest = snapshots.guest
        self.machine: Machine = self.guest.machine
        self.name = name
        self.keyframe_interval = keyframe_interval
        self._reboot = reboot
        start = parent["position"] if parent else 0
        self.offset = self.machine.steps - start  # guest steps at position 0
        self.pending: list[Event] = []
        self.pending_bytes = 0
        self.chunk_index = 0
        self.output = hashlib.sha256()          # all console output so far
        self.window = hashlib.sha256()          # ... since the last digest or keyframe
        self.unread: list[bytes] = []           # taken from the machine, not yet by the session
        self.unsent: list[tuple[bytes, int]] = []   # frames the guest sent, for the session
        self.manifest = TraceManifest(
            id=os.urandom(TRACE_ID_BYTES).hex(), name=name, created=time.time(),
            chrono_version=version(), config=snapshots.config,
            rtc_epoch_ns=self.machine.rtc_epoch_ns, digest_interval=DIGEST_INTERVAL,
            keyframe_interval=keyframe_interval, parent=parent, start_position=start)
        self.next_digest = start + DIGEST_INTERVAL
        self.next_keyframe = start + keyframe_interval
        self.proxy = RecordingMachine(self)

    # ---- positions and the log ---------------------------------------------------
    @property
    def position(self) -> int:
        return self.machine.steps - self.offset

    def log(self, kind: int, data: bytes = b"", value: int = 0, position: int | None = None) -> None:
        self.pending.append(Event(self.position if position is None else position, kind, data,
                                  value))
        self.pending_bytes += len(data) + 4
        self.manifest.events += 1
        count_input(self.manifest.inputs, kind, data)

    def _take_chunk(self) -> tuple[bytes, bytes] | None:
        """The pending events as a stored chunk (key, value), or None."""
        if not self.pending:
            return None
        base = self.pending[0].position
        value = pack_chunk(encode_events(self.pending, base))
        key = chunk_key(self.manifest.id_bytes, base, self.chunk_index)
        self.chunk_index += 1
        self.pending, self.pending_bytes = [], 0
        self.manifest.chunks += 1
        self.manifest.log_bytes += len(value)
        return key, value

    def _commit_point(self):
        """What a commit must write now: the chunk so far and a frozen manifest."""
        self.snapshots.wait()               # keyframes land in order
        chunk = self._take_chunk()
        self.manifest.end_position = self.position
        self.manifest.end_vclock = self.machine.vclock
        return chunk, copy.deepcopy(self.manifest)

    def _writer_for(self, chunk, frozen: TraceManifest, keyframe: Keyframe | None):
        def write(w, sid: str | None = None) -> None:
            if keyframe is not None:
                keyframe.snapshot = sid
                frozen.keyframes.append(keyframe)
                self.manifest.keyframes.append(copy.copy(keyframe))
            if chunk is not None:
                w.put_chunk(*chunk)
            w.put_trace(self.name, frozen.encode())
        return write

    def flush(self) -> None:
        """Commit the log so far (without a keyframe)."""
        chunk, frozen = self._commit_point()
        with self.store.writer() as w:
            self._writer_for(chunk, frozen, None)(w)

    # ---- keyframes -----------------------------------------------------------------
    def start(self) -> None:
        """Keyframe 0: the state the recording starts from (the snapshot it was
        restored from, if nothing ran since: `record --from`)."""
        base, m, disk = self.snapshots.baseline, self.machine, self.guest.disk
        if base is None or m.ram_dirty.any() or (disk is not None and disk.dirty.any()):
            self.keyframe()
            self.snapshots.wait()
            return
        self.log(KEYFRAME, value=0)
        self.window = hashlib.sha256()
        chunk, frozen = self._commit_point()
        with self.store.writer() as w:
            self._writer_for(chunk, frozen, Keyframe(self.position, m.steps, m.vclock, ""))(
                w, base.snapshot_id)

    def keyframe(self, name: str | None = None, background: bool = True) -> None:
        """A keyframe snapshot here (named `name`: a savevm)."""
        self.snapshots.wait()
        self.log(KEYFRAME, value=len(self.manifest.keyframes))
        self.window = hashlib.sha256()
        chunk, frozen = self._commit_point()
        m = self.machine
        keyframe = Keyframe(self.position, m.steps, m.vclock, "")
        self.snapshots.save(name, background=background,
                            also=self._writer_for(chunk, frozen, keyframe))
        self.next_keyframe = self.position + self.keyframe_interval
        self.next_digest = self.position + DIGEST_INTERVAL

    def finish(self, outcome: str) -> TraceManifest:
        """The final keyframe; the manifest says the recording is complete."""
        self.snapshots.wait()
        self.manifest.complete = True
        self.manifest.outcome = outcome
        self.manifest.output_sha256 = self.output.hexdigest()
        self.keyframe(background=False)
        return self.manifest

    # ---- what the host does to the guest --------------------------------------------
    def run(self, budget: int) -> RunResult:
        limit = min(self.next_digest, self.next_keyframe) - self.position
        result = self.machine.run(min(budget, max(limit, 1)))
        self._take_output()
        self._take_frames()
        position = self.position
        if position >= self.next_keyframe:
            self.keyframe()
        elif position >= self.next_digest:
            self.log(DIGEST, light_digest(self.machine, self.window))
            self.window = hashlib.sha256()
            self.next_digest = position + DIGEST_INTERVAL
            if self.pending_bytes >= FLUSH_BYTES:
                self.flush()
        return result

    def console_write(self, data: bytes) -> int:
        taken = self.machine.console_write(data)
        if taken:
            self.log(CONSOLE, bytes(data[:taken]))
        return taken

    def _take_output(self) -> None:
        # Taken at once, so the output hash at a position covers exactly what
        # the guest printed up to it (replay drains the same way).
        out = self.machine.console_read()
        if out:
            self.output.update(out)
            self.window.update(out)
            self.manifest.output_bytes += len(out)
            self.unread.append(out)

    def console_read(self) -> bytes:
        self._take_output()
        out, self.unread = b"".join(self.unread), []
        return out

    def _take_frames(self) -> None:
        # At once, before anything else is logged after the run: each is logged
        # at the position of its instruction, which no later event precedes.
        for frame, steps in self.machine.net_sent():
            self.log(NET_TX, tx_record(frame), position=steps - self.offset)
            self.unsent.append((frame, steps))

    def net_sent(self) -> list[tuple[bytes, int]]:
        self._take_frames()
        out, self.unsent = self.unsent, []
        return out

    def net_receive(self, frame: bytes) -> Received:
        # An offer that found no receive buffer changed nothing: not an input.
        received = self.machine.net_receive(frame)
        if received != Received.NO_BUFFER:
            self.log(NET_RX, bytes(frame))
        return received

    def entropy_write(self, data: bytes) -> int:
        # Logged as offered: an answer can complete requests even when it
        # consumes nothing (broken chains), so replay makes the same call.
        taken = self.machine.entropy_write(data)
        if data:
            self.log(ENTROPY, bytes(data))
        return taken

    def skip_to(self, vclock: int) -> None:
        delta = vclock - self.machine.vclock
        if delta > 0:
            self.machine.skip_to(vclock)
            self.log(SKIP, value=delta)

    def replaced(self, sid: str) -> None:
        """The machine was replaced by snapshot `sid` (loadvm, reboot); the
        caller has set the offset so the position carries on."""
        self.log(LOAD, bytes.fromhex(sid))
        if sid not in self.manifest.loads:
            self.manifest.loads.append(sid)
        self.flush()                    # the loaded snapshot gets its root now

    def loadvm(self, name: str):
        position = self.position
        manifest = self.snapshots.load(name)
        self.offset = self.machine.steps - position
        self.replaced(manifest.id)
        return manifest

    def savevm(self, name: str) -> None:
        self.keyframe(name)

    def reboot(self) -> None:
        position = self.position
        self._reboot()
        self.offset = self.machine.steps - position
        self.replaced(self.snapshots.save())


class RecordingMachine:
    """The machine as the session loop sees it while recording (see module doc)."""

    def __init__(self, recorder: Recorder):
        self._recorder = recorder
        self._machine = recorder.machine
        for method in ("run", "console_write", "console_read", "entropy_write", "skip_to",
                       "net_sent", "net_receive"):
            setattr(self, method, getattr(recorder, method))

    def __getattr__(self, name):
        return getattr(self._machine, name)
