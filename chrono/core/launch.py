"""Turning user options into a running machine: images, disk, device tree.

This is what `chrono run` (and later `record`) calls; it holds no policy about
consoles or exit codes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chrono.core.disk import Disk
from chrono.core.guest import Guest
from chrono.core.loader import plan_boot
from chrono.core.machine import Machine
from chrono.errors import ImageError, UsageError

DEFAULT_RAM = 128 << 20
DEMO_BLANK_DISK = 8 << 20          # the demo guest formats a blank disk at boot


def demo_guest_path() -> Path:
    """The built-in demo guest, shipped as package data."""
    from importlib import resources     # ~5 ms: only the demo guest needs it
    path = Path(str(resources.files("chrono") / "data" / "demo.elf"))
    if not path.is_file():
        raise ImageError(f"the built-in demo guest is missing ({path}); rebuild it with "
                         "`make -C guests/demo install` or reinstall chrono")
    return path


@dataclass
class GuestSpec:
    """What to boot.  With neither kernel nor bios, the demo guest boots."""

    kernel: Path | None = None
    bios: Path | None = None
    initrd: Path | None = None
    append: str = ""
    disk: Path | None = None
    ram_size: int = DEFAULT_RAM
    rtc_epoch_ns: int | None = None     # None: the host's clock now (the one host input at start)
    net: bool = False                   # a network device (the network itself is the host's)
    virtio: str = "mmio"                # the virtio devices' transport: mmio or pci

    @property
    def is_demo(self) -> bool:
        return self.kernel is None and self.bios is None


def launch(spec: GuestSpec, commit: bool = False,
           progress: Callable[[str], None] | None = None) -> Guest:
    """Boot ``spec``; with ``commit`` its disk image must be writable (checked now,
    not at exit after the session).  ``progress`` hears of slow steps (a qcow2
    disk laid out as a raw file), a line each."""
    if spec.is_demo and (spec.initrd is not None or spec.append):
        option = "--initrd" if spec.initrd is not None else "--append"
        raise UsageError(f"{option} needs --kernel: it is handed to a kernel, and the built-in "
                         "demo guest takes none")
    kernel = demo_guest_path() if spec.is_demo else spec.kernel
    if spec.disk is not None:
        disk = Disk.open(spec.disk, writable=commit, progress=progress)
    elif spec.is_demo:
        disk = Disk.blank(DEMO_BLANK_DISK)
    else:
        disk = None
    boot, config = plan_boot(spec.ram_size, kernel=kernel, bios=spec.bios, initrd=spec.initrd,
                             append=spec.append, has_disk=disk is not None, has_net=spec.net,
                             virtio=spec.virtio)
    epoch = time.time_ns() if spec.rtc_epoch_ns is None else spec.rtc_epoch_ns
    machine = Machine(spec.ram_size, tohost=boot.tohost, fromhost=boot.fromhost, rtc_epoch_ns=epoch,
                      virtio=config.virtio)
    if disk is not None:
        machine.attach_disk(disk)
    if spec.net:
        machine.attach_net()
    guest = Guest(machine, boot, config, disk)
    guest.reset()
    return guest
