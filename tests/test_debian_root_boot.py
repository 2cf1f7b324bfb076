"""The Debian guest's initramfs boots a root file system named on the kernel command
line: `chrono run debian --disk ROOT.img --append "console=ttyS0 root=/dev/vda rw"`
mounts the disk (read-only unless rw), and switch_root starts its /sbin/init (or
init=); a root that cannot be booted says why on a `chrono-debian:` line and leaves
the user at the busybox shell.

The root images are tiny ext4 file systems made here with mkfs.ext4 -d: the guest's
own busybox and an init script that prints what it sees and powers off.  Marked
`network` (the guest comes from the shared test cache).  Each boot takes a few
seconds.
"""
import gzip
import os
import subprocess
from pathlib import Path

import pytest

from chrono.guests.cpio import read_newc
from chrono.guests.ext4 import make_ext4
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures

pytestmark = pytest.mark.network

from chronocmd import CHRONO
BOOT_TIMEOUT = 180
READY = "chrono-debian: shell ready"

INIT = """#!/bin/busybox sh
/bin/busybox echo "tiny-root: $0 is pid $$ on $(/bin/busybox grep ' / ' /proc/mounts)"
/bin/busybox poweroff -f
"""


@pytest.fixture(scope="module")
def root_image(debian, tmp_path_factory):
    """An ext4 root (label tinyroot): busybox, /sbin/init and /bin/other-init."""
    work = tmp_path_factory.mktemp("tiny-root")
    tree = work / "tree"
    for d in ("bin", "sbin", "proc", "sys", "dev"):
        (tree / d).mkdir(parents=True)
    initrd = gzip.decompress((debian.path / debian.manifest.initrd).read_bytes())
    busybox = next(e["data"] for e in read_newc(initrd) if e["name"] == "bin/busybox")
    (tree / "bin" / "busybox").write_bytes(busybox)
    for path in ("sbin/init", "bin/other-init"):
        (tree / path).write_text(INIT)
    for path in ("bin/busybox", "sbin/init", "bin/other-init"):
        (tree / path).chmod(0o755)
    image = work / "root.img"
    make_ext4(image, 16 << 20, label="tinyroot", source=tree)
    return image


def boot(root_image, append: str, xdg_cache, script: str = "") -> str:
    proc = subprocess.run(CHRONO + ["run", "debian", "--disk", str(root_image), "--append", append],
                          input=script.encode(), capture_output=True, timeout=BOOT_TIMEOUT,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg_cache)})
    out = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    assert proc.returncode == 0, (out[-3000:], proc.stderr.decode())
    return out


def test_root_rw_switches_to_its_sbin_init_as_pid_1(root_image, xdg_cache):
    out = boot(root_image, "console=ttyS0 root=/dev/vda rw", xdg_cache)
    assert "chrono-debian: root=/dev/vda mounted rw on /newroot; switching to /sbin/init" in out
    assert "tiny-root: /sbin/init is pid 1 on /dev/vda / ext4 rw," in out, out[-3000:]
    assert READY not in out


def test_root_without_rw_is_mounted_read_only(root_image, xdg_cache):
    out = boot(root_image, "console=ttyS0 root=/dev/vda", xdg_cache)
    assert "tiny-root: /sbin/init is pid 1 on /dev/vda / ext4 ro," in out, out[-3000:]


def test_init_and_rootfstype_and_a_label_are_honoured(root_image, xdg_cache):
    out = boot(root_image, "console=ttyS0 root=LABEL=tinyroot rootfstype=ext4 rw "
                           "init=/bin/other-init", xdg_cache)
    assert "tiny-root: /bin/other-init is pid 1 on /dev/vda / ext4 rw," in out, out[-3000:]


@pytest.mark.parametrize("append, says", [
    ("root=/dev/vdb", "chrono-debian: root=/dev/vdb: no such block device"),
    ("root=/dev/vda init=/sbin/nothing-here", "chrono-debian: root=/dev/vda: no init "
                                              "/sbin/nothing-here on /dev/vda"),
    ("root=/dev/vda rootfstype=vfat", "chrono-debian: root=/dev/vda: could not mount /dev/vda "
                                      "as vfat (ro)"),
])
def test_a_root_that_cannot_boot_says_why_and_gives_the_shell(root_image, xdg_cache, append, says):
    out = boot(root_image, f"console=ttyS0 {append}", xdg_cache,
               script="echo @S$((6*7))@; ls /mnt/sbin\npoweroff\n")
    assert says in out, out[-3000:]
    assert out.index(says) < out.index(READY)
    assert "@S42@" in out and "tiny-root:" not in out
    assert "\ninit\n" in out            # the shell's disk on /mnt, as without root=
