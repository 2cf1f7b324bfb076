"""Sizes, counts and addresses: read the way people write them, printed one way.

Every command prints counts with thousands separators (``2,000,000``), sizes
in binary units (``128 MiB``) and addresses in hex (``0x80001000``); the
parsers here read those same forms back, so output can be pasted into input.
They raise UsageError with one line naming the option (``what``) and the fix.
"""
from __future__ import annotations

import re

from chrono.errors import UsageError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
PiB = 1 << 50
EiB = 1 << 60

_SIZE_UNITS = (("EiB", EiB), ("PiB", PiB), ("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def format_size(n: int) -> str:
    """Bytes in binary units: '128 MiB', '1.5 GiB', '300 KiB', '8 EiB', '17 bytes'."""
    for unit, scale in _SIZE_UNITS:
        if n >= scale:
            text = f"{n // scale}" if n % scale == 0 else f"{n / scale:.1f}"
            return f"{text} {unit}"
    return "1 byte" if n == 1 else f"{n} bytes"


_SIZE_TEXT = re.compile(r"(\d+)\s*([kKmMgGtT])(?:i?[bB])?")
_SIZE_SCALE = {"K": KiB, "M": MiB, "G": GiB, "T": TiB}


def parse_size(text: str, what: str) -> int:
    """'512M', '2G', '65536K' (also '2GiB', '2GB': binary units).

    A bare number is refused: QEMU's -m reads '256' as MiB, a byte count
    would read it as 256 bytes, and either guess surprises someone."""
    text = text.strip()
    match = _SIZE_TEXT.fullmatch(text)
    if match:
        return int(match.group(1)) * _SIZE_SCALE[match.group(2).upper()]
    if _parse_grouped(text) is not None:
        return _fail(f"{what} {text}: give a size with a unit, e.g. 128M or 1G")
    return _fail(f"{what} {text!r}: not a size; give one with a unit, e.g. 128M or 1G")


# 2000000, 2,000,000 (groups of three) or 2_000_000 (underscores between digits).
_COUNT_TEXT = re.compile(r"\d{1,3}(?:,\d{3})+|\d+(?:_\d+)*")


def _parse_grouped(text: str) -> int | None:
    return int(text.replace(",", "").replace("_", "")) if _COUNT_TEXT.fullmatch(text) else None


def parse_count(text: str, what: str) -> int:
    """A non-negative count or position: '2000000', '2,000,000' or '2_000_000'."""
    text = text.strip()
    value = _parse_grouped(text)
    if value is not None:
        return value
    if text.startswith("-") and _parse_grouped(text[1:]) is not None:
        return _fail(f"{what} {text}: must not be negative; positions and counts start at 0")
    return _fail(f"{what} {text!r}: not a number; write it like 2000000, 2,000,000 or 2_000_000")


_HEX_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F_]+")


def parse_address(text: str, what: str) -> tuple[int, bool]:
    """An address: '0x80001000' (hex) or digits only (decimal).

    Returns (address, read_as_decimal), so that a caller can say that
    '80001000' was read as decimal.  Hex digits without '0x' are refused: the
    reader meant hex, and reading them any other way would be a guess."""
    text = text.strip()
    if _HEX_ADDRESS.fullmatch(text):
        value, decimal = int(text, 16), False
    elif (value := _parse_grouped(text)) is not None:
        decimal = True
    else:
        value = None
    if value is not None:
        if value >> 64:
            return _fail(f"{what} {text}: beyond the 64-bit address space")
        return value, decimal
    if _HEX_DIGITS.fullmatch(text):
        return _fail(f"{what} {text}: hex digits without 0x; write 0x{text} for hex "
                     f"(plain digits are read as decimal)")
    return _fail(f"{what} {text!r}: not an address; write it like 0x80001000")


def _fail(message: str):
    raise UsageError(message)
