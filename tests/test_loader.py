"""Boot plans: ELF and raw loading, QEMU virt placement rules, and the errors
a user sees for bad images and options.

ELF files are assembled by hand with struct (no cross compiler needed); the
tests that use riscv64-unknown-elf-gcc, Debian's OpenSBI or QEMU are skipped
when those are not installed.
"""

import gzip
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from chrono.core.board import GiB, MiB, BoardConfig, isa_string
from chrono.core.fdt import parse_dtb
from chrono.core.loader import (
    FW_DYNAMIC_INFO_MAGIC, BootImage, load_elf, load_raw, plan_boot,
)
from chrono.errors import ChronoError, ImageError, UsageError
from chronocmd import CHRONO

OPENSBI = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic")
CROSS_GCC = shutil.which("riscv64-unknown-elf-gcc")
QEMU = shutil.which("qemu-system-riscv64")
needs_opensbi = pytest.mark.skipif(not (OPENSBI / "fw_dynamic.bin").exists(), reason="Debian opensbi not installed")
needs_gcc = pytest.mark.skipif(CROSS_GCC is None, reason="riscv64-unknown-elf-gcc not installed")


# --- Hand-made images --------------------------------------------------------------

def make_elf(segments, entry, symbols=None, *, machine=243, e_type=2):
    """A little-endian ELF64 executable: PT_LOAD (paddr, bytes, memsz) segments,
    and a .symtab with absolute symbols when ``symbols`` is given."""
    phnum = len(segments)
    data_start = 64 + 56 * phnum
    body = bytearray()
    phdrs = b""
    for paddr, data, memsz in segments:
        offset = data_start + len(body)
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, offset, paddr, paddr, len(data), memsz, 8)
        body += data
        body += bytes(-len(body) % 8)
    shdrs = b""
    shnum = shstrndx = 0
    tail = b""
    if symbols is not None:
        strtab = b"\0" + b"".join(name.encode() + b"\0" for name in symbols)
        symtab = bytes(24)
        pos = 1
        for name, value in symbols.items():
            # st_name, st_info (GLOBAL << 4 | OBJECT), st_other, st_shndx = SHN_ABS, value, size
            symtab += struct.pack("<IBBHQQ", pos, (1 << 4) | 1, 0, 0xFFF1, value, 8)
            pos += len(name) + 1
        shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0"
        base = data_start + len(body)
        sym_off, str_off = base, base + len(symtab)
        shs_off = str_off + len(strtab)
        tail = symtab + strtab + shstrtab
        tail += bytes(-(base + len(tail)) % 8)
        shoff = base + len(tail)

        def sh(name, kind, off, size, link=0, info=0, entsize=0):
            return struct.pack("<IIQQQQIIQQ", name, kind, 0, 0, off, size, link, info, 8, entsize)
        shdrs = (bytes(64) + sh(1, 2, sym_off, len(symtab), link=2, info=1, entsize=24)
                 + sh(9, 3, str_off, len(strtab)) + sh(17, 3, shs_off, len(shstrtab)))
        shnum, shstrndx = 4, 3
    shoff = data_start + len(body) + len(tail) if shnum else 0
    header = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
              + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, entry, 64, shoff, 0,
                            64, 56, phnum, 64 if shnum else 0, shnum, shstrndx))
    return header + phdrs + bytes(body) + tail + shdrs


def linux_image(size=1 * MiB, text_offset=0x20_0000, image_size=None):
    """A file with a RISC-V Linux Image header (the code itself is filler)."""
    header = bytearray(64)
    header[0:4] = b"MZ\x00\x00"
    struct.pack_into("<QQ", header, 8, text_offset, image_size if image_size is not None else size)
    header[48:56] = b"RISCV\0\0\0"
    header[56:60] = b"RSC\x05"
    return bytes(header) + b"\x13" * (size - 64)


@pytest.fixture
def write(tmp_path):
    def write(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


@pytest.fixture
def bare_elf(write):
    code = b"\x73\x00\x50\x10" * 4                # wfi
    return write("guest.elf", make_elf(
        [(0x8000_0000, code, len(code)), (0x8000_1000, b"\0" * 16, 0x2000)],
        entry=0x8000_0000, symbols={"tohost": 0x8000_1000, "fromhost": 0x8000_1008, "_start": 0x8000_0000}))


@pytest.fixture
def firmware(write):
    return write("fw_jump.bin", b"\x6f\x00\x00\x00" * 0x8000)      # 128 KiB of "j ."


def one_line_error(excinfo, cls, *fragments):
    assert type(excinfo.value) is cls, f"{type(excinfo.value).__name__}: {excinfo.value}"
    message = excinfo.value.message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def segment_at(image: BootImage, address: int) -> bytes:
    for start, data in image.segments:
        if start == address:
            return data
    raise AssertionError(f"no segment at {address:#x}: {[hex(a) for a, _ in image.segments]}")


# --- ELF and raw images ------------------------------------------------------------

def test_elf_segments_load_at_physical_addresses_with_htif_symbols(bare_elf):
    image = load_elf(bare_elf)
    assert image.entry == 0x8000_0000
    assert [a for a, _ in image.segments] == [0x8000_0000, 0x8000_1000]
    assert segment_at(image, 0x8000_0000) == b"\x73\x00\x50\x10" * 4
    assert (image.tohost, image.fromhost) == (0x8000_1000, 0x8000_1008)
    assert image.symbols["_start"] == 0x8000_0000


def test_elf_bss_is_left_to_zeroed_ram_but_reserved(bare_elf):
    image = load_elf(bare_elf)
    assert len(segment_at(image, 0x8000_1000)) == 16            # file bytes only
    assert (image.regions[1].start, image.regions[1].end) == (0x8000_1000, 0x8000_3000)


def test_elf_without_symbol_table_has_no_htif(write):
    image = load_elf(write("nosym.elf", make_elf([(0x8000_0000, b"\x01" * 8, 8)], 0x8000_0000)))
    assert image.tohost is None and image.fromhost is None and image.symbols == {}


@needs_gcc
def test_elf_from_the_cross_compiler_reports_tohost(tmp_path):
    source = tmp_path / "t.S"
    source.write_text(
        ".section .text.init\n.globl _start\n_start: la t0, tohost\n li t1, 1\n sd t1, 0(t0)\n1: j 1b\n"
        ".section .tohost,\"aw\",@progbits\n.align 6\n.globl tohost\ntohost: .dword 0\n"
        ".align 6\n.globl fromhost\nfromhost: .dword 0\n")
    elf = tmp_path / "t.elf"
    subprocess.run([CROSS_GCC, "-nostdlib", "-nostartfiles", "-static", "-march=rv64ima", "-mabi=lp64",
                    "-Wl,-Ttext=0x80000000", "-Wl,-N", "-o", str(elf), str(source)], check=True)
    image = load_elf(elf)
    assert image.entry == 0x8000_0000
    assert image.tohost is not None and image.fromhost == image.tohost + 64
    assert all(0x8000_0000 <= a < 0x8010_0000 for a, _ in image.segments)


def test_raw_image_is_placed_and_entered_at_the_address(write):
    image = load_raw(write("blob.bin", b"\xAA" * 100), 0x8040_0000)
    assert image.segments == [(0x8040_0000, b"\xAA" * 100)]
    assert image.entry == 0x8040_0000


# --- Image errors ---------------------------------------------------------------------

def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ChronoError) as info:
        load_elf(tmp_path / "nope.elf")
    one_line_error(info, ImageError, "nope.elf", "no such file")


def test_directory_and_empty_file_are_image_errors(tmp_path, write):
    with pytest.raises(ChronoError) as info:
        load_raw(tmp_path, 0x8000_0000)
    one_line_error(info, ImageError, "directory")
    with pytest.raises(ChronoError) as info:
        load_elf(write("empty.elf", b""))
    one_line_error(info, ImageError, "empty.elf", "empty")


def test_text_file_is_not_an_elf(write):
    with pytest.raises(ChronoError) as info:
        load_elf(write("notes.txt", b"hello, this is text\n" * 10))
    one_line_error(info, ImageError, "notes.txt: not an ELF file")


@pytest.mark.skipif(not Path("/bin/true").exists(), reason="no /bin/true")
def test_host_executable_is_refused_naming_its_machine():
    with pytest.raises(ChronoError) as info:
        load_elf("/bin/true")
    message = one_line_error(info, ImageError, "/bin/true: not a RISC-V 64-bit ELF executable")
    if open("/bin/true", "rb").read(20)[18] == 62:
        assert "(machine x86-64)" in message


@pytest.mark.parametrize("patch, fragment", [
    (lambda b: b[:18] + struct.pack("<H", 62) + b[20:], "(machine x86-64)"),
    (lambda b: b[:18] + struct.pack("<H", 183) + b[20:], "(machine aarch64)"),
    (lambda b: b[:4] + b"\x01" + b[5:], "32-bit RISC-V ELF"),
    (lambda b: b[:5] + b"\x02" + b[6:], "big-endian"),
    (lambda b: b[:16] + struct.pack("<H", 3) + b[18:], "position-independent"),
    (lambda b: b[:16] + struct.pack("<H", 1) + b[18:], "unlinked object"),
], ids=["x86-64", "aarch64", "32-bit", "big-endian", "pie", "object"])
def test_wrong_kind_of_elf_is_refused_with_the_reason(write, patch, fragment):
    good = make_elf([(0x8000_0000, b"\x01" * 8, 8)], 0x8000_0000)
    with pytest.raises(ChronoError) as info:
        load_elf(write("odd.elf", patch(good)))
    one_line_error(info, ImageError, "odd.elf: not a RISC-V 64-bit ELF executable", fragment)


@pytest.mark.parametrize("keep", [10, 63, 100, 150, -30], ids=["ident", "header", "phdrs", "data", "sections"])
def test_truncated_elf_is_an_image_error(write, keep):
    good = make_elf([(0x8000_0000, b"\x01" * 64, 64)], 0x8000_0000, symbols={"tohost": 0x8000_0000})
    with pytest.raises(ChronoError) as info:
        load_elf(write("cut.elf", good[:keep]))
    one_line_error(info, ImageError, "cut.elf")


def test_elf_whose_entry_is_not_loaded_is_refused(write):
    with pytest.raises(ChronoError) as info:
        load_elf(write("e.elf", make_elf([(0x8000_0000, b"\x01" * 8, 8)], 0x9000_0000)))
    one_line_error(info, ImageError, "entry point 0x90000000")


def test_elf_without_loadable_segments_is_refused(write):
    with pytest.raises(ChronoError) as info:
        load_elf(write("none.elf", make_elf([], 0x8000_0000)))
    one_line_error(info, ImageError, "no loadable segments")


# --- Boot plans: bare metal ---------------------------------------------------------

def test_bare_metal_elf_starts_at_its_entry_with_the_device_tree_in_a1(bare_elf):
    image, cfg = plan_boot(128 * MiB, kernel=bare_elf)
    assert image.entry == 0x8000_0000
    assert (image.a0, image.a1, image.a2) == (0, 0x87E0_0000, 0)
    assert image.tohost == 0x8000_1000
    tree = parse_dtb(segment_at(image, image.a1))
    assert tree.find("/memory@80000000").u64s("reg") == (0x8000_0000, 128 * MiB)
    assert cfg.ram_size == 128 * MiB and cfg.initrd is None


def test_raw_kernel_without_firmware_loads_at_ram_base(write):
    image, _ = plan_boot(64 * MiB, kernel=write("raw.bin", b"\x13" * 4096))
    assert image.entry == 0x8000_0000
    assert segment_at(image, 0x8000_0000) == b"\x13" * 4096


# --- Boot plans: firmware, Linux, initrd ------------------------------------------------

def test_linux_boot_places_everything_like_qemu_virt(firmware, write):
    kernel = write("Image", linux_image(4 * MiB, image_size=6 * MiB))
    initrd = write("initrd.img", b"\x07" * 300_000)
    image, cfg = plan_boot(256 * MiB, kernel=kernel, bios=firmware, initrd=initrd, append="console=ttyS0")
    assert image.entry == 0x8000_0000                                   # firmware first, M-mode
    assert segment_at(image, 0x8000_0000)[:4] == b"\x6f\x00\x00\x00"
    assert segment_at(image, 0x8020_0000)[:4] == b"MZ\x00\x00"           # kernel at RAM + 2 MiB
    assert segment_at(image, 0x8820_0000) == b"\x07" * 300_000         # kernel + 128 MiB
    assert cfg.initrd == (0x8820_0000, 0x8820_0000 + 300_000)
    assert image.a1 == 0x8FE0_0000                                      # top 2 MiB of RAM
    chosen = parse_dtb(segment_at(image, image.a1)).find("/chosen")
    assert chosen.string("bootargs") == "console=ttyS0"
    assert chosen.u64s("linux,initrd-start") + chosen.u64s("linux,initrd-end") == cfg.initrd
    assert cfg.bootargs == "console=ttyS0"


def test_fw_dynamic_info_points_at_the_kernel_in_s_mode(firmware, write):
    image, _ = plan_boot(256 * MiB, kernel=write("Image", linux_image()), bios=firmware)
    assert image.a2 == image.a1 - 0x1000
    magic, version, next_addr, next_mode, options, boot_hart = struct.unpack("<6Q", segment_at(image, image.a2))
    assert (magic, version, next_addr, next_mode, options, boot_hart) == (FW_DYNAMIC_INFO_MAGIC, 2, 0x8020_0000, 1, 0, 0)
    assert FW_DYNAMIC_INFO_MAGIC == 0x4942534F


def test_firmware_alone_gets_fw_dynamic_info_with_no_next_address(firmware):
    image, _ = plan_boot(64 * MiB, bios=firmware)
    assert struct.unpack("<6Q", segment_at(image, image.a2))[2] == 0


@pytest.mark.parametrize("ram, initrd_at, dtb_at", [
    (64 * MiB, 0x8220_0000, 0x83E0_0000),      # initrd at kernel + RAM/2
    (128 * MiB, 0x8420_0000, 0x87E0_0000),     # as QEMU 7.2 places them with -m 128M
    (2 * GiB, 0x8820_0000, 0xBFE0_0000),       # device tree kept below 3 GiB
    (4 * GiB, 0x8820_0000, 0xBFE0_0000),
])
def test_initrd_and_device_tree_move_with_ram_size(firmware, write, ram, initrd_at, dtb_at):
    image, cfg = plan_boot(ram, kernel=write("Image", linux_image()), bios=firmware,
                           initrd=write("rd", b"\x01" * 4096))
    assert cfg.initrd[0] == initrd_at
    assert image.a1 == dtb_at


def test_image_text_offset_moves_the_kernel_up(firmware, write):
    image, _ = plan_boot(128 * MiB, kernel=write("Image", linux_image(text_offset=0x40_0000)), bios=firmware)
    assert struct.unpack("<6Q", segment_at(image, image.a2))[2] == 0x8040_0000
    segment_at(image, 0x8040_0000)


def test_kernel_goes_to_the_next_2mib_boundary_after_large_firmware(write):
    firmware = write("big_fw.bin", b"\x01" * (2 * MiB + 4096))
    image, _ = plan_boot(128 * MiB, kernel=write("Image", linux_image()), bios=firmware)
    segment_at(image, 0x8040_0000)


def test_elf_kernel_with_firmware_loads_at_its_addresses(firmware, write):
    kernel = write("k.elf", make_elf([(0x8020_0000, b"\x01" * 64, 64)], 0x8020_0010))
    image, _ = plan_boot(128 * MiB, kernel=kernel, bios=firmware)
    segment_at(image, 0x8020_0000)
    # fw_dynamic continues at e_entry (QEMU 7.2 would give the lowest address,
    # which breaks ELFs whose first segment holds their headers)
    assert struct.unpack("<6Q", segment_at(image, image.a2))[2] == 0x8020_0010


def test_elf_firmware_starts_at_its_entry(write):
    firmware = write("fw.elf", make_elf([(0x8000_0000, b"\x01" * 256, 0x4_0000)], 0x8000_0000))
    image, _ = plan_boot(128 * MiB, kernel=write("Image", linux_image()), bios=firmware)
    assert image.entry == 0x8000_0000
    segment_at(image, 0x8020_0000)


@needs_opensbi
def test_debian_opensbi_and_an_image_plan_cleanly(write):
    for name in ("fw_jump.bin", "fw_dynamic.bin", "fw_jump.elf", "fw_dynamic.elf"):
        image, _ = plan_boot(256 * MiB, kernel=write("Image", linux_image()), bios=OPENSBI / name)
        assert image.entry == 0x8000_0000
        segment_at(image, 0x8020_0000)


def test_plans_are_deterministic(firmware, write):
    args = dict(kernel=write("Image", linux_image()), bios=firmware, initrd=write("rd", b"\x02" * 5000), append="x")
    first, cfg1 = plan_boot(256 * MiB, **args)
    second, cfg2 = plan_boot(256 * MiB, **args)
    assert first.segments == second.segments and cfg1 == cfg2


def test_segments_never_overlap(firmware, write):
    image, _ = plan_boot(64 * MiB, kernel=write("Image", linux_image(8 * MiB)), bios=firmware,
                         initrd=write("rd", b"\x02" * (10 * MiB)))
    spans = sorted((a, a + len(d)) for a, d in image.segments)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:]))


# --- Plan errors -------------------------------------------------------------------------

def test_initrd_too_big_names_the_ram_that_would_do(firmware, write):
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, kernel=write("Image", linux_image()), bios=firmware,
                  initrd=write("rd", b"\x01" * (40 * MiB)))
    message = one_line_error(info, ImageError)
    assert message == "--initrd: 40 MiB initrd does not fit in 64 MiB RAM above 0x82200000; use --ram 128M"


def test_initrd_overlapping_the_kernel_asks_for_more_ram(firmware, write):
    with pytest.raises(ChronoError) as info:
        plan_boot(32 * MiB, kernel=write("Image", linux_image(1 * MiB, image_size=20 * MiB)), bios=firmware,
                  initrd=write("rd", b"\x01" * 4096))
    one_line_error(info, ImageError, "--initrd", "overlaps the Linux Image", "use --ram 64M")


def test_kernel_larger_than_ram_asks_for_more_ram(firmware, write):
    with pytest.raises(ChronoError) as info:
        plan_boot(16 * MiB, kernel=write("Image", linux_image(1 * MiB, image_size=30 * MiB)), bios=firmware)
    one_line_error(info, ImageError, "--kernel: 30 MiB Linux Image does not fit in 16 MiB RAM", "use --ram 64M")


def test_elf_kernel_on_top_of_firmware_is_an_image_error(firmware, write):
    kernel = write("k.elf", make_elf([(0x8000_0000, b"\x01" * 64, 64)], 0x8000_0000))
    with pytest.raises(ChronoError) as info:
        plan_boot(128 * MiB, kernel=kernel, bios=firmware)
    one_line_error(info, ImageError, "--kernel", "overlaps the firmware", "at 0x80200000 or up")


def test_elf_linked_outside_ram_is_an_image_error(write):
    kernel = write("low.elf", make_elf([(0x4000_0000, b"\x01" * 64, 64)], 0x4000_0000))
    with pytest.raises(ChronoError) as info:
        plan_boot(128 * MiB, kernel=kernel)
    one_line_error(info, ImageError, "lies outside RAM", "link it to run from RAM")


def test_elf_linked_above_ram_asks_for_more_ram(write):
    kernel = write("high.elf", make_elf([(0x9000_0000, b"\x01" * 64, 64)], 0x9000_0000))
    with pytest.raises(ChronoError) as info:
        plan_boot(128 * MiB, kernel=kernel)
    one_line_error(info, ImageError, "use --ram 512M")


@pytest.mark.parametrize("ram", [10 * MiB, 100 * GiB, 64 * MiB + 1, 0, -4096])
def test_absurd_ram_size_is_a_usage_error(bare_elf, ram):
    with pytest.raises(ChronoError) as info:
        plan_boot(ram, kernel=bare_elf)
    one_line_error(info, UsageError, "16 MiB", "64 GiB")


def test_options_without_a_kernel_are_usage_errors(firmware, write):
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB)
    one_line_error(info, UsageError, "nothing to boot")
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, bios=firmware, initrd=write("rd", b"x"))
    one_line_error(info, UsageError, "--initrd needs --kernel")
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, bios=firmware, append="quiet")
    one_line_error(info, UsageError, "--append needs --kernel")


def test_missing_or_bad_files_in_a_plan_name_their_option(firmware, tmp_path, write):
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, kernel=tmp_path / "absent", bios=firmware)
    one_line_error(info, ImageError, "--kernel", "absent", "no such file")
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, kernel=write("Image", linux_image()), bios=tmp_path / "nofw.bin")
    one_line_error(info, ImageError, "--bios", "nofw.bin")
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, kernel=write("Image", linux_image()), bios=firmware, initrd=tmp_path / "nord")
    one_line_error(info, ImageError, "--initrd", "nord")


def test_compressed_kernel_is_refused_with_a_hint(firmware, write):
    with pytest.raises(ChronoError) as info:
        plan_boot(64 * MiB, kernel=write("Image.gz", gzip.compress(linux_image())), bios=firmware)
    one_line_error(info, ImageError, "Image.gz", "gzip", "gunzip")


# --- Board configuration --------------------------------------------------------------

def test_isa_string_is_in_canonical_order():
    assert isa_string(("zifencei", "c", "i", "a", "m", "zicsr", "zicntr")) == "rv64imac_zicntr_zicsr_zifencei"
    assert isa_string(("i", "m", "a", "f", "d", "c", "v", "h", "svpbmt", "zba", "zicsr", "xfoo", "zfh")) == \
        "rv64imafdcvh_zicsr_zfh_zba_svpbmt_xfoo"


@pytest.mark.parametrize("extensions", [("m", "a"), ("i", "g"), ("i", "e"), ("i", "i"), ("i", "q1"), ("i", "")])
def test_bad_isa_extensions_are_usage_errors(extensions):
    with pytest.raises(UsageError):
        BoardConfig(64 * MiB, isa_extensions=extensions)


def test_board_config_rejects_unsupported_choices():
    with pytest.raises(UsageError):
        BoardConfig(64 * MiB, mmu_type="riscv,sv57")
    with pytest.raises(UsageError):
        BoardConfig(64 * MiB, hart_count=2)
    with pytest.raises(UsageError):
        BoardConfig(64 * MiB, initrd=(0x1000, 0x2000))
    assert BoardConfig(64 * MiB, mmu_type="sv39").mmu_type == "riscv,sv39"


# --- End to end under QEMU -------------------------------------------------------------

@needs_opensbi
@needs_gcc
@pytest.mark.skipif(QEMU is None, reason="qemu-system-riscv64 not installed")
def test_opensbi_boots_a_payload_from_the_plan_under_qemu(tmp_path):
    """QEMU runs our plan verbatim (segments via -device loader, our tree via
    -dtb, a stub setting a0/a1/a2): OpenSBI fw_dynamic must read our tree and
    info struct and enter the S-mode payload, which checks a0/a1 and powers off
    through SBI SRST (so through our tree's sifive,test node)."""
    source = tmp_path / "payload.S"
    source.write_text("""
    .globl _start
_start: mv s0, a0
        mv s1, a1
        bnez s0, fail
        lwu t0, 0(s1)
        li t1, 0xedfe0dd0
        bne t0, t1, fail
        la a0, ok
        call puts
        li a7, 0x53525354
        li a6, 0
        li a0, 0
        li a1, 0
        ecall
fail:   la a0, bad
        call puts
1:      j 1b
puts:   mv t2, a0
2:      lbu a0, 0(t2)
        beqz a0, 3f
        li a7, 1
        ecall
        addi t2, t2, 1
        j 2b
3:      ret
ok:     .asciz "payload: hart 0, device tree ok\\n"
bad:    .asciz "payload: bad a0/a1\\n"
""")
    payload = tmp_path / "payload.elf"
    subprocess.run([CROSS_GCC, "-nostdlib", "-nostartfiles", "-static", "-march=rv64imac", "-mabi=lp64",
                    "-Wl,-N", "-Wl,-Ttext=0x80200000", "-o", str(payload), str(source)],
                   check=True, capture_output=True)
    image, _ = plan_boot(128 * MiB, kernel=payload, bios=OPENSBI / "fw_dynamic.bin")

    args = [QEMU, "-M", "virt", "-m", "128M", "-bios", "none", "-nographic", "-monitor", "none", "-serial", "stdio"]
    for i, (address, data) in enumerate(image.segments):
        path = tmp_path / f"seg{i}.bin"
        path.write_bytes(data)
        if address == image.a1:
            args += ["-dtb", str(path)]      # QEMU puts a tree this small where we planned it
        else:
            args += ["-device", f"loader,file={path},addr={address:#x},force-raw=on"]
    # auipc t0,0; ld a1,24(t0); ld a2,32(t0); ld t1,40(t0); li a0,0; jr t1; then the three values
    stub = struct.pack("<6I", 0x00000297, 0x0182B583, 0x0202B603, 0x0282B303, 0x00000513, 0x00030067)
    stub += struct.pack("<3Q", image.a1, image.a2, image.entry)
    (tmp_path / "stub.bin").write_bytes(stub)
    args += ["-device", f"loader,file={tmp_path / 'stub.bin'},addr=0x80100000,force-raw=on,cpu-num=0"]

    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:       # a hang: OpenSBI or the payload got stuck
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"QEMU did not power off within 20 s; console:\n{out}")
    out = result.stdout
    assert "Platform Name             : chrono,virt" in out, out + result.stderr
    assert f"Domain0 Next Arg1         : {image.a1:#018x}" in out
    assert "Domain0 Next Address      : 0x0000000080200000" in out
    assert "Domain0 Next Mode         : S-mode" in out
    assert "payload: hart 0, device tree ok" in out
    assert result.returncode == 0


# --- ELFs linked the usual way, as QEMU loads them -------------------------------------

HELLO = r"""
        .section .text
        .globl _start
_start: la t0, msg
        li t1, 0x10000000
1:      lbu t2, 0(t0)
        beqz t2, 2f
        sb t2, 0(t1)
        addi t0, t0, 1
        j 1b
2:      la t0, counter                  // .bss: must be in RAM and zero
        ld t2, 0(t0)
        bnez t2, 3f
        li t1, 0x5555                   // sifive,test0: pass
        j 4f
3:      li t1, 0x13333                  // fail, code 1
4:      li t0, 0x100000
        sw t1, 0(t0)
5:      j 5b
        .section .rodata
msg:    .asciz "hello from an ELF that carries its headers\n"
        .section .bss
counter: .dword 0
"""


def build_hello(tmp_path, *link_flags):
    """The HELLO program linked with plain `gcc -nostdlib -Ttext=...` (no -N/-n:
    the first LOAD segment then starts a page below .text, with the ELF headers)."""
    source = tmp_path / "hello.S"
    source.write_text(HELLO)
    elf = tmp_path / "hello.elf"
    subprocess.run([CROSS_GCC, "-nostdlib", "-static", "-march=rv64imac", "-mabi=lp64",
                    "-mcmodel=medany", *link_flags, "-o", str(elf), str(source)],
                   check=True, capture_output=True)
    return elf


def first_load_segment(elf):
    """(p_paddr, p_offset) of the ELF's first PT_LOAD program header."""
    data = elf.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, _, p_offset, _, p_paddr = struct.unpack_from("<IIQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            return p_paddr, p_offset
    raise AssertionError("no PT_LOAD segment")


@needs_gcc
@pytest.mark.skipif(QEMU is None, reason="qemu-system-riscv64 not installed")
def test_elf_with_its_headers_below_ram_runs_as_on_qemu(tmp_path):
    elf = build_hello(tmp_path, "-Wl,-Ttext=0x80000000")
    assert first_load_segment(elf) == (0x7FFFF000, 0)       # the headers come first, outside RAM
    qemu = subprocess.run([QEMU, "-M", "virt", "-m", "128M", "-bios", "none", "-nographic",
                           "-monitor", "none", "-kernel", str(elf)], capture_output=True, timeout=20)
    ours = subprocess.run([*CHRONO, "run", "--kernel", str(elf)], capture_output=True, timeout=20)
    assert b"hello from an ELF that carries its headers" in qemu.stdout, qemu.stderr
    assert ours.stderr == b"", ours.stderr
    assert (ours.returncode, ours.stdout) == (qemu.returncode, qemu.stdout) == (0, qemu.stdout)


@needs_gcc
@pytest.mark.parametrize("link", [["-Wl,-Ttext=0x7ffff800"], ["-Wl,-Ttext=0x80000000", "-Wl,-Tbss=0x7fff0000"]],
                         ids=["text below RAM", "bss below RAM"])
def test_elf_with_sections_outside_ram_is_still_refused(tmp_path, link):
    elf = build_hello(tmp_path, *link)
    with pytest.raises(ChronoError) as info:
        plan_boot(128 * MiB, kernel=elf)
    one_line_error(info, ImageError, "lies outside RAM", "link it to run from RAM")


def test_headers_and_padding_outside_ram_are_skipped_but_sections_kept(write):
    """Hand-made: one segment from 0x7ffff000 whose only section starts at RAM base."""
    code = b"\x6f\x00\x00\x00"                            # j .
    elf = make_elf([(0x7FFF_F000, bytes(0x1000) + code, 0x1000 + len(code))], 0x8000_0000)
    elf = with_section(elf, ".text", 0x8000_0000, 0x1000 + 64 + 56, len(code))
    image, _ = plan_boot(64 * MiB, kernel=write("k.elf", elf))
    assert segment_at(image, 0x8000_0000) == code
    assert all(address >= 0x8000_0000 for address, _ in image.segments)


def with_section(elf: bytes, name: str, address: int, offset: int, size: int) -> bytes:
    """``elf`` (from make_elf, without sections) given one SHF_ALLOC PROGBITS section."""
    shstrtab = b"\0" + name.encode() + b"\0.shstrtab\0"
    shoff = len(elf) + len(shstrtab) + (-(len(elf) + len(shstrtab)) % 8)
    body = bytearray(elf + shstrtab + bytes(shoff - len(elf) - len(shstrtab)))

    def sh(name_at, kind, flags, addr, off, length):
        return struct.pack("<IIQQQQIIQQ", name_at, kind, flags, addr, off, length, 0, 0, 1, 0)
    body += bytes(64) + sh(1, 1, 6, address, offset, size) + sh(len(name) + 2, 3, 0, 0, len(elf), len(shstrtab))
    struct.pack_into("<Q", body, 40, shoff)                # e_shoff
    struct.pack_into("<HHH", body, 58, 64, 3, 2)           # e_shentsize, e_shnum, e_shstrndx
    return bytes(body)
