"""The host side of the guest console: stdin/stdout, raw terminal mode, the
Ctrl-A escape keys (as QEMU's -nographic has them) and the monitor's line.

A Console turns host input into an ordered list of events: bytes for the
guest, lines typed at the `(chrono)` monitor, and a quit request.  The keys
work the same with a terminal and with piped input, so scripts can drive the
monitor too (`printf 'ls\\n\\001csavevm s1\\n'`).  With a terminal, stdin is
put in raw mode (restored on every exit path by close(), which the caller
runs in a finally block); with pipes or files the terminal is not touched.
SIGTERM and SIGHUP raise Terminated while a Console is open, so they unwind
through those finally blocks like Ctrl-C does, instead of killing chrono
with the terminal left raw (or a recording unfinished).
"""
from __future__ import annotations

import enum
import os
import select
import signal
import sys
import termios
import threading
import tty
from dataclasses import dataclass

from chrono.errors import Terminated

ESCAPE = 0x01  # Ctrl-A

HELP_TEXT = (
    "\r\nC-a h    print this help\r\n"
    "C-a x    exit chrono\r\n"
    "C-a c    switch between the guest console and the (chrono) monitor\r\n"
    "C-a C-a  send C-a to the guest\r\n"
)
MONITOR_PROMPT = "(chrono) "


class Command(enum.Enum):
    QUIT = "quit"


@dataclass(frozen=True)
class MonitorLine:
    """A complete line typed at the monitor."""

    text: str


Event = bytes | MonitorLine | Command

ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum, frame):
    raise Terminated(signum)


class Console:
    """Reads host input for the guest and the monitor, writes guest output."""

    def __init__(self, stdin=None, stdout=None):
        self._in = stdin if stdin is not None else sys.stdin
        self._out = stdout if stdout is not None else sys.stdout
        self._fd = self._in.fileno()
        self.interactive = os.isatty(self._fd)
        self.eof = False
        self.in_monitor = False         # keys go to the monitor line, not the guest
        self.on_monitor = None          # called each time the monitor is entered
        self._line = bytearray()
        self._last_cr = False           # a CR ended the last monitor line (skip its LF)
        self._line_start = True         # the last byte written ended a line
        self._saved_tty = None
        self._escape = False
        self._saved_handlers = self._catch_ending_signals()
        if self.interactive:
            self._saved_tty = termios.tcgetattr(self._fd)
            # TCSANOW, not setraw's default TCSAFLUSH: keys typed while chrono
            # started are input for the guest, not to be thrown away.
            tty.setraw(self._fd, termios.TCSANOW)

    @staticmethod
    def _catch_ending_signals() -> dict:
        """Signals that would kill chrono outright raise Terminated instead
        (only those left at their default: `nohup` and the like win)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, _terminate) for sig in ENDING_SIGNALS
                if signal.getsignal(sig) is signal.SIG_DFL}

    def close(self) -> None:
        """Restore the terminal and the signal handlers.  Safe to call more than once."""
        if self._saved_tty is not None:
            saved, self._saved_tty = self._saved_tty, None
            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)
            except termios.error:
                pass                    # the terminal hung up: nothing left to restore
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)
        self._saved_handlers = {}
        self.flush()

    # ---- output -------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if data:
            buffer = getattr(self._out, "buffer", self._out)
            buffer.write(data)
            buffer.flush()
            self._line_start = data.endswith(b"\n")

    def flush(self) -> None:
        try:
            self._out.flush()
        except (OSError, ValueError):
            pass

    def _newline(self) -> str:
        return "\r\n" if self._saved_tty is not None else "\n"   # raw: no CR added for us

    def message(self, text: str) -> None:
        """A line from chrono itself (not the guest), kept apart from guest output."""
        sys.stderr.write(f"chrono: {text}{self._newline()}")
        sys.stderr.flush()

    def monitor_output(self, text: str) -> None:
        """Monitor replies go to the console output, like the guest's."""
        if text:
            start = "" if self._line_start else self._newline()   # not after a guest prompt
            self.write((start + text.rstrip("\n").replace("\n", self._newline())
                        + self._newline()).encode())

    def monitor_prompt(self) -> None:
        if self.interactive:
            self.write(MONITOR_PROMPT.encode())

    # ---- input ----------------------------------------------------------------
    def fileno(self) -> int:
        """The input's file descriptor (to wait on it beside others)."""
        return self._fd

    def poll(self, timeout: float) -> list[Event]:
        """Wait up to `timeout` seconds for input; return events in order."""
        if self.eof:
            return []
        try:
            ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        except InterruptedError:
            return []
        if not ready:
            return []
        data = os.read(self._fd, 4096)
        if not data:
            self.eof = True
            return []
        return self._events(data)

    def _events(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        guest = bytearray()

        def flush_guest():
            if guest:
                events.append(bytes(guest))
                guest.clear()

        for byte in data:
            if self._escape:
                self._escape = False
                key = chr(byte).lower()
                if key == "x":
                    flush_guest()
                    events.append(Command.QUIT)
                elif key in "h?":
                    self.write(HELP_TEXT.encode())
                elif key == "c":
                    flush_guest()
                    self._toggle_monitor()
                elif byte == ESCAPE:
                    self._key(ESCAPE, guest, events)
                # Any other key after C-a is ignored, as in QEMU.
            elif byte == ESCAPE:
                self._escape = True
            else:
                self._key(byte, guest, events)
        flush_guest()
        return events

    def leave_monitor(self) -> None:
        if self.in_monitor:
            self._toggle_monitor()

    def _toggle_monitor(self) -> None:
        self.in_monitor = not self.in_monitor
        self._line.clear()
        if self.in_monitor and self.on_monitor is not None:
            self.on_monitor()
        if self.in_monitor and self.interactive:
            self.write(b"\r\n")
            self.monitor_prompt()
        elif self.interactive:
            self.write(b"\r\n")

    def _key(self, byte: int, guest: bytearray, events: list) -> None:
        if not self.in_monitor:
            guest.append(byte)
            return
        if byte in (0x0d, 0x0a):                        # Enter: a whole monitor line
            if self.interactive:
                self.write(b"\r\n")
            if byte == 0x0a and not self._line and self._last_cr:
                self._last_cr = False                   # the LF of a CRLF
                return
            self._last_cr = byte == 0x0d
            if guest:
                events.append(bytes(guest))
                guest.clear()
            events.append(MonitorLine(self._line.decode(errors="replace").strip()))
            self._line.clear()
        elif byte in (0x7f, 0x08):                      # backspace
            if self._line:
                self._line.pop()
                if self.interactive:
                    self.write(b"\b \b")
        elif byte >= 0x20:
            self._line.append(byte)
            if self.interactive:
                self.write(bytes([byte]))
