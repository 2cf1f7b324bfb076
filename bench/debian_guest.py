"""The Debian guest on chrono (in-process) and on QEMU, driven the same way:
boot to the shell marker, type commands, wait for their output.

Shared by bench_debian_boot.py and bench_snapshots.py.  Both machines get the
same OpenSBI, kernel, initrd, command line, RAM size and disk contents.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from chrono.core.launch import launch
from chrono.core.machine import Stop
from chrono.guests import guest_spec

SLICE = 20_000_000              # steps per Machine.run call (~20 ms of guest time)
PROMPT = "/ # "


def guest_files(root: Path | None = None):
    """The cached Debian guest's GuestSpec (chrono's cache, or XDG root `root`)."""
    try:
        return guest_spec("debian", root=root)
    except Exception as e:      # noqa: BLE001 - one line for the user
        sys.exit(f"{e}\n(fetch it with `chrono guest fetch debian`)")


def marker(root: Path | None = None) -> str:
    from chrono.guests.cache import cache_root, guests_dir
    from chrono.guests.manifest import GuestManifest
    folder = guests_dir(root or cache_root()) / "debian"
    return GuestManifest.load(folder).ready_marker


def frame(n: int, command: str) -> tuple[bytes, str]:
    """A command line whose output is framed by markers its typed echo cannot
    match: (bytes to type, the text that ends its output)."""
    return (f"echo @B$(({n}))@; {command}; echo @E$(({n}))@\n".encode(), f"@E{n}@\n")


def framed_command(console, n: int, command: str, **expect) -> str:
    """Type a framed command on `console` (text(), type(), expect(needle, start, ...))
    and wait until its output is complete; the output."""
    data, end = frame(n, command)
    start = len(console.text())
    console.type(data)
    stop = console.expect(end, start, **expect)
    text = console.text()[start:stop]
    found = re.search(rf"@B{n}@\n(.*)@E{n}@\n", text, re.S)
    return found.group(1) if found else text


class ChronoDebian:
    """The guest on chrono's Machine, unpaced: idle time jumps to the next deadline."""

    def __init__(self, spec, guest=None):
        self.started = time.perf_counter()
        self.guest = guest if guest is not None else launch(spec)
        self.machine = self.guest.machine
        self.output = bytearray()
        self.pending = bytearray()
        self.entropy_counter = 0

    def text(self, start: int = 0) -> str:
        """Console output so far (CRLF as LF); offsets are into this text."""
        return self.output.decode("utf-8", "replace").replace("\r\n", "\n")[start:]

    def type(self, data: bytes) -> None:
        self.pending += data

    def _feed(self) -> None:
        m = self.machine
        while self.pending and m.console_ready():
            taken = m.console_write(bytes(self.pending[:64]))
            del self.pending[:taken]
            if taken == 0:
                break
        m.set_input_waiting(bool(self.pending))

    def _entropy(self, wanted: int) -> None:
        """Answer the guest's virtio-rng requests with a fixed pseudo-random
        stream (`chrono run` gives host randomness): every run boots alike."""
        m = self.machine
        while wanted:
            stream = b""
            while len(stream) < wanted:
                self.entropy_counter += 1
                stream += hashlib.sha256(b"chrono-bench-entropy %d" % self.entropy_counter).digest()
            if m.entropy_write(stream[:wanted]) == 0:
                break
            wanted = m.entropy_wanted()

    def step(self):
        """One slice; returns the RunResult (after handling idle and the console)."""
        m = self.machine
        self._feed()
        r = m.run(SLICE)
        self.output += m.console_read()
        returned = m.console_returned()
        if returned:
            self.pending[:0] = returned
        if r.reason == Stop.IDLE and not self.pending:
            if not r.has_deadline:
                raise RuntimeError("the guest waits for input and none is queued:\n"
                                   + self.text()[-1500:])
            m.skip_to(r.deadline)
        elif r.reason == Stop.ENTROPY:
            self._entropy(r.code)
        elif r.reason not in (Stop.BUDGET, Stop.IDLE, Stop.INPUT, Stop.OUTPUT):
            raise RuntimeError(f"the guest stopped ({r.reason.name}):\n" + self.text()[-1500:])
        return r

    def expect(self, needle: str, start: int = 0, max_steps: int = 200_000_000_000) -> int:
        """Run until `needle` is in the output past byte offset `start`; its end offset."""
        limit = self.machine.steps + max_steps
        while True:
            found = self.text().find(needle, start)
            if found >= 0:
                return found + len(needle)
            if self.machine.steps > limit:
                raise RuntimeError(f"no {needle!r} within {max_steps} steps:\n" + self.text()[-1500:])
            self.step()

    def settle(self) -> None:
        """Run until the guest has taken all typed input and waits (WFI)."""
        while True:
            r = self.step()
            if r.reason == Stop.IDLE and not self.pending:
                return

    def idle(self, seconds: float) -> None:
        """Let the guest sit at its prompt for `seconds` of its own time."""
        m = self.machine
        until = m.vclock + int(seconds * m.timebase_hz * m.steps_per_tick)   # step units
        while m.vclock < until:
            self.step()

    def run_command(self, n: int, command: str) -> str:
        """Type a framed command and run until its output is complete; the output."""
        return framed_command(self, n, command)


class QemuDebian:
    """qemu-system-riscv64 with the guest's console on pipes and (optionally) its
    human monitor on a unix socket."""

    def __init__(self, spec, disk: Path, disk_format: str = "raw", monitor: Path | None = None,
                 extra: list[str] = (), drives: list[str] | None = None):
        """`drives` replaces the default -drive/-device pair (e.g. for blkreplay)."""
        qemu = shutil.which("qemu-system-riscv64")
        if qemu is None:
            raise FileNotFoundError("qemu-system-riscv64 not found (apt-get install qemu-system-misc)")
        cmd = [qemu, "-M", "virt", "-m", f"{spec.ram_size >> 20}M", "-nographic",
               "-bios", str(spec.bios), "-kernel", str(spec.kernel),
               "-initrd", str(spec.initrd), "-append", spec.append,
               "-global", "virtio-mmio.force-legacy=false"]
        cmd += drives if drives is not None else [
            "-drive", f"file={disk},format={disk_format},if=none,id=d0",
            "-device", "virtio-blk-device,drive=d0"]
        if monitor is not None:
            cmd += ["-monitor", f"unix:{monitor},server,nowait"]
        cmd += list(extra)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.output = b""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        threading.Thread(target=self._read, daemon=True).start()
        self._monitor_path = monitor
        self._mon: socket.socket | None = None

    def _read(self):
        while chunk := self.proc.stdout.read1(4096):
            with self._arrived:
                self.output += chunk
                self._arrived.notify_all()
        with self._arrived:
            self._arrived.notify_all()

    def text(self, start: int = 0) -> str:
        """Console output so far (CRLF as LF); offsets are into this text."""
        with self._lock:
            return self.output.decode("utf-8", "replace").replace("\r\n", "\n")[start:]

    def type(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def expect(self, needle: str, start: int = 0, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                text = self.output.decode("utf-8", "replace").replace("\r\n", "\n")
                found = text.find(needle, start)
                if found >= 0:
                    return found + len(needle)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"QEMU: no {needle!r}:\n" + text[-1500:])
                self._arrived.wait(min(left, 0.5))

    def run_command(self, n: int, command: str, timeout: float = 120) -> str:
        return framed_command(self, n, command, timeout=timeout)

    # ---- the human monitor ---------------------------------------------------------
    def monitor(self, command: str, timeout: float = 300) -> str:
        """Run a monitor command and wait for the next `(qemu) ` prompt; its output."""
        if self._mon is None:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self._mon = socket.socket(socket.AF_UNIX)
                    self._mon.connect(str(self._monitor_path))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._mon_read(timeout)                   # banner and first prompt
        self._mon.sendall(command.encode() + b"\n")
        return self._mon_read(timeout)

    def _mon_read(self, timeout: float) -> str:
        self._mon.settimeout(timeout)
        data = b""
        while not data.endswith(b"(qemu) "):
            chunk = self._mon.recv(65536)
            if not chunk:
                break
            data += chunk
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", data.decode("utf-8", "replace"))
        return text.replace("\r", "")

    def close(self) -> None:
        if self._mon is not None:
            self._mon.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()


def copy_disk(spec, folder: Path) -> Path:
    disk = Path(folder) / "disk.img"
    shutil.copyfile(spec.disk, disk)
    return disk

