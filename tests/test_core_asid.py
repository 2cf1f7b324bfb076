"""Address-space identifiers (satp.ASID) and sfence.vma as Linux uses them.

Two Sv39 address spaces (ASID 1 and 2, page tables written from Python) map
the same virtual pages to different physical ones; RAM is identity mapped with
a global 1 GiB page in both, so code, data and the page tables stay reachable.
Checked, on the interpreter and on the JIT (translating every block at once):
satp holds 16 ASID bits, as on QEMU's virt; switching satp back and forth
without any fence gives each address space its own data and code; and
sfence.vma by ASID, by address and both, including an address inside a
megapage other than the 4 KiB page that was used.

How the fences are observed: the guest rewrites PTEs and reads through them
before and after fencing.  A translation that was not fenced may still be the
old one; the spec allows a TLB to drop it at any time, chrono's keeps it, so
these tests pin chrono's behaviour (global mappings and other ASIDs survive a
fence of one ASID) as well as what the spec requires (fenced ones are gone).
"""

import pytest

import rvasm
from rvasm import PTE_A, PTE_D, PTE_G, PTE_R, PTE_W, PTE_X, SATP_SV39, PageTables

RAM = rvasm.RAM_BASE
POOL_A, POOL_B = RAM + 0x40_0000, RAM + 0x48_0000      # page-table pages of A and B
P1, P2, P3, P4, P5 = (RAM + 0x60_0000 + 0x1000 * i for i in range(5))
MEGA, MEGA2 = RAM + 0x80_0000, RAM + 0xA0_0000         # 2 MiB aligned
V, GV, CODE = 0x4000_0000, 0x4000_1000, 0x4000_2000    # 4 KiB pages
MV = 0x4020_0000                                        # a megapage
DATA = PTE_R | PTE_W | PTE_A | PTE_D
ASID_A, ASID_B = 1, 2

BOTH = pytest.mark.parametrize("jit", [False, True], ids=["interpreter", "jit"])


def asid_guest(s_body: str, jit: bool):
    """S-mode runs s_body with s0 = params, s1/s2 = the satp values of A and B;
    the two address spaces are built."""
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        ENTER_S s_main
s_main:
        la s0, params
        ld s1, 0(s0)
        ld s2, 8(s0)
{s_body}
        EXIT 0

        .data
        .balign 8
params:         .dword 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0

        .text
        .balign 4096
xpage:                                  // code mapped at CODE in A
        addi a3, a3, 1
        ret
        .balign 4096
xpage2:                                 // ... and in B
        addi a3, a3, 100
        ret
        .balign 4096
""", jit=jit, jit_threshold=1 if jit else 0)
    spaces = {}
    for name, pool, asid in (("a", POOL_A, ASID_A), ("b", POOL_B, ASID_B)):
        pt = PageTables(g.machine, pool, SATP_SV39)
        pt.map(RAM, RAM, DATA | PTE_X | PTE_G, level=2)
        pt.map(GV, P3, DATA | PTE_G)
        spaces[name] = (pt, pt.satp | (asid << 44))
    spaces["a"][0].map(V, P1, DATA)
    spaces["b"][0].map(V, P2, DATA)
    spaces["a"][0].map(CODE, g.sym("xpage"), PTE_R | PTE_X | PTE_A)
    spaces["b"][0].map(CODE, g.sym("xpage2"), PTE_R | PTE_X | PTE_A)
    spaces["a"][0].map(MV, MEGA, DATA, level=1)
    for pa, value in ((P1, 0x1111), (P2, 0x2222), (P3, 0x3333), (P4, 0x4444), (P5, 0x5555),
                      (MEGA + 0x5000, 0x6666), (MEGA2 + 0x5000, 0x7777)):
        g.set_u64(pa, value)
    g.set_u64("params", spaces["a"][1], 0)
    g.set_u64("params", spaces["b"][1], 1)
    return g, spaces


def leaf(pa: int, flags: int) -> int:
    return ((pa >> 12) << 10) | flags | 1


def set_rewrites(g, start: int, rewrites) -> None:
    """params[start] = how many, then (PTE address, new PTE) pairs."""
    g.set_u64("params", len(rewrites), start)
    for i, (address, pte) in enumerate(rewrites):
        g.set_u64("params", address, start + 1 + 2 * i)
        g.set_u64("params", pte, start + 2 + 2 * i)


REWRITE = """
        ld t1, {offset}(s0)             // rewrite PTEs: count, then address/value pairs
        addi t2, s0, {offset} + 8
1:      beqz t1, 2f
        ld t3, 0(t2)
        ld t4, 8(t2)
        sd t4, 0(t3)
        addi t2, t2, 16
        addi t1, t1, -1
        j 1b
2:
"""


@BOTH
def test_satp_holds_a_16_bit_asid(jit):
    g, spaces = asid_guest("""
        li t1, 0xffff << 44
        or t0, s1, t1                   // all ones in ASID, as Linux probes it
        csrw satp, t0
        csrr a0, satp
        li t1, -1
        csrw satp, t1                   // mode 15 is not supported: ignored
        csrr a1, satp
""", jit)
    assert g.run_to_exit() == 0
    expected = spaces["a"][0].satp | (0xFFFF << 44)
    assert g.m.reg(10) == expected
    assert g.m.reg(11) == expected


@BOTH
def test_switching_address_spaces_without_a_fence(jit):
    """Data and code at the same virtual pages, 20 switches, no sfence.vma."""
    g, _ = asid_guest(f"""
        li s3, {V:#x}
        li s4, {CODE:#x}
        li s5, 10
        li a0, 0
        li a3, 0
loop:
        csrw satp, s1
        ld t0, 0(s3)
        add a0, a0, t0
        jalr s4                         // a3 += 1 in A
        csrw satp, s2
        ld t0, 0(s3)
        add a0, a0, t0
        jalr s4                         // a3 += 100 in B
        addi s5, s5, -1
        bnez s5, loop
""", jit)
    assert g.run_to_exit() == 0
    assert g.m.reg(10) == 10 * (0x1111 + 0x2222)
    assert g.m.reg(13) == 10 * 101


@BOTH
def test_fence_of_one_asid_keeps_other_asids_and_global_mappings(jit):
    g, spaces = asid_guest(f"""
        li s3, {V:#x}
        li s4, {GV:#x}
        li s5, {MV + 0x5000:#x}
        csrw satp, s1                   // A: V, the global page, a megapage piece
        ld t0, 0(s3)
        ld t0, 0(s4)
        ld t0, 0(s5)
        csrw satp, s2                   // B: V, the global page
        ld t0, 0(s3)
        ld t0, 0(s4)
{REWRITE.format(offset=16)}
        li t5, {ASID_A}
        sfence.vma x0, t5               // every non-global translation of A
        ld a0, 0(s3)                    // B was not fenced
        ld a1, 0(s4)
        csrw satp, s1
        ld a2, 0(s3)                    // A's own page: the new mapping
        ld a3, 0(s4)                    // global: kept
        ld a4, 0(s5)                    // A's megapage: the new mapping
        sfence.vma x0, x0               // everything
        ld a5, 0(s4)
        csrw satp, s2
        ld a6, 0(s3)
""", jit)
    pa, pb = spaces["a"][0], spaces["b"][0]
    set_rewrites(g, 2, [
        (pa.pte_address(V), leaf(P4, DATA)),
        (pb.pte_address(V), leaf(P4, DATA)),
        (pa.pte_address(GV), leaf(P5, DATA | PTE_G)),
        (pb.pte_address(GV), leaf(P5, DATA | PTE_G)),
        (pa.pte_address(MV, 1), leaf(MEGA2, DATA)),
    ])
    assert g.run_to_exit() == 0
    regs = [g.m.reg(i) for i in range(10, 17)]
    assert regs == [0x2222, 0x3333, 0x4444, 0x3333, 0x7777, 0x5555, 0x4444]


@BOTH
def test_fence_of_one_address(jit):
    """By address, all ASIDs: the megapage holding it goes, other pages stay;
    then by address and ASID."""
    g, spaces = asid_guest(f"""
        li s3, {V:#x}
        li s5, {MV + 0x5000:#x}
        li s6, {MV + 0x1000:#x}
        csrw satp, s1
        ld t0, 0(s3)
        ld t0, 0(s5)
{REWRITE.format(offset=16)}
        sfence.vma s6, x0               // another 4 KiB page of the megapage
        ld a0, 0(s5)
        ld a1, 0(s3)                    // not this one
        li t5, {ASID_B}
        sfence.vma s3, t5               // V, but in B
        ld a2, 0(s3)
        li t5, {ASID_A}
        sfence.vma s3, t5               // V in A
        ld a3, 0(s3)
""", jit)
    pa = spaces["a"][0]
    set_rewrites(g, 2, [(pa.pte_address(V), leaf(P4, DATA)), (pa.pte_address(MV, 1), leaf(MEGA2, DATA))])
    assert g.run_to_exit() == 0
    assert [g.m.reg(i) for i in range(10, 14)] == [0x7777, 0x1111, 0x1111, 0x4444]
