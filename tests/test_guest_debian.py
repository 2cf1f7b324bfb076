"""The real Debian guest: `chrono guest fetch debian` against Debian's archive (about
115 MB, downloaded once into a cache shared by every test session), then booted
on QEMU as the outside reference, and loaded by chrono.

Marked `network`: `pytest -m 'not network'` leaves these out.  The cache lives in
$CHRONO_TEST_CACHE (default ~/.cache/chrono-tests)/xdg/chrono, so only the first
session downloads anything.
"""
import gzip
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chrono.guests import fetch_guest
from chrono.guests.cpio import read_newc
from chrono.guests.initramfs import READY_MARKER

pytestmark = pytest.mark.network

from chronocmd import CHRONO
BOOT_TIMEOUT = 120          # QEMU reaches the shell in a few seconds here


@pytest.fixture(scope="session")
def xdg_cache():
    base = Path(os.environ.get("CHRONO_TEST_CACHE") or Path.home() / ".cache" / "chrono-tests")
    return base / "xdg"


@pytest.fixture(scope="session")
def debian(xdg_cache):
    """The fetched guest (built on first use, then reused)."""
    return fetch_guest("debian", root=xdg_cache / "chrono")


def test_fetch_assembles_firmware_kernel_initramfs_and_disk(debian):
    m, folder = debian.manifest, debian.path
    kernel_pkg = next(p for p in m.packages if p.startswith("linux-image-"))
    assert set(m.packages) == {kernel_pkg, "busybox-static", "opensbi"}
    assert (folder / m.kernel).read_bytes()[56:60] == b"RSC\x05"          # RISC-V Image
    assert (folder / m.firmware).stat().st_size > 100_000
    assert m.append == "console=ttyS0 rdinit=/init" and m.ram == "256M"
    entries = {e["name"]: e for e in read_newc(gzip.decompress((folder / m.initrd).read_bytes()))}
    assert entries["bin/busybox"]["data"][:4] == b"\x7fELF"
    assert entries["dev/console"]["rdev"] == (5, 1)
    init = entries["init"]["data"].decode()
    assert "for m in virtio_mmio virtio_blk virtio_rng crc32c_generic jbd2 mbcache crc16 ext4 failover net_failover virtio_net; do" in init
    for name in ("virtio_mmio", "virtio_blk", "virtio_rng", "crc32c_generic", "jbd2", "mbcache",
                 "crc16", "ext4", "failover", "net_failover", "virtio_net"):
        assert entries[f"lib/modules/{name}.ko"]["data"][:4] == b"\x7fELF"
    if shutil.which("e2fsck", path=os.environ["PATH"] + ":/usr/sbin:/sbin"):
        check = subprocess.run(["e2fsck", "-fn", folder / m.disk], capture_output=True,
                               env={"PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"})
        assert check.returncode == 0, check.stdout


def test_second_fetch_through_the_cli_reuses_the_guest(debian, xdg_cache):
    start = time.monotonic()
    proc = subprocess.run(CHRONO + ["guest", "fetch", "debian"], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg_cache)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"guest debian is already cached in {debian.path}" in proc.stdout
    assert time.monotonic() - start < 10


def test_chrono_loads_the_guest_by_name(debian, xdg_cache):
    """chrono boots OpenSBI from the guest's files (the kernel needs the FPU beyond that)."""
    proc = subprocess.run(CHRONO + ["run", "debian", "--max-insns", "30000000"], input="",
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg_cache)})
    assert proc.returncode == 124, proc.stderr
    assert "OpenSBI" in proc.stdout


# --- QEMU as the outside reference -------------------------------------------------

class QemuConsole:
    """qemu-system-riscv64 with the guest's console on pipes; `devices` are the
    -device options (and what they need) around the disk's drive d0 (default:
    the disk on virtio-mmio, as chrono's default board)."""

    def __init__(self, folder: Path, manifest, disk: Path, devices: list[str] | None = None):
        qemu = shutil.which("qemu-system-riscv64")
        if qemu is None:
            pytest.skip("qemu-system-riscv64 not installed (Debian: qemu-system-misc)")
        self.proc = subprocess.Popen(
            [qemu, "-M", "virt", "-m", manifest.ram, "-nographic",
             "-bios", folder / manifest.firmware, "-kernel", folder / manifest.kernel,
             "-initrd", folder / manifest.initrd, "-append", manifest.append,
             "-global", "virtio-mmio.force-legacy=false",
             "-drive", f"file={disk},format=raw,if=none,id=d0",
             *(devices or ["-device", "virtio-blk-device,drive=d0"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.started = time.monotonic()
        self.output = b""
        self._commands = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while chunk := self.proc.stdout.read1(4096):
            with self._lock:
                self.output += chunk

    def text(self) -> str:
        with self._lock:
            return self.output.decode("utf-8", "replace").replace("\r\n", "\n")

    def expect(self, needle: str, after: int = 0, timeout: float = 30) -> int:
        """Wait until ``needle`` shows up past offset ``after``; its end offset."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.text().find(needle, after)
            if found >= 0:
                return found + len(needle)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {needle!r} from the guest; its console ends with:\n{self.text()[-1500:]}")

    def run(self, command: str, timeout: float = 30) -> str:
        """Type ``command``; its output.  The markers around it are arithmetic, so the
        echo of the typed line (however the line editor wraps it) never matches."""
        self._commands += 1
        n = self._commands
        start = len(self.text())
        self.proc.stdin.write(f"echo @B$(({n}))@; {command}; echo @E$(({n}))@\n".encode())
        self.proc.stdin.flush()
        begin = self.expect(f"@B{n}@\n", start, timeout)
        end = self.expect(f"@E{n}@\n", begin, timeout)
        return self.text()[begin:end - len(f"@E{n}@\n")]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


PI_AWK = ("busybox awk 'function at(x,  s, t, k) { s = 0; t = x; "
          "for (k = 1; k < 40; k += 2) { s += t / k; t *= -x * x }; return s } "
          "BEGIN { printf \"%.6f\\n\", 16 * at(1/5) - 4 * at(1/239) }'")


def test_guest_boots_on_qemu_to_a_shell_with_the_ext4_disk(debian, tmp_path):
    m = debian.manifest
    disk = tmp_path / "disk.img"
    shutil.copyfile(debian.path / m.disk, disk)
    qemu = QemuConsole(debian.path, m, disk)
    try:
        qemu.expect(READY_MARKER + "\n", timeout=BOOT_TIMEOUT)
        boot_seconds = time.monotonic() - qemu.started
        print(f"QEMU: boot to {READY_MARKER!r} in {boot_seconds:.1f} s")
        qemu.expect("# ")

        assert qemu.run("uname -m").strip() == "riscv64"
        assert "/dev/vda on /mnt type ext4 (rw" in qemu.run("mount")
        assert qemu.run(PI_AWK).strip() == "3.141593"          # floating point in busybox awk
        start = time.monotonic()
        assert qemu.run("sleep 1 && echo slept").strip() == "slept"
        assert time.monotonic() - start >= 0.9
        qemu.run("echo written-in-the-guest > /mnt/proof.txt && sync")
        qemu.proc.stdin.write(b"poweroff\n")
        qemu.proc.stdin.flush()
        assert qemu.proc.wait(timeout=60) == 0
    finally:
        qemu.close()

    env = {"PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}
    fsck = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, text=True, env=env)
    assert fsck.returncode == 0, fsck.stdout
    cat = subprocess.run(["debugfs", "-R", "cat /proof.txt", disk], capture_output=True,
                         text=True, env=env)
    assert cat.stdout == "written-in-the-guest\n"
