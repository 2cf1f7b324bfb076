"""What the gdb stub drives: a recording (time travel) or a live guest.

A target answers the stub's questions (registers, memory) and moves the
guest (step, continue, and on a recording their reverse), returning a
StopEvent.  Memory is virtual (through the current page tables) unless the
`phys on` monitor command switches to physical addresses.
"""
from __future__ import annotations

from chrono.core.machine import Watch
from chrono.gdb import memory
from chrono.gdb.registers import read_register, register_map
from chrono.gdb.stub import StopEvent

BREAK_KINDS = (0, 1)            # Z0 software, Z1 hardware breakpoint
WATCH_KINDS = {2: Watch.WRITE, 3: Watch.READ, 4: Watch.ACCESS}     # Z2, Z3, Z4
STOP_NAMES = {Watch.WRITE: "watch", Watch.READ: "rwatch", Watch.ACCESS: "awatch"}

MONITOR_HELP = """\
when              the current position (instructions into the recording) and pc
goto POSITION     go to that position (forward or back); then `maintenance flush
                  register-cache` so gdb reads the registers there
savevm NAME       save the machine here as snapshot NAME
phys on|off       memory addresses are physical (on) or virtual through satp (off)
help              this list"""


def _has_fpu(isa: str) -> bool:
    letters = isa.split("_")[0][4:]
    return "f" in letters and "d" in letters


class ReplayTarget:
    """A recording opened as a Timeline: every move is exact replay."""

    def __init__(self, timeline):
        self.t = timeline
        self.physical = False
        self.hardware: set[int] = set()
        self.software: set[int] = set()

    @property
    def machine(self):
        return self.t.machine

    def registers(self):
        return register_map(_has_fpu(self.t.manifest.config.get("isa", "")))

    def read_register(self, r) -> int | None:
        return read_register(self.machine, r)

    def write_register(self, r, value: int) -> bool:
        return False                # a recording's past cannot be changed

    def read_memory(self, address: int, length: int) -> bytes | None:
        return memory.read(self.machine, address, length, self.physical)

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
        group = self.hardware if kind == 1 else self.software
        if insert:
            group.add(address)
            self.t.add_breakpoint(address)
        else:
            group.discard(address)
            if address not in self.hardware | self.software:
                self.t.remove_breakpoint(address)
        return True

    def hardware_breakpoint_hit(self) -> bool:
        return self.machine.pc in self.hardware and self.machine.pc not in self.software

    def resume(self, how: str, interrupted) -> StopEvent:
        self.t.interrupted = interrupted
        move = {"step": self.t.step, "cont": self.t.cont,
                "reverse-step": self.t.step_back, "reverse-cont": self.t.reverse_cont}[how]
        halt = move()
        if halt.reason == "watch":
            # gdb treats RISC-V watchpoints as firing *before* the access and
            # steps over the accessing instruction itself (forwards or
            # backwards) to show the change: present the hit that way.
            self.t.seek(halt.position - 1 if how == "cont" else halt.position + 1)
            return StopEvent(STOP_NAMES[halt.access], halt.address)
        kind = {"step": "step", "seek": "step"}.get(halt.reason, halt.reason)
        return StopEvent(kind)

    def monitor(self, line: str) -> str:
        words = line.split()
        if not words or words[0] == "help":
            return MONITOR_HELP + "\n"
        command, args = words[0], words[1:]
        if command == "when":
            return (f"position {self.t.position} of {self.t.start}..{self.t.end}, "
                    f"pc {self.t.pc:#x}\n")
        if command == "goto" and len(args) == 1:
            halt = self.t.seek(int(args[0], 0))
            return f"at position {halt.position}, pc {halt.pc:#x}\n"
        if command == "savevm" and len(args) == 1:
            from chrono.store.store import check_ref_name
            check_ref_name(args[0])
            self.t.replayer.snapshots.save(args[0])
            return f"saved {args[0]} at position {self.t.position}\n"
        if command == "phys" and args in (["on"], ["off"]):
            self.physical = args[0] == "on"
            return f"memory addresses are {'physical' if self.physical else 'virtual'}\n"
        return f"unknown monitor command {line!r}; `monitor help` lists them\n"

    def detach(self) -> None:
        pass
