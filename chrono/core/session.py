"""Running a machine against a console: the loop behind `chrono run`.

The core runs in slices; between slices this loop moves console output to
the host, feeds queued input into the UART as the guest drains it, runs
monitor commands, and decides what an idle guest (WFI, nothing pending)
means:

- input is queued: deliver it now;
- a timer deadline exists: jump the virtual clock to it (unpaced), or wait
  in real time until the host clock reaches it, unless input arrives first
  (paced);
- no deadline and no input can ever come (input ended): stop.

When the guest asks its entropy device (virtio-rng) for bytes, the run stops
(Stop.ENTROPY) and the loop answers at once with bytes from os.urandom (or the
session's `entropy` source, for tests), through Machine.entropy_write: the one
place host randomness enters the guest (record/replay logs that call).  A
machine restored from a state saved between such a request and its answer is
served the same way when the loop resumes.

With a network (`--net user`, chrono.net.link), frames move between slices:
what the guest sent goes to slirp, what slirp has for the guest is put into
its receive buffers.  A guest that sends a frame, or posts receive buffers
while frames wait, stops its slice (Stop.NET) so the exchange goes on at once.
A network is a real-time thing, so an idle guest then waits for it in host
time before its virtual clock jumps: up to the gap to its next deadline, at
most NET_IDLE_WAIT when unpaced; frames arriving end the wait.  slirp's own
timers count as deadlines (its clock is the guest's), and a guest with a
network never counts as having nothing left to wait for.

Pacing keeps virtual time from running ahead of the host clock, so that a
guest's `sleep 1` takes about a second at an interactive console.  It only
ever adds host sleeps; what the guest computes is the same either way.
Interactive runs are paced.  Scripted runs (stdin not a terminal) run as fast
as the core goes while input remains, then paced once it is exhausted, like
an interactive run with nobody typing.

Monitor commands (and Ctrl-A x) typed at a terminal act at once.  In a
script they act in order: once the guest has taken every byte before them
and settled — it waits in WFI and has been quiet (no console output, no
input taken) for QUIET_NS of guest time, or it has nothing left to wait for
— so `write a x`, then `savevm`, saves the state after the guest handled the
write.  An OS idles between timer ticks in the middle of a command; the
quiet time tells that apart from waiting at the prompt.  Reaching it never
fires a timer early: time only jumps as far as the quiet point.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from chrono.core.console import Command, Console, Event, MonitorLine
from chrono.core.machine import Machine, Stop

SLICE_STEPS = 20_000_000          # ~20 ms of guest time: bounds input and pacing latency
PREFETCH_PAGES = 64               # lazily restored pages loaded at a time while the host
                                  # waits anyway (~1 ms: what it can add to input latency)
QUIET_NS = 200_000_000            # guest time without console activity that counts as settled
NET_IDLE_WAIT = 0.1               # host seconds an unpaced idle guest waits for its network
STEPS_PER_SECOND = Machine.timebase_hz * Machine.steps_per_tick


@dataclass(frozen=True)
class Outcome:
    """How a session ended."""

    kind: str        # poweroff, exit, quit, max-steps, input-ended, breakpoint, reboot
    exit_code: int
    steps: int
    detail: str = ""


@dataclass(frozen=True)
class MonitorReply:
    """What a monitor command printed and what the session should do next."""

    text: str = ""
    action: str | None = None     # None, "quit", "stop", "cont", "restored",
                                  # "pending": the result comes later, from monitor.poll()


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


WAITING_NOTE = ("the guest is waiting for input; its screen from before the snapshot "
                "is not redrawn (Enter gives a shell a new prompt)")


class Session:
    def __init__(self, machine: Machine, reboot: Callable[[], None] | None = None,
                 monitor: Callable[[str], MonitorReply] | None = None,
                 entropy: Callable[[int], bytes] = os.urandom, restored: bool = False,
                 net=None):
        """`restored`: the machine comes from a snapshot (`run --from`), so the
        terminal shows nothing of it yet; a guest that waits there without
        printing gets WAITING_NOTE on stderr, lest the user think it hung.
        `net`: a chrono.net.link.NetLink on `machine`, or None (no network)."""
        self.machine = machine
        self.net = net
        self._note_waiting = restored
        self.entropy = entropy                  # n -> n bytes for the guest's virtio-rng
        self.reboot = reboot
        self.monitor = monitor
        self.pending: deque[Event] = deque()    # guest bytes and scripted commands, in order
        self.stopped = False                    # `stop` at the monitor
        self._quit = False
        self._restored = False
        self._interrupt = False                 # the debugger asked to stop (see run)
        self._debugger = None

    # ---- input --------------------------------------------------------------
    def _feed(self) -> None:
        """Move queued guest bytes into the UART FIFO as far as it has room."""
        m = self.machine
        while self.pending and isinstance(self.pending[0], bytes) and m.console_ready():
            head = self.pending[0]
            taken = m.console_write(head[:64])
            if taken < len(head):
                self.pending[0] = head[taken:]
                break
            self.pending.popleft()
            if taken == 0:
                break
        m.set_input_waiting(bool(self.pending) and isinstance(self.pending[0], bytes))

    def _guest_input_queued(self) -> bool:
        return any(isinstance(e, bytes) for e in self.pending)

    def _take_input(self, console: Console, timeout: float) -> bool:
        """Poll the console and queue what it gives (interactive commands act at
        once).  A wait (timeout > 0) also watches the network, and ends early
        when frames reach the guest: returns whether they did."""
        delivered = 0
        if self.net is not None and timeout > 0:
            ready, delivered = self.net.pump(timeout, () if console.eof else (console.fileno(),))
            if not ready:
                return delivered > 0
            timeout = 0.0
        if console.eof:
            if timeout > 0:
                time.sleep(timeout)         # nothing more can arrive: just let time pass
            return delivered > 0
        for event in console.poll(timeout):
            if console.interactive and not isinstance(event, bytes):
                self._command(console, event)
            else:
                self.pending.append(event)
        return delivered > 0

    def _command(self, console: Console, event: Event) -> None:
        if event is Command.QUIT:
            self._quit = True
            return
        assert isinstance(event, MonitorLine)
        if not event.text:
            console.monitor_prompt()
            return
        reply = self.monitor(event.text) if self.monitor else MonitorReply(
            "no monitor in this session")
        console.monitor_output(reply.text)
        if reply.action == "quit":
            self._quit = True
        elif reply.action == "stop":
            self.stopped = True
        elif reply.action == "cont":
            self.stopped = False
            console.leave_monitor()
        elif reply.action == "restored":
            self._restored = True
        if not self._quit and console.in_monitor and reply.action != "pending":
            console.monitor_prompt()        # a pending command's prompt follows its result

    def _monitor_poll(self, console: Console) -> None:
        """Reports the monitor has for us between slices (a savevm that finished)."""
        poll = getattr(self.monitor, "poll", None)
        text = poll() if poll is not None else ""
        if text:
            console.monitor_output(text)
            if console.in_monitor:
                console.monitor_prompt()

    def _supply_entropy(self, wanted: int) -> None:
        """Answer the guest's entropy requests with host randomness.  More than
        one call when the guest asked for more than one answer carries (4 KiB)."""
        m = self.machine
        while wanted > 0:
            if m.entropy_write(self.entropy(wanted)) == 0:
                break                       # cannot happen while bytes are wanted; never spin
            wanted = m.entropy_wanted()

    def _queued_bytes(self) -> int:
        return sum(len(e) for e in self.pending if isinstance(e, bytes))

    def _command_waiting(self) -> bool:
        """A scripted command is next, with no guest input before it."""
        return bool(self.pending) and not isinstance(self.pending[0], bytes)

    def _run_settled_commands(self, console: Console) -> None:
        """Scripted commands at the head of the queue run once the guest settled."""
        while self.pending and not isinstance(self.pending[0], bytes) and not self._quit:
            self._command(console, self.pending.popleft())

    # ---- the loop -------------------------------------------------------------
    def run(self, console: Console, max_steps: int | None = None,
            paced: bool | None = None, debugger: Callable[[], bool] | None = None) -> Outcome:
        """Run until the guest or the user ends it.  `debugger()` is polled
        between slices: True stops the run (outcome "interrupt"), and
        breakpoints and watchpoints end it too, for a debugger to take over."""
        m = self.machine
        self._debugger = debugger
        console.on_monitor = getattr(self.monitor, "prepare", None)   # a savevm may follow
        start = m.steps
        always_paced = console.interactive if paced is None else paced
        pacer = Pacer(m) if always_paced else None
        settled = False
        last_activity = start_vclock = m.vclock   # console output or input taken, in guest time

        def outcome(kind, code=0, detail=""):
            return Outcome(kind, code, m.steps - start, detail)

        self._supply_entropy(m.entropy_wanted())    # a request pending in a restored state
        while True:
            self._take_input(console, 0)
            if debugger is not None and (self._interrupt or debugger()):
                self._interrupt = False
                return outcome("interrupt")
            if settled or self.stopped:
                self._run_settled_commands(console)
            if self._quit:
                return outcome("quit")
            if self._restored:                  # loadvm: virtual time moved
                self._restored = False
                self._supply_entropy(m.entropy_wanted())
                if self.net is not None:
                    from chrono.net.link import RESTARTED
                    self.net.restart()
                    console.message(RESTARTED)
                pacer = Pacer(m) if pacer is not None else None
            if self.stopped:
                if console.eof and not self.pending:
                    return outcome("input-ended", 0, "the guest is stopped and the input has ended")
                self._take_input(console, self._input_wait())
                self._monitor_poll(console)
                continue
            if pacer is None and console.eof and not self.pending and paced is None:
                pacer = Pacer(m)            # scripted input exhausted: real time from here
            self._feed()

            budget = SLICE_STEPS
            if max_steps is not None:
                remaining = max_steps - (m.steps - start)
                if remaining <= 0:
                    return outcome("max-steps", 124, f"stopped after {max_steps} instructions (--max-insns)")
                budget = min(budget, remaining)

            self._monitor_poll(console)
            queued = self._queued_bytes()
            result = m.run(budget)
            output = m.console_read()
            console.write(output)
            returned = m.console_returned()
            if returned:
                self.pending.appendleft(returned)
            if self.net is not None:
                self.net.pump()
            if output or self._queued_bytes() != queued or returned:
                last_activity = m.vclock
            if self._note_waiting:
                self._waiting_note(console, result, output, start_vclock)
            settled = False
            if result.reason == Stop.IDLE and self._command_waiting():
                quiet_at = last_activity + QUIET_NS
                if not result.has_deadline or m.vclock >= quiet_at:
                    settled = True
                else:
                    m.skip_to(min(result.deadline, quiet_at))
                    continue

            if result.reason == Stop.ENTROPY:
                self._supply_entropy(result.code)
                continue
            if result.reason == Stop.NET:
                continue                    # pumped above
            if result.reason == Stop.POWEROFF:
                return outcome("poweroff", result.code)
            if result.reason == Stop.HTIF_EXIT:
                return outcome("exit", result.code)
            if result.reason == Stop.REBOOT:
                if self.reboot is None:
                    return outcome("reboot", 0, "the guest asked for a reboot")
                self.reboot()
                continue
            if result.reason == Stop.BREAKPOINT:
                return outcome("breakpoint", 0, f"breakpoint at {m.pc:#x}")
            if result.reason == Stop.WATCHPOINT:
                return outcome("watchpoint", 0, f"watchpoint hit at {result.code:#x}")
            if result.reason == Stop.BUDGET and pacer is not None:
                wait = pacer.seconds_until(m.vclock)
                if wait > 0:
                    self._take_input(console, wait)
            elif result.reason == Stop.IDLE and not self.pending:
                self._idle(console, pacer, result)
                if (console.eof and not self.pending and not result.has_deadline
                        and self.net is None):
                    return outcome("input-ended", 0,
                                   "the guest is waiting for input and the input has ended")

    def _input_wait(self) -> float:
        """Seconds a wait for input may take while nothing else can happen:
        short while a monitor result is due (a savevm committing beside the
        guest), so that its report is not held back by a whole wait."""
        busy = getattr(self.monitor, "busy", None)
        return 0.005 if busy is not None and busy() else 0.1

    def _waiting_note(self, console: Console, result, output: bytes, since: int) -> None:
        """Say once that a restored guest waits, if it printed nothing and the
        user typed nothing (only on the host's stderr: the guest sees nothing)."""
        if output or self.pending or not console.interactive:
            self._note_waiting = False      # the guest drew something, or the user acts
        elif result.reason == Stop.IDLE and (not result.has_deadline
                                             or self.machine.vclock >= since + QUIET_NS):
            console.message(WAITING_NOTE)
            self._note_waiting = False

    def _idle(self, console: Console, pacer: Pacer | None, result) -> None:
        """The guest waits and nothing is queued: advance time or wait for input.

        Host time spent waiting anyway fills in lazily restored RAM, a few
        pages at a time between looks at the input (prefetch).  An unpaced
        guest jumps to its deadline at once: nothing is waited for, so
        nothing is prefetched (its pages still load when touched)."""
        m = self.machine
        deadline = result.deadline if result.has_deadline else None
        if self.net is not None:
            due = self.net.due()            # slirp's timers run on the guest's clock
            if due is not None:
                deadline = m.vclock + due if deadline is None else min(deadline, m.vclock + due)
        if deadline is None:
            # Nothing will happen until input arrives: block (in short waits
            # so signals are seen).
            while (not self.pending and (not console.eof or self.net is not None)
                   and not self._quit):
                if self._take_input(console, 0 if m.prefetch(PREFETCH_PAGES) else self._input_wait()):
                    return                      # frames for the guest: it runs again
                self._monitor_poll(console)
                if self._debugger is not None and self._debugger():
                    self._interrupt = True      # run() hands over to the debugger
                    return
            return
        if pacer is not None:
            wait = pacer.seconds_until(deadline)
            while wait > 0 and m.prefetch(PREFETCH_PAGES):
                self._take_input(console, 0)
                if self.pending or self._quit or self._restored:
                    return              # input first: deliver it without jumping
                wait = pacer.seconds_until(deadline)
        elif self.net is not None:
            wait = min((deadline - m.vclock) / STEPS_PER_SECOND, NET_IDLE_WAIT)
        else:
            wait = 0.0
        if wait > 0:
            if self._take_input(console, wait):
                return                  # frames for the guest: deliver them without jumping
            if self.pending or self._quit or self._restored:
                return              # input first: deliver it without jumping
        m.skip_to(deadline)
