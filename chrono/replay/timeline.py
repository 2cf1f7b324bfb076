"""Time travel over a recording: go to any position, step and continue both ways.

The state *at position P* is the machine after P instructions of the
recording, before the inputs logged at P (they reach the guest before the
next instruction).  Every move is exact replay: going back restores the
nearest checkpoint at or before the target and runs forward to it, so the
state anywhere equals the recorded run's (keyframes and digests are checked
on the way, as in a replay).

Checkpoints are the recording's keyframes plus temporary snapshots the
timeline takes as it moves forward: sparse (every COARSE instructions) on
long runs, dense (every FINE) over the last stretch before where a seek
lands, which is where a user steps back and forth.  They are unnamed
snapshots in the store (`chrono store gc` removes them later); one that is
gone is simply skipped.

Continuing forward stops at a breakpoint (before its instruction executes),
after an access to a watched range, or at either end.  Continuing in reverse
replays the previous checkpoint interval, remembers the last hit before the
current position, and goes there -- for a watchpoint, to the state just
before the accessing instruction -- and with no hit looks one interval
further back, down to the start.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from chrono.core.machine import Stop, Watch
from chrono.errors import StoreError, UsageError
from chrono.store.store import Store
from chrono.replay.events import INPUT_KINDS, KEYFRAME
from chrono.replay.replay import RUNNING_STOPS, Replayer, trace_events

SLICE = 1 << 22             # steps per run call while an interrupt may come (~20 ms)
COARSE = 1 << 26            # temporary checkpoints on long forward runs (~0.3 s of replay)
FINE = 1 << 22              # ... and over the last COARSE before a seek target (~20 ms)


@dataclass
class Checkpoint:
    position: int
    event_index: int        # the first event not yet applied in that state
    snapshot: str
    temporary: bool = False
    # The console output since the last digest: the next digest checks it.
    # Keyframes reset it (empty); a temporary checkpoint keeps a copy.
    window: "hashlib._Hash" = field(default_factory=hashlib.sha256)


@dataclass(frozen=True)
class Halt:
    """Where a move ended and why."""

    reason: str             # "step", "seek", "breakpoint", "watch", "begin", "end", "interrupt"
    position: int
    pc: int
    address: int = 0        # "watch": the watched address accessed
    access: Watch | None = None     # "watch": the kind of the watchpoint hit


@dataclass(frozen=True)
class Watchpoint:
    address: int            # as given (virtual or physical)
    length: int
    kind: Watch
    physical: int           # where the core watches


class Timeline:
    """Recording `name` in `store`, opened at its first position."""

    def __init__(self, store: Store, name: str):
        self.replayer = Replayer(store, name)
        self.store = store
        self.machine = self.replayer.machine
        self.manifest = self.replayer.manifest
        self.events = list(trace_events(store, self.manifest))
        self.event_positions = [e.position for e in self.events]
        self.checkpoints = self._keyframe_checkpoints()
        first = self.checkpoints[0]
        self.next_event = first.event_index
        self.breakpoints: set[int] = set()
        self.watchpoints: list[Watchpoint] = []
        self.interrupted = lambda: False       # polled while running (gdb's Ctrl-C)
        self.checkpointing = True               # take temporary checkpoints while moving
        self.start = self.manifest.start_position
        self.end = (self.manifest.end_position if self.manifest.complete
                    else self.manifest.keyframes[-1].position)

    def close(self) -> None:
        self.replayer.close()

    @property
    def position(self) -> int:
        return self.replayer.position

    @property
    def pc(self) -> int:
        return self.machine.pc

    # ---- checkpoints -------------------------------------------------------------
    def _keyframe_checkpoints(self) -> list[Checkpoint]:
        """The recording's keyframes whose state is "at" their position (no input
        was delivered at that position before the keyframe was taken)."""
        out = []
        keyframes = self.manifest.keyframes
        inputs_here, here = False, None
        for index, event in enumerate(self.events):
            if event.position != here:
                here, inputs_here = event.position, False
            if event.kind in INPUT_KINDS:
                inputs_here = True
            elif event.kind == KEYFRAME and event.value < len(keyframes) and not inputs_here:
                k = keyframes[event.value]
                out.append(Checkpoint(k.position, index + 1, k.snapshot))
        if not out or out[0].position != keyframes[0].position:
            out.insert(0, Checkpoint(keyframes[0].position, 0, keyframes[0].snapshot))
        return out

    def _checkpoint_before(self, position: int, strictly: bool = False) -> Checkpoint | None:
        usable = [c for c in self.checkpoints
                  if (c.position < position if strictly else c.position <= position)]
        return max(usable, key=lambda c: (c.position, c.event_index)) if usable else None

    def _restore(self, checkpoint: Checkpoint) -> bool:
        r = self.replayer
        try:
            r.snapshots.load(checkpoint.snapshot)
        except StoreError:
            if not checkpoint.temporary:
                raise
            self.checkpoints.remove(checkpoint)     # removed by a gc meanwhile
            return False
        r.offset = self.machine.steps - checkpoint.position
        r.verified_at = checkpoint.position
        r.window = checkpoint.window.copy()
        r.forget_frames()
        self.next_event = checkpoint.event_index
        return True

    def _take_checkpoint(self) -> None:
        if any(c.position == self.position for c in self.checkpoints):
            return
        sid = self.replayer.snapshots.save()
        self.checkpoints.append(Checkpoint(self.position, self.next_event, sid, temporary=True,
                                           window=self.replayer.window.copy()))

    # ---- moving forward ----------------------------------------------------------
    def _forward(self, target: int, stop_at_breakpoints: bool = False, dense_from: int | None = None
                 ) -> Halt | None:
        """Run to `target` (clamped to the end).  With stop_at_breakpoints, stops
        at the first breakpoint after the current position and returns its Halt.
        Temporary checkpoints: every COARSE, and every FINE from `dense_from` on."""
        target = min(target, self.end)
        if stop_at_breakpoints or not self.breakpoints:
            return self._advance(target, stop_at_breakpoints, dense_from)
        # Passing over breakpoints: the core counts them (breakpoint_hits)
        # instead of stopping at each one.
        self.machine.pass_breakpoints(True)
        try:
            return self._advance(target, False, dense_from)
        finally:
            self.machine.pass_breakpoints(False)

    def _advance(self, target: int, stop_at_breakpoints: bool, dense_from: int | None
                 ) -> Halt | None:
        origin = self.position
        m, r = self.machine, self.replayer
        while True:
            position = self.position
            if (stop_at_breakpoints and position != origin and self.breakpoints
                    and m.pc in self.breakpoints):
                return Halt("breakpoint", position, m.pc)
            if position >= target:
                return None
            self._maybe_checkpoint(position, dense_from)
            while (self.next_event < len(self.events)
                   and self.events[self.next_event].position == position):
                r.apply(self.events[self.next_event])
                self.next_event += 1
            goal = min(target, self._next_checkpoint_position(position, dense_from))
            if self.next_event < len(self.events):
                goal = min(goal, self.events[self.next_event].position)
            if goal > position:
                halt = self._run(goal, stop_at_breakpoints, origin)
                if halt is not None:
                    return halt

    def _run(self, goal: int, stop_at_breakpoints: bool, origin: int) -> Halt | None:
        """Run to `goal` with no event in between; a breakpoint may stop it.
        (The core never stops at the pc a run call starts on: check it here.)"""
        m, r = self.machine, self.replayer
        first = True
        while self.position < goal:
            if (stop_at_breakpoints and not first and self.position != origin
                    and m.pc in self.breakpoints):
                return Halt("breakpoint", self.position, m.pc)
            first = False
            if stop_at_breakpoints and self.interrupted():
                return Halt("interrupt", self.position, m.pc)
            result = m.run(min(goal - self.position, SLICE))
            r._drain()
            if result.reason == Stop.BREAKPOINT:
                return Halt("breakpoint", self.position, m.pc)
            if result.reason == Stop.WATCHPOINT:
                if stop_at_breakpoints:
                    return self._watch_halt()
                continue
            if result.reason in RUNNING_STOPS or self.position >= goal:
                continue
            if result.reason == Stop.IDLE and result.executed:
                continue
            raise r._diverged(f"the guest stopped ({result.reason.name.lower()}, pc {m.pc:#x}) "
                              f"while the recording ran on to instruction {goal}")
        return None

    def _watch_halt(self) -> Halt:
        hit = self.machine.watch_hit()
        w = next((w for w in self.watchpoints
                  if w.physical <= hit.address < w.physical + w.length), None)
        address = hit.address if w is None else w.address + (hit.address - w.physical)
        return Halt("watch", self.position, self.machine.pc, address,
                    w.kind if w is not None else hit.watchpoint)

    def _maybe_checkpoint(self, position: int, dense_from: int | None) -> None:
        if not self.checkpointing:
            return
        spacing = FINE if dense_from is not None and position >= dense_from else COARSE
        if position % spacing == 0 and position != self.start:
            self._take_checkpoint()

    @staticmethod
    def _next_checkpoint_position(position: int, dense_from: int | None) -> int:
        spacing = FINE if dense_from is not None and position + FINE > dense_from else COARSE
        return (position // spacing + 1) * spacing

    # ---- the moves ---------------------------------------------------------------
    def seek(self, position: int) -> Halt:
        """Go to `position` (clamped to the recording)."""
        position = max(self.start, min(position, self.end))
        if position != self.position:
            checkpoint = self._checkpoint_before(position)
            if position < self.position or (checkpoint.position > self.position
                                            and position - self.position > FINE):
                while not self._restore(checkpoint):
                    checkpoint = self._checkpoint_before(position)
            self._forward(position, dense_from=max(self.position, position - COARSE))
        return Halt("seek", self.position, self.pc)

    def step(self, count: int = 1) -> Halt:
        """Forward `count` instructions (stops at the end)."""
        if self.position >= self.end:
            return Halt("end", self.position, self.pc)
        self._forward(self.position + count)
        return Halt("end" if self.position >= self.end else "step", self.position, self.pc)

    def step_back(self, count: int = 1) -> Halt:
        """Back `count` instructions (stops at the start)."""
        if self.position <= self.start:
            return Halt("begin", self.position, self.pc)
        self.seek(self.position - count)
        return Halt("begin" if self.position <= self.start else "step", self.position, self.pc)

    def cont(self) -> Halt:
        """Forward to the next breakpoint, or the end."""
        halt = self._forward(self.end, stop_at_breakpoints=True)
        return halt or Halt("end", self.position, self.pc)

    def reverse_cont(self) -> Halt:
        """Back to the last breakpoint hit before here, or the start."""
        here = self.position
        upper = here
        while True:
            checkpoint = self._checkpoint_before(upper, strictly=True)
            if checkpoint is None:
                self.seek(self.start)
                return Halt("begin", self.position, self.pc)
            last = self._last_hit_between(checkpoint, upper)
            if last is not None:
                self.seek(last.position)
                return Halt(last.reason, self.position, self.pc, last.address, last.access)
            upper = checkpoint.position

    def _last_hit_between(self, checkpoint: Checkpoint, upper: int) -> Halt | None:
        """The last hit in [checkpoint, upper): a breakpoint where the pc is at
        one, a watchpoint at the position of the accessing instruction."""
        if not self.breakpoints and not self.watchpoints:
            return None
        while not self._restore(checkpoint):
            checkpoint = self._checkpoint_before(upper, strictly=True)
        if not self.watchpoints:
            return self._last_breakpoint_before(upper)
        last = Halt("breakpoint", self.position, self.pc) if self.pc in self.breakpoints else None
        while self.position < upper:
            halt = self._forward(upper, stop_at_breakpoints=True)
            if halt is None or halt.reason not in ("breakpoint", "watch"):
                break
            if halt.reason == "watch":      # the instruction before made the access
                halt = Halt("watch", halt.position - 1, 0, halt.address, halt.access)
            if halt.position < upper:
                last = halt
        return last

    def _last_breakpoint_before(self, upper: int) -> Halt | None:
        """Breakpoints only: one pass to `upper`, the core counting hits
        (hundreds of thousands of hits cost nothing in Python)."""
        self._forward(upper)
        count, steps, pc = self.machine.breakpoint_hits()
        if not count:
            return None
        return Halt("breakpoint", steps - self.replayer.offset, pc)

    # ---- breakpoints ---------------------------------------------------------------
    def add_breakpoint(self, pc: int) -> None:
        self.machine.add_breakpoint(pc)
        self.breakpoints.add(pc)

    def remove_breakpoint(self, pc: int) -> None:
        self.machine.remove_breakpoint(pc)
        self.breakpoints.discard(pc)

    # ---- watchpoints ---------------------------------------------------------------
    def add_watchpoint(self, address: int, length: int, kind: Watch, physical: bool = False) -> bool:
        """Watch [address, +length): physical, or virtual translated through the
        page tables at the current position (False if it is not mapped here)."""
        from chrono.gdb.memory import translate
        target = address if physical else translate(self.machine, address)
        if target is None:
            return False
        self.machine.add_watchpoint(target, length, kind)
        self.watchpoints.append(Watchpoint(address, length, kind, target))
        return True

    def remove_watchpoint(self, address: int, length: int, kind: Watch) -> bool:
        for w in self.watchpoints:
            if (w.address, w.length, w.kind) == (address, length, kind):
                self.watchpoints.remove(w)
                self.machine.remove_watchpoint(w.physical, w.length, w.kind)
                return True
        return False


def open_timeline(store: Store, name: str) -> Timeline:
    if not name:
        raise UsageError("name a recording (`chrono trace list` shows them)")
    return Timeline(store, name)
