"""The founding scenario on real Debian: Linux's page cache and ext4.

Files are written (still dirty in Linux's page cache), the machine is saved,
the disk moves on (more files, synced, the journal checkpointed as a shutdown
would), the snapshot is restored, and the guest writes and syncs again, then
powers off.  With RAM and disk restored together, `e2fsck -fn` on the host
calls the committed image clean and the files are exactly those of the saved
timeline.  The control restores RAM alone against the newer disk, as a
memory-only saved state would: the stale kernel writes its cached metadata
over the newer disk and e2fsck finds the file system broken.

Marked `network`: it needs the fetched Debian guest (tests/test_guest_debian.py).
"""
import shutil
import subprocess

import pytest
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures

from chrono.core.launch import launch
from chrono.core.machine import Stop
from chrono.guests import guest_spec
from chrono.store.capture import Snapshots
from chrono.store.store import Store
from storehelp import restore_ram_only

pytestmark = pytest.mark.network

EPOCH = 1_764_000_000 * 10**9
MARKER = b"chrono-debian: shell ready"


def run_until(machine, needle: bytes, typed: bytes = b"", budget: int = 20_000_000_000) -> bytes:
    """Type `typed` as the guest takes it and run (skipping idle time) until
    the console shows `needle`."""
    out = bytearray()
    start = machine.steps
    while needle not in out:
        assert machine.steps - start < budget, out[-2000:].decode(errors="replace")
        if typed and machine.console_ready():
            typed = typed[machine.console_write(typed):]
        machine.set_input_waiting(bool(typed))
        r = machine.run(50_000_000)
        out += machine.console_read()
        if r.reason == Stop.POWEROFF:
            break
        while r.reason == Stop.ENTROPY and (wanted := machine.entropy_wanted()):
            machine.entropy_write(bytes((97 * i + 13) & 0xFF for i in range(wanted)))   # virtio-rng
        if r.reason == Stop.IDLE and r.has_deadline and not typed:
            machine.skip_to(r.deadline)
    return bytes(out)


def shell(machine, command: str, n: int) -> str:
    # The marker is spelled so that the echoed command line never matches it.
    typed = f"{command}; echo @@$(({n}))@@\n".encode()
    return run_until(machine, f"@@{n}@@\r\n".encode(), typed).decode(errors="replace")


def e2fsck(image) -> subprocess.CompletedProcess:
    tool = shutil.which("e2fsck") or "/sbin/e2fsck"
    return subprocess.run([tool, "-fn", str(image)], capture_output=True, text=True)


def scenario(debian, tmp_path, restore) -> subprocess.CompletedProcess:
    image = tmp_path / "disk.img"
    shutil.copyfile(debian.path / debian.manifest.disk, image)
    spec = guest_spec("debian", root=debian.path.parent.parent, disk=image, rtc_epoch_ns=EPOCH)
    guest = launch(spec)
    m = guest.machine
    run_until(m, MARKER)
    store = Store.open(tmp_path / "store", create=True)
    snaps = Snapshots(store, guest)
    try:
        # /mnt/e is on disk (synced); /mnt/d and its files are dirty in the
        # page cache only.
        shell(m, "mkdir /mnt/e && echo e > /mnt/e/first && sync && mkdir /mnt/d && "
                 "for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /mnt/d/early$i; done", 1)
        snaps.save("before")
        # The disk moves on in metadata the saved page cache holds clean (the
        # directory /mnt/e, its inode table and bitmaps).  Remounting read-only
        # checkpoints ext4's journal, as shutting the guest down does; without
        # it the newer metadata would live only in the journal, which the stale
        # kernel overwrites whole.
        shell(m, "for i in 1 2 3 4 5 6 7 8; do seq 1 3000 > /mnt/e/f$i; done; sync; "
                 "mount -o remount,ro /mnt && mount -o remount,rw /mnt", 2)
        restore(snaps, "before")
        shell(m, "for i in 1 2 3 4 5 6 7 8; do seq 1 4000 > /mnt/d/after$i; done; "
                 "echo after > /mnt/after; sync", 3)
        run_until(m, b"Power down", b"poweroff\n")
    finally:
        snaps.close()
        store.close()
    guest.disk.commit()
    return e2fsck(image)


def listing(image, directory: str) -> list[str]:
    """Names in `directory` of an ext4 image, read on the host by debugfs."""
    tool = shutil.which("debugfs") or "/sbin/debugfs"
    out = subprocess.run([tool, "-R", f"ls -p {directory}", str(image)],
                         capture_output=True, text=True, check=True).stdout
    names = (line.strip("/").split("/")[4] for line in out.splitlines() if line.startswith("/"))
    return sorted(n for n in names if n not in (".", ".."))


def test_debian_loadvm_restores_disk_with_ram_and_ext4_stays_clean(debian, tmp_path):
    check = scenario(debian, tmp_path, lambda snaps, name: snaps.load(name))
    assert check.returncode == 0, check.stdout + check.stderr
    image = tmp_path / "disk.img"
    assert listing(image, "/d") == sorted([f"early{i}" for i in range(1, 9)] +
                                          [f"after{i}" for i in range(1, 9)])
    assert listing(image, "/e") == ["first"]        # the abandoned timeline's files are gone


def test_debian_control_restoring_ram_alone_against_the_newer_disk_breaks_ext4(debian, tmp_path):
    check = scenario(debian, tmp_path, restore_ram_only)
    assert check.returncode == 4, check.stdout + check.stderr       # errors left uncorrected
    assert "Filesystem still has errors" in check.stdout, check.stdout
