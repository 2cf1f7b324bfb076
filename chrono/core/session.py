"""Running a machine against a console: the loop behind `chrono run`.

The core runs in slices; between slices this loop moves console output to
the host, feeds queued input into the UART as the guest drains it, and
decides what an idle guest (WFI, nothing pending) means:

- input is queued: deliver it now;
- a timer deadline exists: jump the virtual clock to it (unpaced), or wait
  in real time until the host clock reaches it, unless input arrives first
  (paced);
- no deadline and no input can ever come (input ended): stop.

Pacing keeps virtual time from running ahead of the host clock, so that a
guest's `sleep 1` takes about a second at an interactive console.  It only
ever adds host sleeps; what the guest computes is the same either way.
Interactive runs are paced.  Scripted runs (stdin not a terminal) run as fast
as the core goes while input remains, then paced once it is exhausted, like
an interactive run with nobody typing.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from chrono.core.console import Command, Console
from chrono.core.machine import Machine, Stop

SLICE_STEPS = 20_000_000          # ~0.1 s of guest time: bounds input and pacing latency
STEPS_PER_SECOND = Machine.timebase_hz * Machine.steps_per_tick


@dataclass(frozen=True)
class Outcome:
    """How a session ended."""

    kind: str        # poweroff, exit, quit, max-steps, input-ended, breakpoint
    exit_code: int
    steps: int
    detail: str = ""


class Pacer:
    """Maps virtual clock to host time, from the moment pacing starts."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.host_start = time.monotonic()
        self.vclock_start = machine.vclock

    def seconds_until(self, vclock: int) -> float:
        """Host seconds until the host clock reaches virtual clock `vclock`."""
        target = self.host_start + (vclock - self.vclock_start) / STEPS_PER_SECOND
        return target - time.monotonic()


class Session:
    def __init__(self, machine: Machine, reboot: Callable[[], None] | None = None):
        self.machine = machine
        self.reboot = reboot
        self.queue = bytearray()

    def _feed(self) -> None:
        m = self.machine
        if self.queue:
            taken = m.console_write(bytes(self.queue[:64]))
            del self.queue[:taken]
        m.set_input_waiting(bool(self.queue))

    def _take_input(self, console: Console, timeout: float) -> bool:
        """Poll the console; queue guest bytes.  Returns True if asked to quit."""
        if console.eof:
            time.sleep(max(timeout, 0.0))   # nothing more can arrive: just let time pass
            return False
        data, commands = console.poll(timeout)
        self.queue += data
        return Command.QUIT in commands

    def run(self, console: Console, max_steps: int | None = None,
            paced: bool | None = None) -> Outcome:
        m = self.machine
        start = m.steps
        always_paced = console.interactive if paced is None else paced
        pacer = Pacer(m) if always_paced else None

        while True:
            if self._take_input(console, 0):
                return Outcome("quit", 0, m.steps - start)
            if pacer is None and console.eof and not self.queue and paced is None:
                pacer = Pacer(m)            # scripted input exhausted: real time from here
            self._feed()

            budget = SLICE_STEPS
            if max_steps is not None:
                remaining = max_steps - (m.steps - start)
                if remaining <= 0:
                    return Outcome("max-steps", 124, m.steps - start,
                                   f"stopped after {max_steps} instructions (--max-insns)")
                budget = min(budget, remaining)

            result = m.run(budget)
            console.write(m.console_read())

            if result.reason == Stop.POWEROFF:
                return Outcome("poweroff", result.code, m.steps - start)
            if result.reason == Stop.HTIF_EXIT:
                return Outcome("exit", result.code, m.steps - start)
            if result.reason == Stop.REBOOT:
                if self.reboot is None:
                    return Outcome("reboot", 0, m.steps - start, "the guest asked for a reboot")
                self.reboot()
                continue
            if result.reason == Stop.BREAKPOINT:
                return Outcome("breakpoint", 0, m.steps - start, f"breakpoint at {m.pc:#x}")
            if result.reason == Stop.BUDGET and pacer is not None:
                wait = pacer.seconds_until(m.vclock)
                if wait > 0 and self._take_input(console, wait):
                    return Outcome("quit", 0, m.steps - start)
            elif result.reason == Stop.IDLE and not self.queue:
                if self._idle(console, pacer, result):
                    return Outcome("quit", 0, m.steps - start)
                if console.eof and not self.queue and not result.has_deadline:
                    return Outcome("input-ended", 0, m.steps - start,
                                   "the guest is waiting for input and the input has ended")

    def _idle(self, console: Console, pacer: Pacer | None, result) -> bool:
        """The guest waits; advance time or wait for input.  True = quit."""
        m = self.machine
        if not result.has_deadline:
            if console.eof:
                return False
            # Nothing will happen until input arrives: block (in short waits
            # so signals are seen).
            while not self.queue and not console.eof:
                if self._take_input(console, 0.5):
                    return True
            return False
        if pacer is not None:
            wait = pacer.seconds_until(result.deadline)
            if wait > 0:
                quit_ = self._take_input(console, wait)
                if quit_ or self.queue:
                    return quit_        # input first: deliver it without jumping
        m.skip_to(result.deadline)
        return False
