"""The interactive console, driven through a real pseudo-terminal as a user's
terminal would drive it: raw mode, Ctrl-A keys, terminal restored at exit."""
import os
import select
import subprocess
import sys
import termios
import time

import pytest

from chronocmd import CHRONO


class Terminal:
    """A pty whose slave side is chrono's stdin/stdout/stderr."""

    def __init__(self, args):
        self.master, self.slave = os.openpty()
        self.before = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen(CHRONO + args, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, close_fds=True)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {text!r}; saw {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self.seen += os.read(self.master, 4096)
        return self.seen

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal():
    made = []

    def start(*args):
        t = Terminal(list(args))
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


def test_ctrl_a_x_quits_and_restores_the_terminal(terminal):
    t = terminal("run")
    t.expect(b"demo> ")
    t.type(b"echo hello from a tty\r")
    t.expect(b"hello from a tty")
    t.type(b"\x01x")
    assert t.proc.wait(timeout=10) == 0
    assert termios.tcgetattr(t.slave) == t.before


def test_ctrl_a_h_lists_the_keys(terminal):
    t = terminal("run")
    t.expect(b"demo> ")
    t.type(b"\x01h")
    t.expect(b"C-a x")
    t.type(b"\x01x")
    assert t.proc.wait(timeout=10) == 0


def test_raw_mode_passes_ctrl_c_to_the_guest_and_poweroff_restores_the_terminal(terminal):
    t = terminal("run")
    t.expect(b"demo> ")
    t.type(b"\x03")             # in raw mode Ctrl-C is a byte for the guest, not a signal
    t.type(b"poweroff\r")
    t.expect(b"Powering off")
    assert t.proc.wait(timeout=10) == 0
    assert termios.tcgetattr(t.slave) == t.before


def test_guest_failure_exit_restores_the_terminal(terminal):
    t = terminal("run")
    t.expect(b"demo> ")
    t.type(b"crash\r")
    t.expect(b"TRAP")
    assert t.proc.wait(timeout=10) == 1
    assert termios.tcgetattr(t.slave) == t.before
