"""The Debian guest's initramfs: busybox, a few kernel modules and an /init script
that loads them (the virtio disk, entropy and network drivers), then either boots a
root file system (whose own init brings up its network) or leaves the user at a shell
with the virtio disk on /mnt and, when there is a network device (`--net user`), eth0
up by DHCP.

The kernel command line decides, as for a distribution's initramfs:

    root=DEV         mount DEV (/dev/vda, or LABEL=.. / UUID=.. through findfs) on
                     /newroot and `exec switch_root /newroot INIT`
    rootfstype=FS    its file system type (default: whatever mount detects)
    ro / rw          mount it read-only (the default) or read-write
    init=PATH        the program to start there (default /sbin/init)

Without root= it is the busybox shell.  A root that cannot be booted (no such device,
a mount failure, no init) prints a `chrono-debian:` line saying so and falls back to
the shell.

Layout of the (gzip-compressed newc) archive:

    /init                     busybox sh script below
    /etc/shrc                 the shell's startup file ($ENV): a clean poweroff/reboot
    /etc/udhcpc/default.script
                              what busybox udhcpc runs with a lease (Debian's busybox
                              looks there): address, route, /etc/resolv.conf
    /bin/busybox              static riscv64 busybox; /init links the applets at boot
    /lib/modules/NAME.ko      uncompressed modules, loaded by /init in list order
    /dev/console              char device 5,1: the kernel opens it as init's stdio
    /proc /sys /dev /mnt /tmp /newroot   mount points
"""
from __future__ import annotations

import gzip
from typing import Sequence

from chrono.guests.cpio import CpioWriter

READY_MARKER = "chrono-debian: shell ready"
MODULES_DIR = "/lib/modules"
DISK_DEVICE = "/dev/vda"
MOUNT_POINT = "/mnt"
NEW_ROOT = "/newroot"
DEFAULT_INIT = "/sbin/init"

_INIT = """\
#!/bin/busybox sh
# chrono's Debian guest: load the virtio modules, then boot root= or give a shell.
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root ENV=/etc/shrc
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod {modules_dir}/$m.ko || echo "chrono-debian: could not load module $m"
done
# The kernel command line: root=, rootfstype=, ro/rw, init= (the kernel keeps
# root= and init= for itself, so they are read back from /proc/cmdline).
root= rootfstype= rootmode=ro init=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        root=*) root="${{arg#root=}}" ;;
        rootfstype=*) rootfstype="${{arg#rootfstype=}}" ;;
        ro|rw) rootmode=$arg ;;
        init=*) init="${{arg#init=}}" ;;
    esac
done
init="${{init:-{default_init}}}"
# wait_block DEV TENTHS: virtio_blk registers the disk as it probes.
wait_block() {{
    n=0
    while [ ! -b "$1" ] && [ $n -lt $2 ]; do sleep 0.1 2>/dev/null || sleep 1; n=$((n+1)); done
    [ -b "$1" ]
}}
# has_init PATH: PATH exists in {newroot}, following symbolic links inside it
# (/sbin/init -> /lib/systemd/systemd must not be resolved against the initramfs).
has_init() {{
    p="$1" hops=0
    while [ -L "{newroot}$p" ] && [ $hops -lt 16 ]; do
        l="$(readlink "{newroot}$p")"
        case "$l" in /*) p="$l" ;; *) p="${{p%/*}}/$l" ;; esac
        hops=$((hops+1))
    done
    [ -f "{newroot}$p" ] && [ -x "{newroot}$p" ]
}}
if [ -n "$root" ]; then
    device="$root"
    case "$root" in LABEL=*|UUID=*) wait_block {disk} 50; device="$(findfs "$root" 2>/dev/null)" ;; esac
    if [ -z "$device" ] || ! wait_block "$device" 50; then
        echo "chrono-debian: root=$root: no such block device; check --disk and root= (a shell follows)"
    elif ! mount ${{rootfstype:+-t "$rootfstype"}} -o "$rootmode" "$device" {newroot}; then
        echo "chrono-debian: root=$root: could not mount $device${{rootfstype:+ as $rootfstype}} ($rootmode); a shell follows"
    elif ! has_init "$init"; then
        echo "chrono-debian: root=$root: no init $init on $device; a shell follows"
        umount {newroot}
    else
        echo "chrono-debian: root=$root mounted $rootmode on {newroot}; switching to $init"
        for fs in dev proc sys; do
            if [ -d "{newroot}/$fs" ] && [ ! -L "{newroot}/$fs" ]; then
                mount --move "/$fs" "{newroot}/$fs"
            else
                umount "/$fs"
            fi
        done
        exec switch_root {newroot} "$init"
    fi
fi
if ! wait_block {disk} 20; then
    echo "chrono-debian: no disk ({disk}); {mnt} is empty"
elif mount -t ext4 {disk} {mnt}; then
    echo "chrono-debian: {disk} mounted on {mnt} (ext4)"
else
    echo "chrono-debian: could not mount {disk} on {mnt}"
fi
# A network device (chrono --net user): eth0 by DHCP (the script sets it up).
if [ -e /sys/class/net/eth0 ]; then
    ip link set lo up
    udhcpc -i eth0 -q -n -t 5 -T 1 || echo "chrono-debian: no DHCP lease on eth0"
fi
echo "chrono-debian: 'poweroff' syncs, unmounts {mnt} and powers off"
echo "{marker}"
exec setsid cttyhack sh
"""

# The shell is PID 1: there is no init for a plain `poweroff` to signal, and
# `poweroff -f` alone would leave the file system uncleanly mounted.  These
# functions (read by every interactive shell through $ENV) make both spellings
# flush and unmount the disk first.
_SHRC = """\
# chrono's Debian guest: shell start-up file
poweroff() {{ sync; umount {mnt} 2>/dev/null; /bin/busybox poweroff -f; }}
reboot() {{ sync; umount {mnt} 2>/dev/null; /bin/busybox reboot -f; }}
"""


# busybox udhcpc's default script (where Debian's busybox is built to look): it
# is called with the lease in its environment (ip, subnet, router, dns,
# interface) and configures the interface.
UDHCPC_SCRIPT_PATH = "/etc/udhcpc/default.script"
_UDHCPC_SCRIPT = """\
#!/bin/busybox sh
# chrono's Debian guest: udhcpc hands its lease to this script.
case "$1" in
deconfig)
    ifconfig "$interface" 0.0.0.0 up
    ;;
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
    while route del default dev "$interface" 2>/dev/null; do :; done
    for r in $router; do route add default gw "$r" dev "$interface"; break; done
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "chrono-debian: $interface has address $ip (DHCP)"
    ;;
esac
"""


def init_script(modules: Sequence[str]) -> str:
    """The /init script, loading ``modules`` (names) in the given order."""
    return _INIT.format(modules=" ".join(modules), modules_dir=MODULES_DIR, disk=DISK_DEVICE,
                        mnt=MOUNT_POINT, newroot=NEW_ROOT, default_init=DEFAULT_INIT,
                        marker=READY_MARKER)


def build_initramfs(busybox: bytes, modules: Sequence[tuple[str, bytes]]) -> bytes:
    """A gzip-compressed newc archive; ``modules`` are (name, uncompressed ELF) pairs
    in load order.  The same inputs always give the same bytes."""
    cpio = CpioWriter()
    for d in ("/bin", "/dev", "/proc", "/sys", "/mnt", NEW_ROOT, "/tmp", "/root", MODULES_DIR):
        cpio.add_dir(d, 0o1777 if d == "/tmp" else 0o755)
    cpio.add_char_device("/dev/console", 5, 1)
    cpio.add_file("/init", init_script([name for name, _ in modules]).encode(), 0o755)
    cpio.add_file("/etc/shrc", _SHRC.format(mnt=MOUNT_POINT).encode(), 0o644)
    cpio.add_file(UDHCPC_SCRIPT_PATH, _UDHCPC_SCRIPT.encode(), 0o755)
    cpio.add_file("/bin/busybox", busybox, 0o755)
    for name, elf in modules:
        cpio.add_file(f"{MODULES_DIR}/{name}.ko", elf, 0o644)
    return gzip.compress(cpio.getvalue(), compresslevel=6, mtime=0)
