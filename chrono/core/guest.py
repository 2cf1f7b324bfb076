"""A guest: a machine with its boot image, board and disk.

Apart from the loader (chrono.core.loader, which plans a boot from image
files) so that a fast boot, which restores all of this from a snapshot,
does not import the image parsers and the device-tree builder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chrono.core.board import BoardConfig
    from chrono.core.disk import Disk
    from chrono.core.machine import Machine


@dataclass(frozen=True)
class Region:
    """A range of guest physical memory a plan uses (BSS included)."""

    start: int
    end: int
    what: str               # "Linux Image", "initrd", "device tree"...
    option: str = ""        # the option that supplied it; "" = placed by the board

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end:#x} {self.what}"


@dataclass
class BootImage:
    """Everything needed to start a guest: memory contents and initial registers.

    The hart starts in M-mode at ``entry`` with a0/a1/a2 set.  ``segments``
    are (physical address, bytes) to copy into RAM that starts out zeroed.
    ``tohost``/``fromhost`` are the HTIF words, when the ELF defines them.
    """

    segments: list[tuple[int, bytes]]
    entry: int
    a0: int = 0
    a1: int = 0
    a2: int = 0
    tohost: int | None = None
    fromhost: int | None = None
    symbols: dict[str, int] = field(default_factory=dict)
    description: str = ""
    regions: list[Region] = field(default_factory=list)



@dataclass
class Guest:
    """A machine loaded with its boot image and disk."""

    machine: Machine
    boot: BootImage
    config: BoardConfig
    disk: Disk | None
    saved_dtb: bytes | None = None      # its device tree (a restored guest keeps the saved one)

    @property
    def dtb(self) -> bytes:
        """The device tree this guest was booted with (built once)."""
        if self.saved_dtb is None:
            from chrono.core.devicetree import build_device_tree
            self.saved_dtb = build_device_tree(self.config)
        return self.saved_dtb

    def reset(self) -> None:
        """Load the boot image and reset the hart and devices (power-on)."""
        for address, data in self.boot.segments:
            self.machine.write_phys(address, data)
        b = self.boot
        self.machine.reset(b.entry, b.a0, b.a1, b.a2)

    def reboot(self) -> None:
        """A guest-requested reset: RAM is cleared (the images rely on zeroed
        BSS), the disk overlay survives, as on real hardware."""
        self.machine.zero_ram()
        self.reset()
