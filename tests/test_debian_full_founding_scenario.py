"""The founding scenario on the full Debian system: a busy systemd guest (journald
taking a stream of log lines, a dd writing) is saved, the disk moves on (files
written and synced, ext4's journal checkpointed by a freeze/thaw of the root file
system), the snapshot is restored, the guest writes again and powers off through
systemd.  With RAM and disk restored together, `e2fsck -fn` calls the root image
clean and the files are those of the saved timeline.  The control restores RAM
alone against the newer disk, as a memory-only saved state would, and breaks it.

Needs the built debian-full guest (see tests/test_debian_full.py); marked network.
"""
import dataclasses
import shutil
import subprocess

import pytest

from chrono.core.launch import launch
from chrono.guests.debian_full import READY_MARKER
from chrono.guests.guestrun import run_script, run_to_poweroff
from chrono.store.capture import Snapshots
from chrono.store.store import Store
from storehelp import restore_ram_only
from test_debian_full import full_guest  # noqa: F401 - fixture
from test_guest_debian import xdg_cache  # noqa: F401 - fixture

pytestmark = [pytest.mark.network, pytest.mark.slow]    # about 12 minutes

EPOCH = 1_764_000_000 * 10**9
STEPS = 500_000_000_000
POWEROFF_STEPS = 60_000_000_000
HOST_TOOLS = "/usr/sbin:/sbin:/usr/bin:/bin"

BUSY = ("(i=0; while :; do logger -t busy \"line $i\"; i=$((i+1)); done) >/dev/null 2>&1 & "
        "dd if=/dev/urandom of=/var/tmp/dd.out bs=64k count=4000 status=none & "
        "mkdir /root/e && echo e > /root/e/first && sync && mkdir /root/d && "
        "for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /root/d/early$i; done")
# The disk moves on in metadata the saved page cache holds clean; freezing the
# file system checkpoints ext4's journal (as a shutdown would): without that the
# newer metadata would live only in the journal.  One python process freezes and
# thaws, so nothing is read from the frozen disk in between.
MOVE_ON = ("for i in 1 2 3 4 5 6 7 8; do seq 1 3000 > /root/e/f$i; done; sync; "
           "python3 -c 'import fcntl, os; fd = os.open(\"/\", os.O_RDONLY); "
           "fcntl.ioctl(fd, 0xC0045877, 0); fcntl.ioctl(fd, 0xC0045878, 0)'")
AFTER = ("kill %1 %2 2>/dev/null; for i in 1 2 3 4 5 6 7 8; do seq 1 4000 > /root/d/after$i; "
         "done; echo after > /root/after; sync")


def command(n: int, text: str) -> tuple[bytes, str]:
    return f"{text}; echo @@$(({n}))@@\n".encode(), f"@@{n}@@\n"


def scenario(full_guest, tmp_path, restore) -> subprocess.CompletedProcess:
    _, folder, manifest = full_guest
    image = tmp_path / "root.img"
    subprocess.run(["cp", "--sparse=always", str(folder / manifest.disk), str(image)], check=True)
    spec = dataclasses.replace(manifest.spec(folder), disk=image, rtc_epoch_ns=EPOCH)
    guest = launch(spec, commit=True)
    busy, busy_done = command(1, BUSY)
    run_script(guest, [(READY_MARKER, busy), (busy_done, b"")], STEPS, settle=False)
    store = Store.open(tmp_path / "store", create=True)
    snaps = Snapshots(store, guest)
    try:
        snaps.save("before")                        # journald and dd still running
        moved, moved_done = command(2, MOVE_ON)
        run_script(guest, [("", moved), (moved_done, b"")], STEPS, settle=False)
        restore(snaps, "before")
        after, after_done = command(3, AFTER)
        run_script(guest, [("", after), (after_done, b"systemctl poweroff\n")], STEPS,
                   settle=False)
        # The control's stale kernel may never get there: its budget is smaller.
        run_to_poweroff(guest, lambda line: None, max_steps=POWEROFF_STEPS)
    finally:
        snaps.close()
        store.close()
    guest.disk.commit()
    return subprocess.run([shutil.which("e2fsck", path=HOST_TOOLS), "-fn", str(image)],
                          capture_output=True, text=True)


def listing(image, directory: str) -> list[str]:
    out = subprocess.run([shutil.which("debugfs", path=HOST_TOOLS), "-R", f"ls -p {directory}",
                          str(image)], capture_output=True, text=True, check=True).stdout
    names = (line.strip("/").split("/")[4] for line in out.splitlines() if line.startswith("/"))
    return sorted(n for n in names if n not in (".", ".."))


def test_full_system_loadvm_of_a_busy_guest_keeps_the_root_file_system_clean(full_guest,
                                                                             tmp_path):
    check = scenario(full_guest, tmp_path, lambda snaps, name: snaps.load(name))
    assert check.returncode == 0, check.stdout + check.stderr
    image = tmp_path / "root.img"
    assert listing(image, "/root/d") == sorted([f"early{i}" for i in range(1, 9)] +
                                               [f"after{i}" for i in range(1, 9)])
    assert listing(image, "/root/e") == ["first"]    # the abandoned timeline's files are gone


def test_full_system_control_restoring_ram_alone_breaks_the_root_file_system(full_guest,
                                                                             tmp_path):
    check = scenario(full_guest, tmp_path, restore_ram_only)
    assert check.returncode == 4, check.stdout + check.stderr       # errors left uncorrected
