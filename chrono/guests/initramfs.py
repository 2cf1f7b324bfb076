"""The Debian guest's initramfs: busybox, a few kernel modules and an /init script
that loads them (the virtio disk, entropy and network drivers), mounts the
virtio disk, brings the network up by DHCP when there is one (`--net user`) and
leaves the user at a shell.

Layout of the (gzip-compressed newc) archive:

    /init                     busybox sh script below
    /etc/shrc                 the shell's startup file ($ENV): a clean poweroff/reboot
    /etc/udhcpc/default.script
                              what busybox udhcpc runs with a lease (Debian's busybox
                              looks there): address, route, /etc/resolv.conf
    /bin/busybox              static riscv64 busybox; /init links the applets at boot
    /lib/modules/NAME.ko      uncompressed modules, loaded by /init in list order
    /dev/console              char device 5,1: the kernel opens it as init's stdio
    /proc /sys /dev /mnt /tmp mount points
"""
from __future__ import annotations

import gzip
from typing import Sequence

from chrono.guests.cpio import CpioWriter

READY_MARKER = "chrono-debian: shell ready"
MODULES_DIR = "/lib/modules"
DISK_DEVICE = "/dev/vda"
MOUNT_POINT = "/mnt"

_INIT = """\
#!/bin/busybox sh
# chrono's Debian guest: load the virtio modules, mount the disk, give a shell.
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root ENV=/etc/shrc
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
    insmod {modules_dir}/$m.ko || echo "chrono-debian: could not load module $m"
done
# virtio_blk registers the disk as it probes; give the node a moment to appear.
n=0
while [ ! -b {disk} ] && [ $n -lt 20 ]; do sleep 0.1 2>/dev/null || sleep 1; n=$((n+1)); done
if [ ! -b {disk} ]; then
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
                        mnt=MOUNT_POINT, marker=READY_MARKER)


def build_initramfs(busybox: bytes, modules: Sequence[tuple[str, bytes]]) -> bytes:
    """A gzip-compressed newc archive; ``modules`` are (name, uncompressed ELF) pairs
    in load order.  The same inputs always give the same bytes."""
    cpio = CpioWriter()
    for d in ("/bin", "/dev", "/proc", "/sys", "/mnt", "/tmp", "/root", MODULES_DIR):
        cpio.add_dir(d, 0o1777 if d == "/tmp" else 0o755)
    cpio.add_char_device("/dev/console", 5, 1)
    cpio.add_file("/init", init_script([name for name, _ in modules]).encode(), 0o755)
    cpio.add_file("/etc/shrc", _SHRC.format(mnt=MOUNT_POINT).encode(), 0o644)
    cpio.add_file(UDHCPC_SCRIPT_PATH, _UDHCPC_SCRIPT.encode(), 0o755)
    cpio.add_file("/bin/busybox", busybox, 0o755)
    for name, elf in modules:
        cpio.add_file(f"{MODULES_DIR}/{name}.ko", elf, 0o644)
    return gzip.compress(cpio.getvalue(), compresslevel=6, mtime=0)
