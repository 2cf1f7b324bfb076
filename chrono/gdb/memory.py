"""Guest memory as the debugger sees it: virtual addresses through the
current page tables (satp), or physical addresses.

The walk reads page-table entries from RAM without side effects: no
accessed/dirty bits are set, nothing traps.  Only RAM is readable; device
registers are not (reading them can change device state).
"""
from __future__ import annotations

from chrono.core.board import RAM_BASE

PAGE = 4096
SATP = 0x180
MODES = {8: 3, 9: 4}        # satp.MODE -> levels: Sv39, Sv48
PRV_M = 3
PPN_MASK = (1 << 44) - 1


def in_ram(machine, address: int, length: int) -> bool:
    return RAM_BASE <= address and address + length <= RAM_BASE + machine.ram_size


def translate(machine, vaddr: int) -> int | None:
    """The physical address of `vaddr` for the hart's current privilege and
    satp, or None if it is not mapped."""
    satp = machine.csr(SATP) or 0
    levels = MODES.get(satp >> 60)
    if machine.priv == PRV_M or levels is None:
        return vaddr
    bits = 12 + 9 * levels
    top = vaddr >> (bits - 1)
    if top not in (0, (1 << (65 - bits)) - 1):     # not sign-extended: not canonical
        return None
    table = (satp & PPN_MASK) * PAGE
    for level in reversed(range(levels)):
        index = (vaddr >> (12 + 9 * level)) & 0x1FF
        address = table + index * 8
        if not in_ram(machine, address, 8):
            return None
        pte = int.from_bytes(machine.read_phys(address, 8), "little")
        if not pte & 1 or (pte & 0b110) == 0b100:     # invalid, or W without R
            return None
        ppn = (pte >> 10) & PPN_MASK
        if pte & 0b1010:                               # R or X: a leaf
            span = 12 + 9 * level
            return ((ppn << 12) & ~((1 << span) - 1)) | (vaddr & ((1 << span) - 1))
        table = ppn * PAGE
    return None


def _pieces(machine, address: int, length: int, physical: bool):
    """(physical address, length) per page of the range, or None if any is unmapped."""
    out = []
    while length:
        n = min(length, PAGE - (address % PAGE))
        target = address if physical else translate(machine, address)
        if target is None or not in_ram(machine, target, n):
            return None
        out.append((target, n))
        address, length = address + n, length - n
    return out


def read(machine, address: int, length: int, physical: bool = False) -> bytes | None:
    pieces = _pieces(machine, address, length, physical)
    if pieces is None:
        return None
    return b"".join(machine.read_phys(a, n) for a, n in pieces)


def write(machine, address: int, data: bytes, physical: bool = False) -> bool:
    pieces = _pieces(machine, address, len(data), physical)
    if pieces is None:
        return False
    offset = 0
    for a, n in pieces:
        machine.write_phys(a, data[offset:offset + n])
        offset += n
    return True
