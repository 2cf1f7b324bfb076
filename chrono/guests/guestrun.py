"""Running a guest on chrono without a terminal, as part of building another guest:
the console output goes to a callback line by line (a build turns lines into
progress), nothing is typed, and the run ends when the guest powers off.

    run_to_poweroff(guest, on_line, max_steps=...)   -> (Outcome, console text)
    run_script(guest, [(expect, type), ...])         -> console text, the guest settled
                                                        (or not: settle=False)


The loop is chrono.core.session.Session's, unpaced: idle time jumps to the next
timer, entropy requests get host randomness (os.urandom).
"""
from __future__ import annotations

import time
from typing import Callable

from chrono.core.console import Command, MonitorLine
from chrono.core.session import MonitorReply, Outcome, Session


class LineConsole:
    """The Console face Session needs, with no terminal: input has ended before
    the run starts, output is split into lines for ``on_line``."""

    interactive = False
    eof = True
    in_monitor = False

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.text = bytearray()
        self._partial = b""
        self.messages: list[str] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.text += data
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.on_line(line.decode("utf-8", "replace").rstrip("\r"))

    def poll(self, timeout: float) -> list:
        return []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def monitor_output(self, text: str) -> None:
        self.messages.append(text)

    def monitor_prompt(self) -> None:
        pass

    def leave_monitor(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def output(self) -> str:
        return self.text.decode("utf-8", "replace").replace("\r\n", "\n")


def run_to_poweroff(guest, on_line: Callable[[str], None],
                    max_steps: int | None = None) -> tuple[Outcome, str]:
    """Run ``guest`` (chrono.core.launch.Guest) until it powers off (or stops some
    other way: the Outcome says how); its whole console output."""
    console = LineConsole(on_line)
    session = Session(guest.machine, reboot=guest.reboot)
    outcome = session.run(console, max_steps=max_steps, paced=False)
    console.write(b"\n")                   # the last line, even without its newline
    return outcome, console.output()


class ScriptConsole(LineConsole):
    """Types each step's text once the console showed its expected text; after the
    last step, asks the session to stop as soon as the guest has settled (or at
    once, without ``settle``: a busy guest never settles)."""

    _SETTLED = "settled"

    def __init__(self, steps: list[tuple[str, bytes]], settle: bool = True):
        super().__init__(lambda line: None)
        self.steps = list(steps)
        self.searched_from = 0
        self.eof = False
        self.finished = False
        # Session runs a non-interactive console's commands once the guest has
        # settled, an interactive one's at once.
        self.interactive = not settle

    def poll(self, timeout: float) -> list:
        if self.finished:
            return self._nothing(timeout)
        text = self.output()
        if not self.steps:
            self.finished = True
            return [MonitorLine(self._SETTLED) if not self.interactive else Command.QUIT]
        expect, typed = self.steps[0]
        found = text.find(expect, self.searched_from)
        if found < 0:
            return self._nothing(timeout)
        self.searched_from = found + len(expect)
        self.steps.pop(0)
        return [typed] if typed else []


    @staticmethod
    def _nothing(timeout: float) -> list:
        if timeout > 0:
            time.sleep(min(timeout, 0.01))   # the guest waits with no timer: do not spin
        return []


def run_script(guest, steps: list[tuple[str, bytes]], max_steps: int, settle: bool = True) -> str:
    """Run ``guest``: for each (expect, type) step wait for ``expect`` on the console,
    then type ``type``; return once the guest has settled (idle and quiet, as for a
    monitor command in a script) after the last step, or at once without
    ``settle``.  The console text; ImageError if the guest stopped (or ran
    ``max_steps``) first.  The guest can be saved, restored and run on after."""
    from chrono.errors import ImageError

    console = ScriptConsole(steps, settle)
    session = Session(guest.machine, reboot=None,
                      monitor=lambda text: MonitorReply(action="quit"))
    outcome = session.run(console, max_steps=max_steps, paced=False)
    if outcome.kind != "quit":
        waiting = console.steps[0][0] if console.steps else "to settle"
        raise ImageError(f"the guest stopped ({outcome.kind}) while waiting for {waiting!r}; "
                         f"its console ends with: {console.output()[-300:]!r}")
    return console.output()
