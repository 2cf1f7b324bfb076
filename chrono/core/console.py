"""The host side of the guest console: stdin/stdout, raw terminal mode and the
Ctrl-A escape keys (as QEMU's -nographic has them).

A Console turns host input into guest bytes and console commands, and writes
guest output.  With a terminal, stdin is put in raw mode (restored on every
exit path by close(), which the caller runs in a finally block); with pipes
or files nothing about the terminal is touched, so scripts and tests can drive
the guest.
"""
from __future__ import annotations

import enum
import os
import select
import sys
import termios
import tty

ESCAPE = 0x01  # Ctrl-A

HELP_TEXT = (
    "\r\nC-a h    print this help\r\n"
    "C-a x    exit chrono\r\n"
    "C-a C-a  send C-a to the guest\r\n"
)


class Command(enum.Enum):
    QUIT = "quit"


class Console:
    """Reads host input for the guest and writes guest output to the host."""

    def __init__(self, stdin=None, stdout=None):
        self._in = stdin if stdin is not None else sys.stdin
        self._out = stdout if stdout is not None else sys.stdout
        self._fd = self._in.fileno()
        self.interactive = os.isatty(self._fd)
        self.eof = False
        self._saved_tty = None
        self._escape = False
        if self.interactive:
            self._saved_tty = termios.tcgetattr(self._fd)
            tty.setraw(self._fd)

    def close(self) -> None:
        """Restore the terminal.  Safe to call more than once."""
        if self._saved_tty is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None
        self.flush()

    def write(self, data: bytes) -> None:
        if data:
            buffer = getattr(self._out, "buffer", self._out)
            buffer.write(data)
            buffer.flush()

    def flush(self) -> None:
        try:
            self._out.flush()
        except (OSError, ValueError):
            pass

    def message(self, text: str) -> None:
        """A line from chrono itself (not the guest), kept apart from guest output."""
        end = "\r\n" if self.interactive else "\n"
        sys.stderr.write(f"chrono: {text}{end}")
        sys.stderr.flush()

    def poll(self, timeout: float) -> tuple[bytes, list[Command]]:
        """Wait up to `timeout` seconds for input; return guest bytes and commands."""
        if self.eof:
            return b"", []
        try:
            ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        except InterruptedError:
            return b"", []
        if not ready:
            return b"", []
        data = os.read(self._fd, 4096)
        if not data:
            self.eof = True
            return b"", []
        if not self.interactive:
            return data, []
        return self._escape_keys(data)

    def _escape_keys(self, data: bytes) -> tuple[bytes, list[Command]]:
        guest = bytearray()
        commands: list[Command] = []
        for byte in data:
            if self._escape:
                self._escape = False
                if byte in (ord("x"), ord("X")):
                    commands.append(Command.QUIT)
                elif byte in (ord("h"), ord("H"), ord("?")):
                    self.write(HELP_TEXT.encode())
                elif byte == ESCAPE:
                    guest.append(ESCAPE)
                # Any other key after C-a is ignored, as in QEMU.
            elif byte == ESCAPE:
                self._escape = True
            else:
                guest.append(byte)
        return bytes(guest), commands
