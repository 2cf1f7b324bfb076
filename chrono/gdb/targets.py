"""What the gdb stub drives: a recording (time travel) or a live guest.

A target answers the stub's questions (registers, memory) and moves the
guest (step, continue, and on a recording their reverse), returning a
StopEvent.  Memory is virtual (through the current page tables) unless the
`phys on` monitor command switches to physical addresses.
"""
from __future__ import annotations

from chrono.core.machine import Stop, Watch
from chrono.errors import UsageError
from chrono.gdb import memory
from chrono.gdb.registers import read_register, register_map, writable, write_register
from chrono.gdb.stub import StopEvent
from chrono.store.store import check_ref_name

BREAK_KINDS = (0, 1)            # Z0 software, Z1 hardware breakpoint
WATCH_KINDS = {2: Watch.WRITE, 3: Watch.READ, 4: Watch.ACCESS}     # Z2, Z3, Z4
STOP_NAMES = {Watch.WRITE: "watch", Watch.READ: "rwatch", Watch.ACCESS: "awatch"}

MONITOR_HELP = """\
when              the current position (instructions into the recording) and pc
goto POSITION     go to that position (forward or back); gdb's `goto` (defined by
                  chrono debug, or `source` chrono/gdb/gdb_commands.py) also refreshes
                  gdb's registers and frames, which `monitor goto` cannot
savevm NAME       save the machine here as snapshot NAME
loadvm NAME       go to where snapshot NAME was saved (a keyframe, or a savevm here)
last-write ADDR [SIZE]
                  who last wrote ADDR before here: position, pc, instruction, or DMA
phys on|off       memory addresses are physical (on) or virtual through satp (off)
help              this list"""


def _has_fpu(isa: str) -> bool:
    letters = isa.split("_")[0][4:]
    return "f" in letters and "d" in letters


class Target:
    """What both targets share: register and memory reads, breakpoints kept by
    kind (gdb may put a software and a hardware one on the same pc), `phys`."""

    help_text = ""

    def __init__(self):
        self.physical = False
        self.hardware: set[int] = set()
        self.software: set[int] = set()

    def read_register(self, r) -> int | None:
        return read_register(self.machine, r)

    def write_registers(self, values) -> bool:
        """Set (register, value) pairs, all or none: False if one that would
        change cannot be written here."""
        changes = [(r, v) for r, v in values if self.read_register(r) != v]
        if not all(self.can_write(r, v) for r, v in changes):
            return False
        for r, v in changes:
            write_register(self.machine, r, v)
        return True

    def can_write(self, r, value: int) -> bool:
        return writable(r, value)

    def read_memory(self, address: int, length: int) -> bytes | None:
        return memory.read(self.machine, address, length, self.physical)

    def hardware_breakpoint_hit(self) -> bool:
        return self.machine.pc in self.hardware and self.machine.pc not in self.software

    def _set_breakpoint(self, insert: bool, kind: int, address: int) -> None:
        group = self.hardware if kind == 1 else self.software
        if insert:
            group.add(address)
            self._add_breakpoint(address)
        else:
            group.discard(address)
            if address not in self.hardware | self.software:
                self._remove_breakpoint(address)

    def detach(self) -> None:
        """gdb has gone: drop its breakpoints (watchpoints: in the subclasses)."""
        for address in self.hardware | self.software:
            self._remove_breakpoint(address)
        self.hardware.clear()
        self.software.clear()

    def monitor(self, line: str) -> str:
        """Answer `monitor LINE`: help and phys here, the rest in _monitor."""
        words = line.split()
        if not words or words[0] == "help":
            return self.help_text + "\n"
        if words[0] == "phys" and words[1:] in (["on"], ["off"]):
            self.physical = words[1] == "on"
            return f"memory addresses are {'physical' if self.physical else 'virtual'}\n"
        return self._monitor(words[0], words[1:])

    def _monitor(self, command: str, args: list[str]) -> str:
        raise NotImplementedError


class ReplayTarget(Target):
    """A recording opened as a Timeline: every move is exact replay."""

    reversible = True
    help_text = MONITOR_HELP

    def __init__(self, timeline):
        super().__init__()
        self.t = timeline
        # Where each snapshot of this recording is: its keyframes and savevm here.
        self.saved = {k.snapshot: k.position for k in timeline.manifest.keyframes}
        self._add_breakpoint = timeline.add_breakpoint
        self._remove_breakpoint = timeline.remove_breakpoint

    @property
    def machine(self):
        return self.t.machine

    def registers(self):
        return register_map(_has_fpu(self.t.manifest.config.get("isa", "")))

    def can_write(self, r, value: int) -> bool:
        return False                # a recording's past cannot be changed

    def write_memory(self, address: int, data: bytes) -> str | None:
        return "E01"                # a recording's past cannot be changed

    def set_point(self, insert: bool, kind: int, address: int, length: int) -> bool | None:
        """Insert or remove a break- or watchpoint: True done, False refused
        (e.g. not mapped here), None for a kind this target does not have."""
        if kind in WATCH_KINDS:
            if insert:
                return self.t.add_watchpoint(address, length, WATCH_KINDS[kind], self.physical)
            return self.t.remove_watchpoint(address, length, WATCH_KINDS[kind])
        if kind not in BREAK_KINDS:
            return None
        self._set_breakpoint(insert, kind, address)
        return True

    def resume(self, how: str, interrupted) -> StopEvent:
        move = {"step": self.t.step, "cont": self.t.cont,
                "reverse-step": self.t.step_back, "reverse-cont": self.t.reverse_cont}[how]
        self.t.interrupted = interrupted    # this connection's Ctrl-C, for this move only
        try:
            halt = move()
        finally:
            self.t.interrupted = lambda: False
        if halt.reason == "watch":
            # gdb treats RISC-V watchpoints as firing *before* the access and
            # steps over the accessing instruction itself (forwards or
            # backwards) to show the change: present the hit that way.
            self.t.seek(halt.position - 1 if how == "cont" else halt.position + 1)
            return StopEvent(STOP_NAMES[halt.access], halt.address)
        kind = {"step": "step", "seek": "step"}.get(halt.reason, halt.reason)
        return StopEvent(kind)

    def _monitor(self, command: str, args: list[str]) -> str:
        if command == "when":
            return (f"position {self.t.position} of {self.t.start}..{self.t.end}, "
                    f"pc {self.t.pc:#x}\n")
        if command == "goto" and len(args) == 1:
            halt = self.t.seek(self._position(args[0]))
            return f"at position {halt.position}, pc {halt.pc:#x}\n"
        if command == "savevm" and len(args) == 1:
            check_ref_name(args[0])
            sid = self.t.replayer.snapshots.save(args[0])
            self.saved[sid] = self.t.position
            return f"saved {args[0]} at position {self.t.position}\n"
        if command == "loadvm" and len(args) == 1:
            position = self.saved.get(self.t.store.resolve(args[0]))
            if position is None:
                return (f"{args[0]} is not a keyframe of this recording nor saved here; "
                        f"`chrono run --from {args[0]}` starts a guest from it\n")
            halt = self.t.seek(position)
            return f"at position {halt.position} ({args[0]}), pc {halt.pc:#x}\n"
        if command == "last-write" and len(args) in (1, 2):
            size = _number(args[1], "a size") if len(args) == 2 else 1
            return self._last_write(_number(args[0], "an address"), size)
        if command in USAGE:
            raise UsageError(f"usage: {USAGE[command]}")
        return f"unknown monitor command {' '.join([command, *args])!r}; `monitor help` lists them\n"

    def _position(self, text: str) -> int:
        """A position of this recording (refused outside it, never clamped)."""
        t = self.t
        span = f"positions of this recording are {t.start}..{t.end}"
        try:
            position = int(text.replace(",", "").replace("_", ""), 10)
        except ValueError:
            raise UsageError(f"{text!r} is not a position (an instruction count, e.g. "
                             f"5000000); {span}") from None
        if not t.start <= position <= t.end:
            where = "before its start" if position < t.start else "past its end"
            raise UsageError(f"position {position} is {where}; {span}")
        return position

    def _last_write(self, address: int, size: int) -> str:
        from chrono.replay.writes import last_write
        here = self.t.position
        try:
            hit = last_write(self.t, address, size, here, self.physical)
        finally:
            self.t.seek(here)           # the query moves the timeline: come back
        if hit is None:
            return f"nothing wrote {address:#x} before position {here}\n"
        who = "device DMA during the instruction" if hit.device else "the instruction"
        return (f"position {hit.position}: {who} at pc {hit.pc:#x} ({hit.instruction:x}, "
                f"privilege {hit.priv}) wrote {hit.address:#x}\n")

    def detach(self) -> None:
        super().detach()
        for w in list(self.t.watchpoints):
            self.t.remove_watchpoint(w.address, w.length, w.kind)


USAGE = {"goto": "goto POSITION", "savevm": "savevm NAME", "loadvm": "loadvm NAME",
         "last-write": "last-write ADDR [SIZE]"}


def _number(text: str, what: str) -> int:
    """A monitor argument: decimal, or hex with 0x."""
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{text!r} is not {what} (decimal, or hex with 0x)") from None
    if value < 0:
        raise UsageError(f"{text!r} is not {what}: it is negative")
    return value


LIVE_HELP = """\
when              the guest's instruction count and pc
savevm NAME       save the machine here as snapshot NAME
loadvm NAME       restore snapshot NAME (RAM and disk together)
phys on|off       memory addresses are physical (on) or virtual through satp (off)
help              this list"""


class LiveTarget(Target):
    """A running guest (`chrono run --gdb`): its console stays live while gdb
    lets it run; the past is not there, so there is no reverse execution."""

    reversible = False
    help_text = LIVE_HELP

    def __init__(self, guest, session, console, open_snapshots):
        super().__init__()
        self.guest = guest
        self.machine = guest.machine
        self._add_breakpoint = self.machine.add_breakpoint
        self._remove_breakpoint = self.machine.remove_breakpoint
        self.session = session
        self.console = console
        self._open_snapshots = open_snapshots
        self._snapshots = None
        self.watchpoints: dict[tuple[int, int, Watch], int] = {}
        self.ended = None           # the session's Outcome once the guest has ended

    def registers(self):
        return register_map(_has_fpu(self.guest.config.riscv_isa))

    def write_memory(self, address: int, data: bytes) -> str | None:
        ok = memory.write(self.machine, address, data, self.physical)
        if ok:
            self.machine.invalidate_ram()       # cached code and translations may be stale
        return None if ok else "E14"

    def set_point(self, insert: bool, kind: int, address: int, length: int) -> bool | None:
        m = self.machine
        if kind in WATCH_KINDS:
            key = (address, length, WATCH_KINDS[kind])
            if not insert:
                target = self.watchpoints.pop(key, None)
                return target is not None and m.remove_watchpoint(target, length, key[2])
            target = address if self.physical else memory.translate(m, address)
            if target is None:
                return False
            m.add_watchpoint(target, length, key[2])
            self.watchpoints[key] = target
            return True
        if kind not in BREAK_KINDS:
            return None
        self._set_breakpoint(insert, kind, address)
        return True

    def resume(self, how: str, interrupted) -> StopEvent:
        m = self.machine
        if self.ended is not None:
            return StopEvent("exited", code=self.ended.exit_code)
        if how == "step":
            result = m.run(1)
            self.console.write(m.console_read())
            if result.reason in (Stop.POWEROFF, Stop.HTIF_EXIT):
                return StopEvent("exited", code=result.code)
            return StopEvent("step")
        if how != "cont":
            return StopEvent("interrupt")       # no reverse execution on a live guest
        outcome = self.session.run(self.console, debugger=interrupted)
        if outcome.kind == "breakpoint":
            return StopEvent("breakpoint")
        if outcome.kind == "watchpoint":
            hit = m.watch_hit()
            address = next((a for (a, n, _), target in self.watchpoints.items()
                            if target <= hit.address < target + n), hit.address)
            return StopEvent(STOP_NAMES[hit.watchpoint], address)
        if outcome.kind == "interrupt":
            return StopEvent("interrupt")
        self.ended = outcome
        return StopEvent("exited", code=outcome.exit_code)

    def _monitor(self, command: str, args: list[str]) -> str:
        if command == "when":
            return f"instruction {self.machine.steps}, pc {self.machine.pc:#x}\n"
        if command in ("savevm", "loadvm") and len(args) == 1:
            if self._snapshots is None:
                self._snapshots = self._open_snapshots()
            if command == "savevm":
                check_ref_name(args[0])
                sid = self._snapshots.save(args[0])
                return f"saved {args[0]} ({sid[:12]})\n"
            manifest = self._snapshots.load(args[0])
            return f"restored {args[0]} at instruction {manifest.steps}\n"
        if command in ("savevm", "loadvm"):
            raise UsageError(f"usage: {USAGE[command]}")
        return f"unknown monitor command {' '.join([command, *args])!r}; `monitor help` lists them\n"

    def detach(self) -> None:
        super().detach()
        for (address, length, kind), target in self.watchpoints.items():
            self.machine.remove_watchpoint(target, length, kind)
        self.watchpoints.clear()
