"""Boot plans: the bytes to put in guest RAM and the registers to start with.

A plan is computed from files and a RAM size alone (no Machine needed), so it
can be checked, shown and stored before anything runs.  It follows QEMU 7.2's
``-M virt`` conventions, so a guest set up for QEMU boots here unchanged:

* ``-bios none -kernel ELF``: the ELF at its own addresses, started at its
  entry point in M-mode (bare-metal programs, riscv-tests).
* ``-bios none -kernel RAW``: the file at RAM base, started there in M-mode.
* ``-bios FW [-kernel K] [-initrd I] [-append A]``: firmware (OpenSBI
  fw_jump/fw_dynamic, raw at RAM base or an ELF at its addresses) started in
  M-mode; a raw kernel at the first 2 MiB boundary after the firmware
  (0x80200000 for OpenSBI), an ELF kernel at its addresses; the initrd
  ``min(RAM/2, 128 MiB)`` above the kernel's load address.

In every case the device tree goes near the top of RAM: the 2 MiB boundary at
or below ``min(RAM end, 3 GiB) - its size`` (QEMU 7.2 ``riscv_load_fdt``), and
the hart starts with a0 = hart id 0, a1 = the device tree's address.  With
firmware, a2 also points at an OpenSBI ``fw_dynamic_info`` struct (fw_jump
ignores it).  QEMU keeps that struct in its boot ROM at 0x1000, right after
the reset vector; this board has no ROM, so it goes in the 4 KiB just below the
device tree, a spot nothing else is placed in.  It must not follow the
firmware image as it does in QEMU's ROM: OpenSBI's BSS and boot stack lie
right after its image and are zeroed and used before fw_dynamic reads a2.

Segments hold only file bytes: a BSS (ELF memsz beyond filesz, a Linux Image's
image_size beyond the file) relies on RAM starting zeroed, but is still
reserved so nothing else is placed over it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace

from chrono.core import board
from chrono.core.board import RAM_BASE, BoardConfig, format_ram_option
from chrono.core.devicetree import build_device_tree
from chrono.core.guest import BootImage, Region
from chrono.core.images import (
    PathLike, Segment, check_not_compressed, is_elf, linux_image_header, parse_elf, read_image_file,
    segments_high, segments_low,
)
from chrono.errors import ImageError, UsageError
from chrono.units import GiB, KiB, MiB, format_size

# QEMU: riscv_calc_kernel_start_addr aligns the kernel up to 2 MiB (RV64),
# the PMD size Linux needs for its linear map.
KERNEL_ALIGN = 2 * MiB
# QEMU: riscv_load_initrd puts the initrd min(RAM/2, 128 MiB) above the kernel.
INITRD_OFFSET_MAX = 128 * MiB
# QEMU 7.2 riscv_load_fdt: 2 MiB aligned, below min(RAM end, 3 GiB) so a
# 32-bit kernel could reach it.  (Later QEMU drops the 3 GiB cap for RV64.)
FDT_ALIGN = 2 * MiB
FDT_ADDRESS_LIMIT = 3 * GiB

# OpenSBI include/sbi/fw_dynamic.h: six XLEN-sized words.
FW_DYNAMIC_INFO_MAGIC = 0x4942534F          # "OSBI"
FW_DYNAMIC_INFO_VERSION = 2                 # version 2 added boot_hart
FW_DYNAMIC_NEXT_MODE_S = 1
FW_DYNAMIC_INFO = struct.Struct("<6Q")      # magic, version, next_addr, next_mode, options, boot_hart
FW_DYNAMIC_INFO_GAP = 4 * KiB               # its distance below the device tree


# --- Single images -------------------------------------------------------------

def load_elf(path: PathLike) -> BootImage:
    """A RISC-V 64-bit ELF executable: PT_LOAD segments at their physical
    addresses, entry at e_entry, HTIF tohost/fromhost from the symbol table."""
    name = os.fspath(path)
    elf = parse_elf(read_image_file(path), name)
    return BootImage(
        segments=[(s.address, s.data) for s in elf.segments if s.data],
        entry=elf.entry,
        tohost=elf.symbols.get("tohost"),
        fromhost=elf.symbols.get("fromhost"),
        symbols=elf.symbols,
        description=f"ELF {name}: {elf.low:#x}-{elf.high:#x}, entry {elf.entry:#x}",
        regions=[Region(s.address, s.end, "ELF segment") for s in elf.segments],
    )


def load_raw(path: PathLike, address: int) -> BootImage:
    """A flat binary copied to ``address`` and entered there."""
    name = os.fspath(path)
    if not 0 <= address < 1 << 64:
        raise UsageError(f"{name}: load address {address:#x} is not a 64-bit physical address")
    data = read_image_file(path)
    if address + len(data) > 1 << 64:
        raise UsageError(f"{name}: {format_size(len(data))} at {address:#x} runs past the top of memory")
    return BootImage(
        segments=[(address, data)],
        entry=address,
        description=f"raw {name}: {address:#x}-{address + len(data):#x}",
        regions=[Region(address, address + len(data), "raw image")],
    )


# --- Boot plans ----------------------------------------------------------------

@dataclass
class _Payload:
    """A firmware or kernel, read and given its final addresses."""

    option: str                 # "--bios" / "--kernel"
    label: str                  # "--kernel Image", for messages
    kind: str                   # "firmware", "kernel ELF", "Linux Image"...
    segments: list[Segment]
    entry: int                  # where to start it
    symbols: dict[str, int]

    @property
    def low(self) -> int:
        return segments_low(self.segments)

    @property
    def high(self) -> int:
        return segments_high(self.segments)


@dataclass
class _Layout:
    regions: list[Region]       # in placement order
    initrd: tuple[int, int] | None
    dtb_address: int
    info_address: int | None


@dataclass
class _Problem:
    message: str
    culprit: Region


def plan_boot(
    ram_size: int,
    kernel: PathLike | None = None,
    bios: PathLike | None = None,
    initrd: PathLike | None = None,
    append: str = "",
    has_disk: bool = False,
    *,
    has_net: bool = False,
    virtio: str = "mmio",
    isa_extensions: tuple[str, ...] = board.DEFAULT_ISA_EXTENSIONS,
    mmu_type: str = "riscv,sv48",
) -> tuple[BootImage, BoardConfig]:
    """Plan a boot like QEMU virt does (see the module docstring).

    Returns the boot image (device tree included) and the board configuration
    it was built for, which carries the initrd range and the command line.
    UsageError when an option is wrong on its own (no kernel, --ram out of
    range); ImageError when a file is missing or malformed, or the images do
    not fit the RAM or each other (the message says which --ram would do,
    when one would).
    """
    cfg = BoardConfig(ram_size, isa_extensions=isa_extensions, mmu_type=mmu_type,
                      bootargs=append, has_disk=has_disk, has_net=has_net, virtio=virtio)
    if kernel is None and bios is None:
        raise UsageError("nothing to boot: give --kernel (an ELF or raw image), --bios (firmware), or both")
    if kernel is None and initrd is not None:
        raise UsageError("--initrd needs --kernel: the initrd is handed to a kernel; add --kernel")
    if kernel is None and append:
        raise UsageError("--append needs --kernel: the command line is handed to a kernel; add --kernel")

    firmware = _read_firmware(bios) if bios is not None else None
    kern = _read_kernel(kernel, firmware) if kernel is not None else None
    firmware, kern = (_without_filler_outside_ram(p, cfg.ram_size) for p in (firmware, kern))
    initrd_data = read_image_file(initrd, "--initrd") if initrd is not None else None

    # The tree's size depends on which properties exist, not on their values
    # (initrd addresses are fixed-width), so it can be sized before placing.
    probe = replace(cfg, initrd=(RAM_BASE, RAM_BASE) if initrd_data is not None else None)
    dtb_size = len(build_device_tree(probe))

    layout = _layout(cfg.ram_size, firmware, kern, initrd_data, dtb_size)
    problem = _find_problem(layout, cfg.ram_size)
    if problem is not None:
        raise _explain(problem, firmware, kern, initrd_data, dtb_size, cfg.ram_size)

    cfg = replace(cfg, initrd=layout.initrd)
    dtb = build_device_tree(cfg)
    assert len(dtb) == dtb_size, "device tree size changed with initrd values"
    return _assemble(cfg, layout, firmware, kern, initrd_data, dtb), cfg


def _read_firmware(path: PathLike) -> _Payload:
    label = f"--bios {os.fspath(path)}"
    data = read_image_file(path, "--bios")
    if is_elf(data):
        elf = parse_elf(data, label)
        return _Payload("--bios", label, "firmware ELF", elf.segments, elf.entry, elf.symbols)
    check_not_compressed(data, label)
    # QEMU: raw firmware at RAM base, entered there.
    return _Payload("--bios", label, "firmware", [Segment(RAM_BASE, data, len(data))], RAM_BASE, {})


def _read_kernel(path: PathLike, firmware: _Payload | None) -> _Payload:
    label = f"--kernel {os.fspath(path)}"
    data = read_image_file(path, "--kernel")
    if is_elf(data):
        elf = parse_elf(data, label)
        # The ELF starts at its entry point, with or without firmware before it.
        # (QEMU 7.2 hands fw_dynamic the lowest loaded address instead, which
        # is wrong whenever the first segment also holds the ELF headers.)
        entry = elf.entry
        return _Payload("--kernel", label, "kernel ELF", elf.segments, entry, elf.symbols)

    check_not_compressed(data, label)
    header = linux_image_header(data)
    if firmware is None:
        # QEMU with -bios none loads a raw kernel at RAM base.
        address = RAM_BASE
    else:
        address = _align_up(firmware.high, KERNEL_ALIGN)
        if header is not None and header.text_offset:
            # The Image asks to sit text_offset above the start of RAM.
            address = max(address, _align_up(RAM_BASE + header.text_offset, KERNEL_ALIGN))
    # A Linux Image's image_size covers its BSS too: reserve all of it.
    memsz = max(len(data), header.image_size if header is not None else 0)
    kind = "Linux Image" if header is not None else "raw kernel"
    return _Payload("--kernel", label, kind, [Segment(address, data, memsz)], address, {})


def _without_filler_outside_ram(payload: _Payload | None, ram_size: int) -> _Payload | None:
    """The payload without the headers and padding its ELF segments carry
    outside RAM: QEMU loads only what lands in memory, so ELFs made for it
    (``ld -Ttext=0x80000000`` puts the headers a page below) rely on that.
    Sections outside RAM stay, to be reported."""
    if payload is None:
        return None
    kept = [t for s in payload.segments
            if (t := s.without_filler_outside(RAM_BASE, RAM_BASE + ram_size)) is not None]
    return replace(payload, segments=kept or payload.segments)


def _layout(ram_size: int, firmware: _Payload | None, kern: _Payload | None,
            initrd_data: bytes | None, dtb_size: int) -> _Layout:
    """Where everything goes for a RAM size (nothing is checked here)."""
    regions: list[Region] = []
    for payload in (firmware, kern):
        if payload is not None:
            regions += [Region(s.address, s.end, payload.kind, payload.option) for s in payload.segments]

    initrd_range = None
    if initrd_data is not None:
        assert kern is not None
        start = _align_up(kern.low + min(ram_size // 2, INITRD_OFFSET_MAX), board.PAGE_SIZE)
        initrd_range = (start, start + len(initrd_data))
        regions.append(Region(*initrd_range, "initrd", "--initrd"))

    top = min(RAM_BASE + ram_size, FDT_ADDRESS_LIMIT)
    dtb_address = _align_down(top - dtb_size, FDT_ALIGN)
    regions.append(Region(dtb_address, dtb_address + dtb_size, "device tree"))

    info_address = None
    if firmware is not None:
        info_address = dtb_address - FW_DYNAMIC_INFO_GAP
        regions.append(Region(info_address, info_address + FW_DYNAMIC_INFO.size, "fw_dynamic info"))
    return _Layout(regions, initrd_range, dtb_address, info_address)


def _find_problem(layout: _Layout, ram_size: int) -> _Problem | None:
    """The first region outside RAM or overlapping another, described."""
    ram_end = RAM_BASE + ram_size
    ram = format_size(ram_size)
    for r in layout.regions:
        if r.start < RAM_BASE:
            return _Problem(f"{r.option}: {r.what} at {r.start:#x}-{r.end:#x} lies outside RAM "
                            f"({RAM_BASE:#x}-{ram_end:#x})", r)
        if r.end > ram_end:
            return _Problem(f"{r.option}: {format_size(r.end - r.start)} {r.what} does not fit "
                            f"in {ram} RAM above {r.start:#x}", r)

    order = {id(r): i for i, r in enumerate(layout.regions)}
    ordered = sorted(layout.regions, key=lambda r: (r.start, r.end))
    for a, b in zip(ordered, ordered[1:]):
        if b.start >= a.end:
            continue
        # Blame what the user supplied; between two of theirs, the one placed later.
        if not a.option or not b.option:
            culprit = b if b.option else a
            return _Problem(f"{culprit.option}: {format_size(culprit.end - culprit.start)} {culprit.what} "
                            f"does not fit in {ram} RAM above {culprit.start:#x}", culprit)
        culprit, other = (b, a) if order[id(b)] > order[id(a)] else (a, b)
        return _Problem(f"{culprit.option}: {culprit.what} at {culprit.start:#x}-{culprit.end:#x} "
                        f"overlaps the {other.what} at {other.start:#x}-{other.end:#x}", culprit)
    return None


def _explain(problem: _Problem, firmware: _Payload | None, kern: _Payload | None,
             initrd_data: bytes | None, dtb_size: int, ram_size: int) -> ImageError:
    """Turn a problem into an error that says what to change: a RAM size that
    works if there is one, otherwise what to do with the image.  Either way it
    is an ImageError: these images do not fit this board as they are."""
    size = 32 * MiB
    while size <= board.RAM_MAX:
        if size > ram_size:
            layout = _layout(size, firmware, kern, initrd_data, dtb_size)
            if _find_problem(layout, size) is None:
                return ImageError(f"{problem.message}; use --ram {format_ram_option(size)}")
        size *= 2
    culprit = problem.culprit
    above_firmware = _align_up(firmware.high, KERNEL_ALIGN) if firmware is not None else RAM_BASE
    if culprit.option == "--initrd":
        advice = "use a smaller initrd"
    elif not RAM_BASE <= culprit.start < RAM_BASE + board.RAM_MAX:
        advice = f"link it to run from RAM ({RAM_BASE:#x} up)"
    elif culprit.option == "--kernel" and culprit.start < above_firmware:
        advice = f"link it to run from RAM above the firmware (at {above_firmware:#x} or up)"
    else:
        advice = (f"no RAM size up to {format_size(board.RAM_MAX)} has room for it; "
                  f"make the {culprit.what} smaller")
    return ImageError(f"{problem.message}; {advice}")


def _assemble(cfg: BoardConfig, layout: _Layout, firmware: _Payload | None, kern: _Payload | None,
              initrd_data: bytes | None, dtb: bytes) -> BootImage:
    segments: list[tuple[int, bytes]] = []
    symbols: dict[str, int] = {}
    lines: list[str] = []
    for payload in (firmware, kern):
        if payload is None:
            continue
        segments += [(s.address, s.data) for s in payload.segments if s.data]
        symbols.update(payload.symbols)             # the kernel's win over the firmware's
        lines.append(f"{payload.low:#x}-{payload.high:#x} {payload.kind} ({payload.label}), "
                     f"{'entry' if payload is firmware or firmware is None else 'next'} {payload.entry:#x}")
    if initrd_data is not None and layout.initrd is not None:
        segments.append((layout.initrd[0], initrd_data))
        lines.append(f"{layout.initrd[0]:#x}-{layout.initrd[1]:#x} initrd")
    segments.append((layout.dtb_address, dtb))
    lines.append(f"{layout.dtb_address:#x}-{layout.dtb_address + len(dtb):#x} device tree (a1)")

    a2 = 0
    if firmware is not None:
        assert layout.info_address is not None
        # No kernel: next_addr 0, as QEMU does (fw_dynamic then has nowhere to go).
        next_addr = kern.entry if kern is not None else 0
        info = FW_DYNAMIC_INFO.pack(FW_DYNAMIC_INFO_MAGIC, FW_DYNAMIC_INFO_VERSION, next_addr,
                                    FW_DYNAMIC_NEXT_MODE_S, 0, 0)
        segments.append((layout.info_address, info))
        a2 = layout.info_address
        lines.append(f"{a2:#x}-{a2 + len(info):#x} fw_dynamic info (a2): next {next_addr:#x} in S-mode")

    starter = firmware if firmware is not None else kern
    assert starter is not None
    htif = kern.symbols if kern is not None and "tohost" in kern.symbols else starter.symbols
    return BootImage(
        segments=sorted(segments, key=lambda s: s[0]),
        entry=starter.entry,
        a0=0,
        a1=layout.dtb_address,
        a2=a2,
        tohost=htif.get("tohost"),
        fromhost=htif.get("fromhost"),
        symbols=symbols,
        description="\n".join(lines),
        regions=sorted(layout.regions, key=lambda r: r.start),
    )


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _align_down(value: int, alignment: int) -> int:
    return value // alignment * alignment
