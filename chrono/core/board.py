"""The board's facts in one place: memory map, interrupt wiring, configuration.

The layout follows QEMU's ``virt`` machine so that one guest binary runs on both.
The numbers here must match ``native/devices.h`` and ``native/machine.h``; the
device tree (``devicetree.py``) and the boot planner (``loader.py``) read them
from here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chrono.errors import UsageError
from chrono.units import GiB, KiB, MiB, format_size

PAGE_SIZE = 4 * KiB

# --- Memory map (physical addresses) -----------------------------------------

# sifive,test: a write of TEST_POWEROFF / TEST_REBOOT ends or restarts the run.
TEST_BASE = 0x0010_0000
TEST_SIZE = 0x1000
TEST_FAIL = 0x3333       # low 16 bits; the exit code is in the upper 16 bits
TEST_POWEROFF = 0x5555
TEST_REBOOT = 0x7777

# goldfish RTC: where QEMU virt has it (wall clock = epoch + virtual time).
RTC_BASE = 0x0010_1000
RTC_SIZE = 0x1000
RTC_IRQ = 11

CLINT_BASE = 0x0200_0000
CLINT_SIZE = 0x10000

PLIC_BASE = 0x0C00_0000
PLIC_SIZE = 0x60_0000
PLIC_NDEV = 95           # sources 1..95, as QEMU virt (source 0 means "no interrupt")
PLIC_CONTEXT_M = 0       # hart 0, machine mode
PLIC_CONTEXT_S = 1       # hart 0, supervisor mode

UART_BASE = 0x1000_0000
UART_SIZE = 0x100
UART_IRQ = 10
UART_CLOCK_HZ = 3_686_400

VIRTIO_BASE = 0x1000_1000
VIRTIO_SLOT_SIZE = 0x1000
VIRTIO_SLOTS = 8
# QEMU fills virtio-mmio slots from the top: its first device lands in slot 7.
VIRTIO_BLK_SLOT = 7
# The entropy device (virtio-rng), always present: its bytes come from the host.
VIRTIO_RNG_SLOT = 6
# The network device (virtio-net), present with a network (--net user).
VIRTIO_NET_SLOT = 5

# QEMU's firmware configuration device (fw_cfg): the board's identity
# (QEMU's default items and files).
FW_CFG_BASE = 0x1010_0000
FW_CFG_SIZE = 0x18

# The PCIe host bridge (pci-host-ecam-generic), where QEMU virt has it.  Its
# bus 0 holds a host bridge in slot 0 and, with the virtio devices on PCI,
# the disk, network and entropy devices (one function each).
PCIE_ECAM_BASE = 0x3000_0000
PCIE_ECAM_SIZE = 0x1000_0000
PCIE_BUSES = 256                # bus-range 0..255: 1 MiB of ECAM per bus
PCIE_PIO_BASE = 0x0300_0000     # I/O window (PCI address 0)
PCIE_PIO_SIZE = 0x1_0000
PCIE_MMIO_BASE = 0x4000_0000    # 32-bit memory window (PCI address = CPU address)
PCIE_MMIO_SIZE = 0x4000_0000
PCIE_HIGH_SIZE = 0x4_0000_0000  # 64-bit window at the first multiple of its size past RAM
PCIE_IRQ = 32                   # INTA..INTD of slot 0: PLIC sources 32..35, swizzled per slot
PCI_INTX_PINS = 4
PCI_BLK_SLOT = 1
PCI_NET_SLOT = 2
PCI_RNG_SLOT = 3

# Where the virtio devices sit: their virtio-mmio slots (the default, as
# before), or the PCIe bus (virtio-pci, what `-device virtio-*-pci` gives
# on QEMU).
VIRTIO_TRANSPORTS = ("mmio", "pci")

RAM_BASE = 0x8000_0000

TIMEBASE_HZ = 10_000_000

# Local interrupt numbers (mcause codes) used in interrupts-extended.
IRQ_S_SOFT = 1
IRQ_M_SOFT = 3
IRQ_S_TIMER = 5
IRQ_M_TIMER = 7
IRQ_S_EXT = 9
IRQ_M_EXT = 11

# --- Limits of the configuration ---------------------------------------------

RAM_MIN = 16 * MiB
RAM_MAX = 64 * GiB

MMU_TYPES = ("riscv,sv39", "riscv,sv48")    # what the core's MMU implements

DEFAULT_ISA_EXTENSIONS = ("i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei", "sstc")

# Canonical order of single-letter extensions (unprivileged spec, "ISA
# Extension Naming Conventions").  'i' is the base; 'e' and 'g' are not
# accepted: the cpu node says riscv,isa-base = "rv64i" and G is a shorthand.
_SINGLE_LETTER_ORDER = "imafdqlcbkjtpvh"
_EXTENSION_NAME = re.compile(r"[a-z][a-z0-9]*\Z")


def virtio_slot_base(slot: int) -> int:
    """Physical base address of virtio-mmio slot ``slot`` (0..7)."""
    if not 0 <= slot < VIRTIO_SLOTS:
        raise ValueError(f"virtio-mmio slot {slot} out of range 0..{VIRTIO_SLOTS - 1}")
    return VIRTIO_BASE + slot * VIRTIO_SLOT_SIZE


def virtio_slot_irq(slot: int) -> int:
    """PLIC source of virtio-mmio slot ``slot``."""
    if not 0 <= slot < VIRTIO_SLOTS:
        raise ValueError(f"virtio-mmio slot {slot} out of range 0..{VIRTIO_SLOTS - 1}")
    return 1 + slot


def pcie_high_base(ram_size: int) -> int:
    """Base of the 64-bit PCIe window: as QEMU virt places it, the first
    multiple of its size at or past the end of RAM (native/pci.c agrees)."""
    end = RAM_BASE + ram_size
    return -(-end // PCIE_HIGH_SIZE) * PCIE_HIGH_SIZE


def pci_intx_irq(slot: int, pin: int) -> int:
    """PLIC source of INTx pin ``pin`` (1 = INTA..4 = INTD) of PCI slot ``slot``."""
    return PCIE_IRQ + (slot + pin - 1) % PCI_INTX_PINS


# --- Sizes ----------------------------------------------------------------------

def format_ram_option(n: int) -> str:
    """A RAM size the way --ram takes it: '512M', '2G'."""
    if n % GiB == 0:
        return f"{n // GiB}G"
    if n % MiB == 0:
        return f"{n // MiB}M"
    return f"{n // KiB}K"


# --- ISA string ----------------------------------------------------------------

def _extension_sort_key(name: str) -> tuple:
    """Canonical ISA-string order (the rules Linux documents in asm/hwcap.h):
    single letters first in IMAFDQLCBKJTPVH order; then Z extensions, by the
    category of the letter after 'z', then alphabetically; then S extensions
    alphabetically; then X extensions alphabetically."""
    if len(name) == 1:
        return (0, _SINGLE_LETTER_ORDER.index(name), name)
    if name[0] == "z":
        category = _SINGLE_LETTER_ORDER.find(name[1])
        return (1, category if category >= 0 else len(_SINGLE_LETTER_ORDER), name)
    if name[0] == "s":
        return (2, 0, name)
    return (3, 0, name)


def canonical_extensions(extensions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate extension names and return them, lower-case, in canonical order.

    UsageError names the first bad one."""
    seen: set[str] = set()
    for raw in extensions:
        if not isinstance(raw, str):
            raise UsageError(f"ISA extension {raw!r}: not a name; use names like 'm' or 'zicsr'")
        name = raw.lower()
        if not _EXTENSION_NAME.match(name):
            raise UsageError(f"ISA extension {raw!r}: not a valid name; use names like 'm' or 'zicsr'")
        if len(name) == 1 and name not in _SINGLE_LETTER_ORDER:
            raise UsageError(
                f"ISA extension {raw!r}: not a single-letter extension this board describes; "
                f"use some of {', '.join(_SINGLE_LETTER_ORDER)} (spell G out as i, m, a, f, d, zicsr, zifencei)")
        if len(name) > 1 and name[0] not in "zsx":
            raise UsageError(
                f"ISA extension {raw!r}: multi-letter extensions start with z, s or x; "
                f"give single letters separately")
        if name in seen:
            raise UsageError(f"ISA extension {raw!r} is listed twice; list each extension once")
        seen.add(name)
    if "i" not in seen:
        raise UsageError("ISA extensions lack 'i': the board is rv64i-based; add 'i' to the list")
    return tuple(sorted(seen, key=_extension_sort_key))


def isa_string(extensions: tuple[str, ...] | list[str], xlen: int = 64) -> str:
    """The riscv,isa string, e.g. 'rv64imac_zicntr_zicsr_zifencei'."""
    ordered = canonical_extensions(extensions)
    letters = "".join(e for e in ordered if len(e) == 1)
    longer = [e for e in ordered if len(e) > 1]
    return "_".join([f"rv{xlen}{letters}", *longer])


# --- Configuration -------------------------------------------------------------

@dataclass(frozen=True)
class BoardConfig:
    """What varies between boards of this kind; everything the device tree says.

    Validated on construction (UsageError), so a BoardConfig that exists is
    one the core and the device tree can use.
    """

    ram_size: int
    isa_extensions: tuple[str, ...] = DEFAULT_ISA_EXTENSIONS
    mmu_type: str = "riscv,sv48"
    bootargs: str = ""
    initrd: tuple[int, int] | None = None     # physical [start, end)
    has_disk: bool = False                     # a virtio-blk device in VIRTIO_BLK_SLOT
    has_net: bool = False                      # a virtio-net device in VIRTIO_NET_SLOT
    hart_count: int = 1
    virtio: str = "mmio"                       # the virtio devices' transport (VIRTIO_TRANSPORTS)

    def __post_init__(self) -> None:
        # frozen: normalised values go in through object.__setattr__.
        ram = self.ram_size
        if isinstance(ram, bool) or not isinstance(ram, int):
            raise UsageError(f"RAM size {ram!r} is not a byte count; use a size like 256M")
        if ram % PAGE_SIZE or not RAM_MIN <= ram <= RAM_MAX:
            raise UsageError(
                f"RAM size {format_size(ram)} ({ram} bytes) is out of range: use a multiple of 4 KiB "
                f"from {format_size(RAM_MIN)} to {format_size(RAM_MAX)}, e.g. --ram 256M")

        extensions = canonical_extensions(tuple(self.isa_extensions))
        object.__setattr__(self, "isa_extensions", extensions)

        mmu = self.mmu_type if self.mmu_type.startswith("riscv,") else f"riscv,{self.mmu_type}"
        if mmu not in MMU_TYPES:
            raise UsageError(f"MMU type {self.mmu_type!r} is not supported; use one of {', '.join(MMU_TYPES)}")
        object.__setattr__(self, "mmu_type", mmu)

        if not isinstance(self.bootargs, str) or "\0" in self.bootargs:
            raise UsageError("--append: the kernel command line must be text without NUL characters")

        if self.initrd is not None:
            start, end = self.initrd
            if not (RAM_BASE <= start <= end <= self.ram_end):
                raise UsageError(
                    f"initrd range {start:#x}-{end:#x} is not inside RAM "
                    f"{RAM_BASE:#x}-{self.ram_end:#x}; place it in RAM")
            object.__setattr__(self, "initrd", (int(start), int(end)))

        if self.virtio not in VIRTIO_TRANSPORTS:
            raise UsageError(f"--virtio {self.virtio!r}: not a virtio transport; use "
                             f"{' or '.join(VIRTIO_TRANSPORTS)}")

        if self.hart_count != 1:
            raise UsageError(f"{self.hart_count} harts requested; this board has exactly 1 hart")

    @property
    def riscv_isa(self) -> str:
        """The riscv,isa string of the cpu node, e.g. 'rv64imac_zicntr_zicsr_zifencei'."""
        return isa_string(self.isa_extensions)

    @property
    def ram_end(self) -> int:
        """First physical address past RAM."""
        return RAM_BASE + self.ram_size
