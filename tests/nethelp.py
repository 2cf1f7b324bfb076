"""Test helpers for the network: a host web server, and a chrono session kept
open so the host can talk to the guest while it runs."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from chronocmd import CHRONO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    """`python3 -m http.server` on 127.0.0.1 (a free port) serving `folder`."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
             "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("python3 -m http.server did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


def wrapped(n: int, command: str) -> str:
    """A command line whose output is framed by markers its typed echo cannot
    match (the shell computes them)."""
    return f"echo @B$(({n}))@; {command}; echo @E$(({n}))@\n"


def framed(out: str, n: int) -> str:
    found = re.search(rf"@B{n}@\n(.*?)@E{n}@\n", out, re.S)
    assert found, f"no output framed @B{n}@..@E{n}@; the console ends with:\n{out[-3000:]}"
    return found.group(1)


class LiveChrono:
    """`chrono ARGS` with stdin kept open: type commands, wait for their output."""

    def __init__(self, args, cwd: Path, env: dict | None = None):
        self.proc = subprocess.Popen(CHRONO + [str(a) for a in args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                     env={**os.environ, **(env or {})})
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Condition()
        self._n = 0
        for stream, buf in ((self.proc.stdout, self._out), (self.proc.stderr, self._err)):
            threading.Thread(target=self._read, args=(stream, buf), daemon=True).start()

    def _read(self, stream, buf) -> None:
        while chunk := stream.read1(65536):
            with self._lock:
                buf += chunk
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    @property
    def out(self) -> str:
        with self._lock:
            return self._out.decode("utf-8", "replace").replace("\r\n", "\n")

    @property
    def err(self) -> str:
        with self._lock:
            return self._err.decode("utf-8", "replace")

    def type(self, text: str) -> None:
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait_for(self, needle: str, timeout: float = 300, start: int = 0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while needle not in self._out.decode("utf-8", "replace").replace("\r\n", "\n")[start:]:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {needle!r} from chrono within {timeout} s; it "
                                         f"printed:\n{self.out[-3000:]}\nstderr:\n{self.err}")
                self._lock.wait(min(left, 0.5))

    def command(self, command: str, timeout: float = 300) -> str:
        """Run a shell command in the guest; its output."""
        self._n += 1
        start = len(self.out)
        self.type(wrapped(self._n, command))
        self.wait_for(f"@E{self._n}@\n", timeout, start)
        return framed(self.out[start:], self._n)

    def save_change_load(self, name: str, change: str) -> None:
        """savevm NAME at the monitor, run `change` in the guest, loadvm NAME:
        the guest is back as saved (each step waited for)."""
        from tracehelp import MON
        self.type(f"{MON}savevm {name}\n{MON}")
        self.wait_for(f"saved {name}", timeout=120)
        self.command(change)
        start = len(self.out)
        self.type(f"{MON}loadvm {name}\n{MON}")
        self.wait_for(f"restored {name}", timeout=120, start=start)

    def finish(self, last: str = "poweroff\n", timeout: float = 120) -> int:
        self.type(last)
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
