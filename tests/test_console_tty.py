"""The interactive console, driven through a real pseudo-terminal as a user's
terminal would drive it: raw mode, Ctrl-A keys, terminal restored at exit."""
import os
import select
import signal
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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_terminating_signal_restores_the_terminal(terminal, signum):
    t = terminal("run")
    t.expect(b"demo> ")
    t.proc.send_signal(signum)
    assert t.proc.wait(timeout=10) == 128 + signum
    assert termios.tcgetattr(t.slave) == t.before
    t.expect(f"chrono: terminated by {signal.Signals(signum).name}".encode())


def test_keys_typed_while_chrono_starts_reach_the_guest(terminal):
    t = terminal("run")
    t.type(b"echo typed-ahead\r")        # before chrono has even put the terminal in raw mode
    t.expect(b"typed-ahead\r\ndemo> ")
    t.type(b"\x01x")
    assert t.proc.wait(timeout=10) == 0


@pytest.fixture
def saved_demo(tmp_path):
    """A store holding `booted`: the demo guest saved at its prompt."""
    store = tmp_path / "store"
    proc = subprocess.run(CHRONO + ["run", "--store", str(store)], input=b"\x01csavevm booted\n",
                          capture_output=True, timeout=60)
    assert b"saved booted (" in proc.stdout, proc.stdout + proc.stderr
    return store


def test_run_from_at_a_terminal_says_the_guest_is_waiting(terminal, saved_demo):
    t = terminal("run", "--from", "booted", "--store", str(saved_demo))
    t.expect(b"the guest is waiting for input")       # without a key pressed
    t.type(b"echo back\r")
    t.expect(b"back\r\ndemo> ")
    t.type(b"\x01x")
    assert t.proc.wait(timeout=10) == 0


def test_savevm_prints_its_result_before_the_next_prompt(terminal, tmp_path):
    t = terminal("run", "--store", str(tmp_path / "store"))
    t.expect(b"demo> ")
    t.type(b"\x01c")
    t.expect(b"(chrono) ")
    t.type(b"savevm s1\r")
    seen = t.expect(b"in all\r\n(chrono) ")
    after_command = seen[seen.index(b"savevm s1"):]
    assert after_command.index(b"saved s1 (") < after_command.index(b"(chrono)"), after_command
    t.type(b"quit\r")
    assert t.proc.wait(timeout=10) == 0


def test_sigterm_during_a_recording_finishes_it(terminal, tmp_path):
    store = str(tmp_path / "store")
    t = terminal("record", "--store", store, "--name", "cut")
    t.expect(b"demo> ")
    t.type(b"echo one\r")
    t.expect(b"one\r\ndemo> ")
    t.proc.send_signal(signal.SIGTERM)
    assert t.proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert termios.tcgetattr(t.slave) == t.before
    t.expect(b"chrono: recorded cut: ")
    replayed = subprocess.run(CHRONO + ["replay", "--store", store, "cut"], capture_output=True,
                              text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert "demo> echo one\none\n" in replayed.stdout


def test_closing_the_terminal_ends_chrono_as_sighup():
    """The terminal window closes: the kernel hangs up chrono's controlling
    terminal, and chrono ends (status 129) without a write to it failing."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)

    def own_terminal():                 # a session whose controlling terminal is the pty
        os.setsid()
        fd = os.open(path, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(fd, std)

    proc = subprocess.Popen(CHRONO + ["run"], preexec_fn=own_terminal, close_fds=True)
    try:
        seen = b""
        while b"demo> " not in seen:
            ready, _, _ = select.select([master], [], [], 20)
            assert ready, f"no prompt; saw {seen!r}"
            seen += os.read(master, 4096)
        os.close(master)
        master = None
        assert proc.wait(timeout=20) == 128 + signal.SIGHUP
    finally:
        if master is not None:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
