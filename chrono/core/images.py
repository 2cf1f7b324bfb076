"""What is inside a guest image file: ELF executables, Linux Images, raw blobs.

Only reading and validating here; where things go in guest memory is
``loader.py``'s job.  Every problem with a file becomes an ImageError whose
one-line message names the file and says what to do: bad input must never
surface as a pyelftools, struct or OS exception.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chrono.core.guestfiles import open_guest_file
from chrono.errors import ImageError, os_error_message

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

PathLike = str | os.PathLike

ELF_MAGIC = b"\x7fELF"
EM_RISCV = 243
_ELF64_HEADER_SIZE = 64

# Names for e_machine values people are likely to hand us by mistake.
_MACHINE_NAMES = {
    "EM_X86_64": "x86-64", "EM_386": "i386", "EM_AARCH64": "aarch64", "EM_ARM": "arm",
    "EM_PPC64": "ppc64", "EM_S390": "s390", "EM_MIPS": "mips", "EM_LOONGARCH": "loongarch",
}


@dataclass(frozen=True)
class Segment:
    """One loadable piece: ``data`` at ``address``, then zeros up to ``memsz``.

    ``content`` is the range its sections cover.  Around it a PT_LOAD segment
    may carry filler: the ELF and program headers (``ld -Ttext=0x80000000``
    puts them in the first segment, a page below the text) and alignment
    padding.  None: no section table says, so all of it counts as content.
    """

    address: int
    data: bytes
    memsz: int
    content: tuple[int, int] | None = None

    @property
    def end(self) -> int:
        return self.address + self.memsz

    def without_filler_outside(self, low: int, high: int) -> "Segment | None":
        """This segment cut to [low, high) where only filler lies outside it
        (QEMU drops such bytes: nothing is there to hold them); None when
        nothing is left.  Content outside stays, for the caller to report."""
        c_low, c_high = self.content if self.content is not None else (self.address, self.end)
        if c_low >= c_high:                         # no section at all: every byte is filler
            c_low, c_high = self.end, self.address
        start = max(self.address, min(low, c_low))
        end = min(self.end, max(high, c_high))
        if start >= end:
            return None
        if (start, end) == (self.address, self.end):
            return self
        skip = start - self.address
        return Segment(start, self.data[skip:end - self.address], end - start, self.content)


@dataclass
class ElfImage:
    """The parts of a RISC-V ELF executable a loader needs."""

    name: str
    entry: int
    segments: list[Segment]
    symbols: dict[str, int] = field(default_factory=dict)

    @property
    def low(self) -> int:
        return segments_low(self.segments)

    @property
    def high(self) -> int:
        return segments_high(self.segments)


def segments_low(segments: list[Segment]) -> int:
    return min(s.address for s in segments)


def segments_high(segments: list[Segment]) -> int:
    """End of the highest segment (BSS included)."""
    return max(s.end for s in segments)


@dataclass(frozen=True)
class LinuxImageHeader:
    """The 64-byte header of a RISC-V Linux ``Image`` (Documentation/arch/riscv/boot-image-header.rst)."""

    text_offset: int        # preferred offset of the image from the start of RAM
    image_size: int         # bytes the kernel occupies once running (BSS included); 0 = unknown


def read_image_file(path: PathLike, role: str = "") -> bytes:
    """The whole file, or an ImageError naming it ('--kernel Image: no such file; ...')."""
    name = _label(path, role)
    try:
        with open_guest_file(path, name, ImageError) as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(os_error_message(name, exc)) from None
    if not data:
        raise ImageError(f"{name}: empty file; give a non-empty image")
    return data


def _label(path: PathLike, role: str) -> str:
    return f"{role} {os.fspath(path)}" if role else os.fspath(path)


def is_elf(data: bytes) -> bool:
    return data[:4] == ELF_MAGIC


def check_not_compressed(data: bytes, name: str) -> None:
    """Refuse compressed kernels and text files with a hint instead of
    running garbage."""
    if looks_like_text(data):
        raise ImageError(f"{name}: looks like a text file, not a program; give an RV64 ELF "
                         f"or a raw binary image")
    if data[:2] == b"\x1f\x8b":
        raise ImageError(f"{name}: gzip-compressed; decompress it first (gunzip -c FILE > Image) and load the result")
    if data[:2] == b"MZ" and data[4:8] == b"zimg":
        raise ImageError(f"{name}: an EFI zboot compressed kernel; load the uncompressed Image instead")


def looks_like_text(data: bytes) -> bool:
    """True when the start of a file is printable text (machine code never is)."""
    head = data[:512]
    return bool(head) and all(32 <= b < 127 or b in b"\t\n\r" for b in head)


def linux_image_header(data: bytes) -> LinuxImageHeader | None:
    """The RISC-V Linux Image header, if ``data`` starts with one.

    Layout (little-endian): code0 u32, code1 u32, text_offset u64 @8,
    image_size u64 @16, flags u64 @24, version u32 @32, res1 u32, res2 u64,
    magic "RISCV\\0\\0\\0" @48 (deprecated), magic2 "RSC\\x05" @56, res3 u32.
    """
    if len(data) < 64:
        return None
    if data[56:60] != b"RSC\x05" and data[48:56] != b"RISCV\0\0\0":
        return None
    text_offset, image_size = struct.unpack_from("<QQ", data, 8)
    return LinuxImageHeader(text_offset, image_size)


def parse_elf(data: bytes, name: str) -> ElfImage:
    """Validate a RISC-V 64-bit little-endian ET_EXEC ELF and extract its
    PT_LOAD segments (at their physical addresses) and symbols."""
    what = "not a RISC-V 64-bit ELF executable"
    if not is_elf(data):
        shown = data[:8].decode("ascii", "replace").encode("unicode_escape").decode("ascii")
        raise ImageError(f"{name}: not an ELF file (it starts with {shown!r}); give a RISC-V 64-bit ELF executable")
    if len(data) < _ELF64_HEADER_SIZE:
        raise ImageError(f"{name}: truncated ELF file ({len(data)} bytes); rebuild or re-copy it")
    ei_class, ei_data = data[4], data[5]
    if ei_data not in (1, 2):
        raise ImageError(f"{name}: malformed ELF header (data encoding {ei_data}); rebuild it")
    endian = "<" if ei_data == 1 else ">"
    e_machine = struct.unpack_from(endian + "H", data, 18)[0]
    if ei_class != 2:
        bits = "32-bit" if ei_class == 1 else f"class {ei_class}"
        arch = " RISC-V" if e_machine == EM_RISCV else ""
        raise ImageError(f"{name}: {what} ({bits}{arch} ELF); build it for rv64")
    if ei_data != 1:
        raise ImageError(f"{name}: {what} (big-endian); build it for little-endian rv64")

    # pyelftools is imported here, not with the module: it takes ~20 ms, which
    # only loading an ELF should pay (fast boot from a snapshot loads none).
    from elftools.common.exceptions import ELFError
    from elftools.construct.core import ConstructError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        header = elf.header
        if header["e_machine"] != "EM_RISCV":
            machine = _MACHINE_NAMES.get(header["e_machine"], str(header["e_machine"]).removeprefix("EM_").lower())
            raise ImageError(f"{name}: {what} (machine {machine}); give an image built for RISC-V")
        e_type = header["e_type"]
        if e_type != "ET_EXEC":
            kind = {"ET_DYN": "a position-independent executable or shared library",
                    "ET_REL": "an unlinked object file", "ET_CORE": "a core dump"}.get(e_type, str(e_type))
            raise ImageError(f"{name}: {what} ({kind}); link a static executable at fixed addresses (-static -no-pie)")
        _check_tables_inside(header, len(data), name)
        segments = _load_segments(elf, data, name)
        entry = header["e_entry"]
        if not any(s.address <= entry < s.end for s in segments):
            raise ImageError(f"{name}: entry point {entry:#x} is not inside any loadable segment; "
                             f"check the linker script's ENTRY")
        return ElfImage(name, entry, segments, _symbols(elf))
    except ImageError:
        raise
    except (ELFError, ConstructError, struct.error, ValueError, KeyError, IndexError,
            OverflowError, UnicodeDecodeError, EOFError) as exc:
        raise ImageError(f"{name}: malformed ELF file ({exc or type(exc).__name__}); "
                         f"it may be truncated or damaged, rebuild or re-copy it") from None


def _check_tables_inside(header, size: int, name: str) -> None:
    """Report truncation plainly before pyelftools trips over it."""
    tables = [("program header table", header["e_phoff"], header["e_phnum"] * header["e_phentsize"])]
    if header["e_shnum"]:
        tables.append(("section header table", header["e_shoff"], header["e_shnum"] * header["e_shentsize"]))
    for table, offset, length in tables:
        if offset + length > size:
            raise ImageError(f"{name}: truncated ELF file ({table} needs bytes up to {offset + length}, "
                             f"file has {size}); rebuild or re-copy it")


def _load_segments(elf: ELFFile, data: bytes, name: str) -> list[Segment]:
    segments: list[Segment] = []
    sections = _allocated_sections(elf)
    for index, seg in enumerate(elf.iter_segments()):
        if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
            continue
        offset, filesz, memsz, paddr = seg["p_offset"], seg["p_filesz"], seg["p_memsz"], seg["p_paddr"]
        if filesz > memsz:
            raise ImageError(f"{name}: malformed ELF file (segment {index} has more file bytes than memory); rebuild it")
        if offset + filesz > len(data):
            raise ImageError(f"{name}: truncated ELF file (segment {index} needs bytes up to {offset + filesz}, "
                             f"file has {len(data)}); rebuild or re-copy it")
        if paddr + memsz > 1 << 64:
            raise ImageError(f"{name}: malformed ELF file (segment {index} wraps past the top of memory); rebuild it")
        content = _section_span(sections, seg["p_vaddr"], memsz, paddr)
        segments.append(Segment(paddr, data[offset:offset + filesz], memsz, content))
    if not segments:
        raise ImageError(f"{name}: ELF file has no loadable segments; link it with code in a PT_LOAD segment")
    ordered = sorted(segments, key=lambda s: s.address)
    for a, b in zip(ordered, ordered[1:]):
        if b.address < a.end:
            raise ImageError(f"{name}: malformed ELF file (segments at {a.address:#x} and {b.address:#x} overlap); "
                             f"check the linker script")
    return ordered


def _allocated_sections(elf: ELFFile) -> list[tuple[int, int]] | None:
    """(address, size) of the sections that occupy memory (code, data, BSS);
    None when the file has no section table."""
    from elftools.elf.constants import SH_FLAGS

    if not elf.num_sections():
        return None
    return [(sec["sh_addr"], sec["sh_size"]) for sec in elf.iter_sections()
            if sec["sh_flags"] & SH_FLAGS.SHF_ALLOC and sec["sh_size"]]


def _section_span(sections: list[tuple[int, int]] | None, vaddr: int, memsz: int,
                  paddr: int) -> tuple[int, int] | None:
    """The physical range a segment's sections cover; (paddr, paddr) if none
    lies in it, None if unknown.  Sections have virtual addresses: a segment
    loaded elsewhere (p_paddr != p_vaddr) moves them with it."""
    if sections is None:
        return None
    inside = [(a, a + n) for a, n in sections if vaddr <= a < vaddr + memsz]
    if not inside:
        return (paddr, paddr)
    low = min(a for a, _ in inside)
    high = min(max(e for _, e in inside), vaddr + memsz)
    return (low - vaddr + paddr, high - vaddr + paddr)


def _symbols(elf: ELFFile) -> dict[str, int]:
    """Named, defined symbols.  A global definition wins over a local one of
    the same name (static functions in different files may share names)."""
    from elftools.elf.sections import SymbolTableSection

    symbols: dict[str, int] = {}
    globals_seen: set[str] = set()
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection) or section["sh_type"] != "SHT_SYMTAB":
            continue
        for sym in section.iter_symbols():
            if not sym.name or sym["st_shndx"] == "SHN_UNDEF":
                continue
            if sym["st_info"]["type"] not in ("STT_NOTYPE", "STT_OBJECT", "STT_FUNC"):
                continue
            is_global = sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK")
            if sym.name in globals_seen or (sym.name in symbols and not is_global):
                continue
            symbols[sym.name] = sym["st_value"]
            if is_global:
                globals_seen.add(sym.name)
    return symbols
