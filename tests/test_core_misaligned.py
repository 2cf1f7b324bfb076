"""Misaligned loads and stores just work (no trap), with the right values,
also when they cross a 4 KiB page boundary.

Linux and OpenSBI both assume this core handles misaligned accesses in
hardware (no emulation trap is taken), so every width, signedness and offset,
compressed forms included, must read and write exactly the bytes a byte-wise
access would.  Misaligned atomics are the exception: they trap.
"""

import struct

import pytest

import rvasm

PAGE = 4096
# Loads: (mnemonic, offset into a 2-page buffer).  a-registers give compressed
# encodings (c.lw / c.ld), t-registers full-size ones.
LOADS = [(op, off) for op, offs in {
    "lh": [1, 0xFFF, 0x1001], "lhu": [1, 0xFFF],
    "lw": [1, 2, 3, 0xFFD, 0xFFE, 0xFFF], "lwu": [3, 0xFFF],
    "ld": [1, 2, 3, 4, 5, 6, 7, 0xFF9, 0xFFA, 0xFFC, 0xFFF],
}.items() for off in offs]
FORMATS = {"lh": "<h", "lhu": "<H", "lw": "<i", "lwu": "<I", "ld": "<q"}
SIZES = {"sh": 2, "sw": 4, "sd": 8}
STORES = [("sh", 1), ("sw", 5), ("sd", 11), ("sd", 0xFFC), ("sw", 0xFFE), ("sh", 0xFFF),
          ("sd", 0x1FF9), ("sw", 0x1FFF), ("sh", 0x2001), ("sd", 0xFFF)]


def pattern(n):
    return bytes((i * 7 + 3 + (i >> 8)) & 0xFF for i in range(n))


def program():
    lines = ["main:", "la s1, buf", "la s2, results", "la s3, sbuf"]
    for i, (op, off) in enumerate(LOADS):
        base, dest = ("a1", "a2") if i % 2 else ("t1", "t2")
        lines += [f"li t3, {off}", f"add {base}, s1, t3", f"{op} {dest}, 0({base})",
                  f"sd {dest}, {8 * i}(s2)"]
    for i, (op, off) in enumerate(STORES):
        base, src = ("a1", "a2") if i % 2 else ("t1", "t2")
        lines += [f"li t3, {off}", f"add {base}, s3, t3", f"li {src}, {store_value(i):#x}",
                  f"{op} {src}, 0({base})"]
    lines += ["EXIT 0", ".data", ".balign 4096", "buf: .skip 8192", "sbuf: .skip 12288",
              f"results: .skip {8 * len(LOADS)}"]
    return "\n".join(lines)


def store_value(i):
    return (0x8877665544332211 + i * 0x0101010101010101) & (2**64 - 1)


@pytest.fixture(scope="module")
def ran():
    g = rvasm.boot(program())
    g.machine.write_phys(g.sym("buf"), pattern(8192))
    code = g.run_to_exit()
    return g, code


def test_no_trap_is_taken(ran):
    g, code = ran
    assert g.trap.count == 0, g.trap
    assert code == 0


@pytest.mark.parametrize("index", range(len(LOADS)), ids=[f"{op}@{off:#x}" for op, off in LOADS])
def test_misaligned_load_value(ran, index):
    g, _ = ran
    op, off = LOADS[index]
    fmt = FORMATS[op]
    expected = struct.unpack(fmt, pattern(8192)[off:off + struct.calcsize(fmt)])[0]
    assert g.u64("results", index) == expected & (2**64 - 1)


def test_misaligned_stores_write_exactly_their_bytes(ran):
    g, _ = ran
    expected = bytearray(3 * PAGE)
    for i, (op, off) in enumerate(STORES):
        size = SIZES[op]
        expected[off:off + size] = store_value(i).to_bytes(8, "little")[:size]
    assert g.read("sbuf", 3 * PAGE) == bytes(expected)


def test_compressed_misaligned_access():
    """c.lw/c.sw/c.ld/c.sd and the sp-relative forms with a misaligned base."""
    g = rvasm.boot("""
main:
        la a0, buf
        li t0, 0xffd                    // 3 bytes before the next page: 8-byte accesses cross it
        add a0, a0, t0
        li a1, 0x1122334455667788
        c.sd a1, 0(a0)
        c.ld a2, 0(a0)
        c.sw a1, 8(a0)
        c.lw a3, 8(a0)
        mv sp, a0
        c.sdsp a1, 16(sp)
        c.ldsp a4, 16(sp)
        c.swsp a1, 24(sp)
        c.lwsp a5, 24(sp)
        EXIT 0
        .data
        .balign 4096
buf:    .skip 8192
""")
    assert g.run_to_exit() == 0
    m = g.machine
    value = 0x1122334455667788
    assert m.reg(12) == value
    assert m.reg(13) == 0x55667788
    assert m.reg(14) == value
    assert m.reg(15) == 0x55667788
    base = g.sym("buf") + 0xFFD
    assert m.read_phys(base, 8) == value.to_bytes(8, "little")
    assert m.read_phys(base + 8, 4) == (0x55667788).to_bytes(4, "little")


@pytest.mark.parametrize("insn, causes", [
    ("amoadd.w a2, a1, (a0)", (6, 7)),
    ("amoswap.d a2, a1, (a0)", (6, 7)),
    ("sc.w a2, a1, (a0)", (6, 7)),
    ("lr.d a2, (a0)", (4, 5)),
])
def test_misaligned_atomics_trap(insn, causes):
    """Atomics may not be split: a misaligned one raises address-misaligned or
    access fault (the spec allows either), with mtval = the address, and
    memory is left alone."""
    g = rvasm.boot(f"""
main:
        la a0, word
        addi a0, a0, 1
        li a1, 5
bad:
        {insn}
        EXIT 0
        .data
        .balign 16
word:   .dword 0x0102030405060708, 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert t.cause in causes
    assert (t.epc, t.tval) == (g.sym("bad"), g.sym("word") + 1)
    assert g.u64("word") == 0x0102030405060708


@pytest.mark.parametrize("insn, cause", [
    ("lh a2, 0x7ff(zero)", 5), ("lhu a2, 1(zero)", 5), ("lw a2, 0x7fd(zero)", 5),
    ("sh a1, 0x7ff(zero)", 7), ("sd a1, 1(zero)", 7),
])
def test_misaligned_access_to_unmapped_page_zero_faults(insn, cause):
    """A misaligned access near address 0 (no RAM, no device) is an access
    fault like any other; its TLB key (page 0 plus low bits) once equalled
    the empty-entry marker, and the access went through an empty entry."""
    g = rvasm.boot(f"""
main:
        li a1, 5
bad:
        {insn}
        EXIT 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert t.cause == cause
    assert t.epc == g.sym("bad")
