"""The full Debian guest: Debian 13 (trixie) riscv64 with systemd on an ext4 root
disk, booted by the Debian guest's firmware, kernel and busybox initramfs
(root=/dev/vda rw), logged in as root on the serial console without a password.

    fw_jump.bin, Image, initrd.cpio.gz   as in the debian guest (chrono.guests.debian)
    root.img                             the root file system (4 GiB sparse, --size)
    second-stage.log                     the console of the guest's configuration run
    store/                               a snapshot store holding `booted`: the guest
                                         at its root shell, systemd done starting
    guest.json                           the manifest

How it is made:

1. debootstrap --foreign (on the host, as root) unpacks Debian's minbase variant
   plus PACKAGES into a folder; the kernel's modules are copied in; SETUP (below)
   becomes /chrono-setup; mkfs.ext4 -d turns the folder into root.img.
2. The second stage runs inside chrono: the guest boots with
   `root=/dev/vda rw init=/chrono-setup`, which runs
   `debootstrap --second-stage` (dpkg configures every package), configures the
   system (hostname, fstab, networkd, autologin, module index) and powers off.
   Its console lines ("I: Configuring X...") drive the progress bar.

What makes the second stage quicker without skipping any package's configuration:
minbase instead of the default variant (no priority-important packages nobody
asked for), the extra packages configured in the same stage (--include), dpkg's
force-unsafe-io while building (no fsync per file: a crash in the build throws
the image away anyway; removed at the end), and no manual pages or documentation
unpacked (dpkg path-exclude, kept in the image, as Debian's container images
do; copyright files stay), so no man-db work either.

The kernel is not a package in the image (chrono boots its own Image): its modules
are copied into /usr/lib/modules/RELEASE and indexed by the host's depmod (the
guest's, when the host has none), so udev loads what the devices need (virtio_net,
say).
"""
from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from chrono.errors import GuestFetchError
from chrono.guests import debian, debootstrap
from chrono.guests.apt import PrivateApt
from chrono.guests.ext4 import make_ext4, mkfs_ext4
from chrono.guests.manifest import GuestManifest
from chrono.guests.progress import ProgressEvent, ProgressFn
from chrono.guests.tools import OWN_FILES, find_tool, run_tool
from chrono.units import parse_size

NAME = "debian-full"
DESCRIPTION = ("Debian 13 (trixie) riscv64 with systemd on an ext4 root disk, "
               "root autologin on ttyS0")
SUITE, ARCH = debian.SUITE, debian.ARCH
VARIANT = "minbase"
# What the issue asks for, plus what makes it a working system: kmod (modprobe,
# depmod), dbus (systemd-logind needs the system bus), systemd-resolved (DNS
# from networkd's DHCP lease into /etc/resolv.conf), netbase (/etc/services).
PACKAGES = ("systemd-sysv", "udev", "dbus", "kmod", "openssh-server", "iproute2",
            "systemd-resolved", "netbase", "python3-minimal", "ca-certificates", "e2fsprogs",
            "procps", "apt")
# Bump when what build() makes changes.
RECIPE_VERSION = 1

HOSTNAME = "chrono"
DISK_SIZE = 4 << 30
RAM = "1G"
APPEND = "console=ttyS0 root=/dev/vda rw"
SETUP_PATH = "/chrono-setup"
SETUP_APPEND = f"{APPEND} init={SETUP_PATH}"     # the second stage's command line
CONSOLE_LOG = "second-stage.log"        # the second stage's console, kept in the guest folder
# The shell prompt root's autologin ends at (bash's default PS1 on Debian).
READY_MARKER = f"root@{HOSTNAME}:~# "
DONE = "chrono-setup: done"
PANIC = "Kernel panic - not syncing"
STORE = "store"                 # the guest's own snapshot store (catalog.GUEST_STORE), holding BOOTED
BOOTED = "booted"
BOOT_STEPS = 500_000_000_000    # far more than the boot takes (about 4e10)
FAILED = "chrono-setup: failed"
# The second stage's instruction budget: far above what it needs (about 1e12),
# a guest that hangs ends with an error instead of running forever.
SECOND_STAGE_STEPS = 20_000_000_000_000

_DPKG_UNSAFE_IO = "/etc/dpkg/dpkg.cfg.d/chrono-build-unsafe-io"
_DPKG_EXCLUDES = "/etc/dpkg/dpkg.cfg.d/chrono-no-docs"

# dpkg options files written before the second stage (see the module docstring).
DPKG_UNSAFE_IO = "# chrono's guest build only (removed when it ends): no fsync per file\nforce-unsafe-io\n"
DPKG_EXCLUDES = """\
# chrono's debian-full guest: no manual pages or documentation (copyright files stay)
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
"""

# /chrono-setup: run as init by the kernel (PID 1, stdio on the console).
SETUP = """\
#!/bin/sh
# chrono's debian-full guest build: the second stage of debootstrap, then the
# system's configuration; powers off either way.  Lines starting with
# "chrono-setup:" are read by the host.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root
say() {{ echo "chrono-setup: $*"; }}
mounts() {{
    [ -e /proc/self ] || mount -t proc proc /proc
    [ -e /sys/kernel ] || mount -t sysfs sysfs /sys
}}
# PID 1 must never exit (the kernel would panic): power off, or wait for ever.
off() {{
    mounts
    sync
    mount -o remount,ro / 2>/dev/null
    echo o > /proc/sysrq-trigger
    while :; do sleep 3600; done
}}
fail() {{
    say "failed: $*"
    [ -f /debootstrap/debootstrap.log ] && tail -n 30 /debootstrap/debootstrap.log | sed 's/^/chrono-setup: log: /'
    off
}}
mounts
say "second stage starting"
/debootstrap/debootstrap --second-stage || fail "debootstrap --second-stage"
mounts                  # debootstrap unmounts /proc and /sys as it ends
say "configuring the system"
echo {hostname} > /etc/hostname
printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t{hostname}\\n::1\\t\\tlocalhost ip6-localhost ip6-loopback\\n' > /etc/hosts
printf '# <file system> <mount point> <type> <options> <dump> <pass>\\n/dev/vda / ext4 rw,errors=remount-ro 0 1\\n' > /etc/fstab
mkdir -p /etc/systemd/network /etc/systemd/system/serial-getty@ttyS0.service.d
printf '[Match]\\nName=en* eth*\\n\\n[Network]\\nDHCP=yes\\n' > /etc/systemd/network/20-wired.network
printf '[Service]\\nExecStart=\\nExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %%I $TERM\\n' \\
    > /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf
systemctl enable systemd-networkd.service systemd-resolved.service || fail "systemctl enable"
[ -s /usr/lib/modules/{release}/modules.dep ] || depmod -a {release} || fail "depmod {release}"
apt-get clean
rm -f {unsafe_io} {setup}
say "system configured"
say "done"
off
"""


def build(out: Path, scratch: Path, apt_root: Path, mirror: str | None, progress: ProgressFn,
          size: int | None = None) -> GuestManifest:
    """Build the guest into ``out``; ``size``: the root image's size in bytes."""
    size = DISK_SIZE if size is None else size
    apt = PrivateApt(apt_root, mirror, SUITE, ARCH)
    mkfs_ext4()
    boot = debian.boot_files(out, scratch, apt, progress)

    packages = root_image(out / "root.img", scratch / "root", apt=apt, cache_dir=apt_root,
                          kernel_tree=boot.kernel_tree, release=boot.release, size=size,
                          progress=progress)
    seconds = second_stage(out, packages, progress)
    manifest = GuestManifest(
        name=NAME, description=DESCRIPTION, firmware="fw_jump.bin", kernel="Image",
        initrd="initrd.cpio.gz", disk="root.img", append=APPEND, ram=RAM,
        ready_marker=READY_MARKER,
        packages={**boot.packages, f"debootstrap {SUITE} {VARIANT}": f"{len(packages)} packages"},
        built=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        build_seconds={"second_stage": round(seconds, 1)})
    manifest.build_seconds.update(save_booted(out, manifest, progress))
    return manifest


def root_image(image: Path, root: Path, *, apt: PrivateApt, cache_dir: Path, kernel_tree: Path,
               release: str, size: int, progress: ProgressFn) -> list[str]:
    """The unconfigured root image: debootstrap's first stage into folder ``root``
    (removed afterwards), the kernel's modules and /chrono-setup added, made into the
    ext4 ``image`` of ``size`` bytes.  The packages the second stage configures."""
    packages = debootstrap.first_stage(
        root, suite=SUITE, arch=ARCH, mirror=apt.mirror, variant=VARIANT, include=list(PACKAGES),
        cache_dir=cache_dir / "debootstrap", progress=progress)
    progress(ProgressEvent("adding the kernel's modules and the setup script"))
    source = debian.modules_dir(kernel_tree, release)
    if source is None:
        raise GuestFetchError(f"the kernel package has no modules for {release}; {OWN_FILES}")
    shutil.copytree(source, root / "usr/lib/modules" / release, symlinks=True)
    _index_modules(root, release)
    _write(root, _DPKG_UNSAFE_IO, DPKG_UNSAFE_IO)
    _write(root, _DPKG_EXCLUDES, DPKG_EXCLUDES)
    _write(root, SETUP_PATH, setup_script(release), mode=0o755)
    progress(ProgressEvent(f"making the {size >> 20} MiB ext4 root image"))
    make_ext4(image, size, label="chrono-root", source=root)
    shutil.rmtree(root)
    return packages


def setup_script(release: str) -> str:
    return SETUP.format(hostname=HOSTNAME, release=release, unsafe_io=_DPKG_UNSAFE_IO,
                        setup=SETUP_PATH)


def second_stage(out: Path, packages: list[str], progress: ProgressFn) -> float:
    """Boot root.img with init=/chrono-setup on chrono, its writes committed to the
    image; host seconds it took."""
    from chrono.core.launch import GuestSpec, launch     # the native core, only here
    from chrono.guests.guestrun import run_to_poweroff

    spec = GuestSpec(bios=out / "fw_jump.bin", kernel=out / "Image",
                     initrd=out / "initrd.cpio.gz", disk=out / "root.img",
                     append=SETUP_APPEND, ram_size=parse_size(RAM, "ram"))
    guest = launch(spec, commit=True)
    step = f"configuring {len(packages)} packages in the guest (debootstrap's second stage on chrono)"
    progress(ProgressEvent(step, 0.0))
    started = time.monotonic()
    # The console goes to second-stage.log as it comes (tail -f shows the build),
    # and stays with the guest; a failed build leaves a copy next to the cache,
    # since the build folder goes away.
    kept = out.parent.parent / f"{NAME}-{CONSOLE_LOG}"
    with open(out / CONSOLE_LOG, "w", buffering=1) as log:
        watcher = StageProgress(packages, lambda f: progress(ProgressEvent(step, f)), log)
        try:
            outcome, _ = run_to_poweroff(guest, watcher.line, max_steps=SECOND_STAGE_STEPS)
        except GuestFetchError as e:            # a kernel panic
            log.flush()
            shutil.copyfile(out / CONSOLE_LOG, kept)
            raise GuestFetchError(f"{e.message}; its console is in {kept}; fetch again, "
                                  f"{OWN_FILES}") from None
    seconds = time.monotonic() - started
    if not watcher.done:
        shutil.copyfile(out / CONSOLE_LOG, kept)
        failure = watcher.failure or f"the guest stopped ({outcome.kind}) before it finished"
        tail = " | ".join(watcher.log[-4:])
        raise GuestFetchError(f"the guest's second stage failed: {failure}"
                              f"{' (' + tail + ')' if tail else ''}; its console is in {kept}; "
                              f"fetch again, {OWN_FILES}")
    progress(ProgressEvent("writing the configured system into root.img"))
    guest.disk.commit()
    return seconds


def refresh(folder: Path, manifest: GuestManifest, progress: ProgressFn) -> bool:
    """Save BOOTED again if this chrono cannot restore the cached one (another
    chrono, with another CPU/device state layout, saved it).  The image is the
    same, so only the boot and the save are repeated, into a new store that then
    replaces the old one.  True if it did (the manifest is saved again)."""
    from chrono.errors import ChronoError
    from chrono.store.capture import config_problem
    from chrono.store.store import Store
    try:
        with Store.open(folder / STORE) as store:
            problem = config_problem(store.snapshot(BOOTED).config)
    except ChronoError as e:
        problem = e.message
    if problem is None:
        return False
    progress(ProgressEvent(f"snapshot {BOOTED} cannot be restored by this chrono ({problem}); "
                           "saving it again"))
    fresh, old = folder / f"{STORE}.new", folder / f"{STORE}.old"
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    manifest.build_seconds.update(save_booted(folder, manifest, progress, store_path=fresh))
    if (folder / STORE).exists():
        (folder / STORE).rename(old)
    fresh.rename(folder / STORE)
    shutil.rmtree(old, ignore_errors=True)
    manifest.save(folder)
    return True


def save_booted(folder: Path, manifest: GuestManifest, progress: ProgressFn,
                store_path: Path | None = None) -> dict[str, float]:
    """Boot the finished guest to its root shell, wait until systemd has finished
    starting everything (`systemctl is-system-running --wait`), and save the machine
    as snapshot BOOTED in the guest's own store (folder/store, or `store_path`), where
    `chrono run debian-full --from booted` finds it.  Host seconds of each part."""
    from chrono.core.launch import launch
    from chrono.guests.guestrun import run_script
    from chrono.store.capture import Snapshots
    from chrono.store.store import Store

    progress(ProgressEvent(f"booting the guest to its shell, to save it as snapshot {BOOTED}"))
    guest = launch(manifest.spec(folder))
    started = time.monotonic()
    text = run_script(guest, [(READY_MARKER, b"systemctl is-system-running --wait\n"),
                              (READY_MARKER, b"")], max_steps=BOOT_STEPS)
    booted = time.monotonic() - started
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")   # no terminal codes
    state = re.findall(r"^(initializing|starting|running|degraded|maintenance|stopping)\s*$",
                       plain, re.M)
    progress(ProgressEvent(f"saving snapshot {BOOTED} (systemd: {state[-1] if state else '?'})"))
    started = time.monotonic()
    store = Store.open(store_path or folder / STORE, create=True)
    try:
        snapshots = Snapshots(store, guest)
        try:
            snapshots.save(BOOTED)
        finally:
            snapshots.close()
    finally:
        store.close()
    return {"boot_to_shell": round(booted, 1), "save_booted": round(time.monotonic() - started, 1)}


class StageProgress:
    """Reads the second stage's console: each package is unpacked and then
    configured, so 2 * len(packages) such lines make the whole."""

    _PACKAGE_LINE = re.compile(r"^I: (Unpacking|Configuring) (\S+?)(:\w+)?\.\.\.$")

    def __init__(self, packages: list[str], report, log):
        self.file = log
        self.total = max(2 * len(packages), 1)
        self.seen = 0
        self.report = report
        self.done = False
        self.failure = ""
        self.log: list[str] = []

    def line(self, line: str) -> None:
        self.file.write(line + "\n")
        line = line.strip()
        if self._PACKAGE_LINE.match(line):
            self.seen += 1
            self.report(min(self.seen / self.total, 0.99))
        elif line == DONE:
            self.done = True
            self.report(1.0)
        elif line.startswith(FAILED):
            self.failure = line[len("chrono-setup: "):]
        elif line.startswith("chrono-setup: log: "):
            self.log.append(line[len("chrono-setup: log: "):])
        elif PANIC in line:
            # The guest cannot go on; stop the run (the error says where).
            raise GuestFetchError(f"the guest's second stage failed: {line.split('] ', 1)[-1]}")


def _index_modules(root: Path, release: str) -> None:
    """modules.dep and the other indexes by the host's depmod (kmod's formats do
    not depend on the architecture), which takes a second where the guest's own
    takes minutes decompressing every module under emulation; without a host
    depmod, /chrono-setup runs the guest's."""
    tool = find_tool("depmod")
    if tool is not None:
        run_tool([tool, "-b", root, release], "depmod")


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)
