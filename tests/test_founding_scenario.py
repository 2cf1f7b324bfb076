"""The scenario chrono exists for, on the demo guest.

Files are written (still dirty in the guest's block cache), the machine is
saved, more files are written and synced, the snapshot is restored, and the
guest writes and syncs again.  Restoring RAM and disk together (savevm /
loadvm) leaves a clean file system.  The control restores RAM alone against
the newer disk, as a memory-only saved state would, and the guest's own fsck
finds the file system broken: the test can fail, and this shows how.
"""
import subprocess
import sys

from chrono.core.launch import GuestSpec, launch
from chrono.core.machine import Stop
from chrono.store.capture import Snapshots
from chrono.store.store import Store
from storehelp import restore_ram_only
from chronocmd import CHRONO

EPOCH = 1_764_000_000 * 10**9
MONITOR = b"\x01c"


def blank_image(tmp_path, size=4 << 20):
    image = tmp_path / "demo.img"
    image.write_bytes(bytes(size))
    return image


def chrono_run(tmp_path, script: bytes, *args):
    return subprocess.run([*CHRONO, "run", *args],
                          input=script, capture_output=True, timeout=120, cwd=tmp_path)


def test_savevm_loadvm_keeps_ram_and_disk_consistent_through_the_cli(tmp_path):
    image = blank_image(tmp_path)
    script = (b"write a one\nwrite b two\n"              # in the guest's cache, not on disk
              + MONITOR + b"savevm before\n" + MONITOR
              + b"write c three\nsync\n"                  # the disk moves on
              + MONITOR + b"loadvm before\n" + MONITOR
              + b"write d four\nsync\nls\nfsck\npoweroff\n")
    proc = chrono_run(tmp_path, script, "--disk", str(image), "--store", str(tmp_path / "store"))
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, (out[-3000:], proc.stderr)
    assert "saved before" in out and "restored before" in out
    listing = out[out.rindex("demo> ls"):]
    assert " a\r\n" in listing and " b\r\n" in listing and " d\r\n" in listing
    assert " c\r\n" not in listing                      # written after the snapshot
    assert "CLEAN" in out[out.rindex("demo> fsck"):]


def settle(machine):
    """Run until the guest waits for input (its cache flush timer may be pending)."""
    while True:
        r = machine.run(5_000_000)
        machine.console_read()
        if r.reason == Stop.IDLE:
            return


def type_line(machine, line: str) -> str:
    machine.console_write(line.encode() + b"\r")
    out = bytearray()
    while True:
        r = machine.run(5_000_000)
        out += machine.console_read()
        if r.reason == Stop.IDLE and out.endswith(b"demo> "):
            return out.decode(errors="replace")


def scenario(tmp_path, restore) -> str:
    image = blank_image(tmp_path)
    guest = launch(GuestSpec(disk=image, rtc_epoch_ns=EPOCH))
    m = guest.machine
    settle(m)
    store = Store.open(tmp_path / "store", create=True)
    snaps = Snapshots(store, guest)
    try:
        type_line(m, "write a one")
        type_line(m, "write b two")
        snaps.save("before")
        type_line(m, "write c three")
        type_line(m, "write e five")
        type_line(m, "sync")
        restore(snaps, "before")
        type_line(m, "write d four")
        type_line(m, "sync")
        return type_line(m, "fsck")
    finally:
        snaps.close()
        store.close()


def test_loadvm_restores_disk_with_ram(tmp_path):
    out = scenario(tmp_path, lambda snaps, name: snaps.load(name))
    assert "CLEAN" in out, out


def test_control_restoring_ram_alone_against_the_newer_disk_corrupts_the_file_system(tmp_path):
    out = scenario(tmp_path, restore_ram_only)
    assert "CLEAN" not in out, out
    assert "error" in out.lower() or "free" in out.lower(), out
