"""Sv39 and Sv48 address translation as an OS uses it.

Page tables are written from Python into guest RAM (rvasm.PageTables); the
guest enters S-mode through mret and touches memory through the mappings.
Checked: translation for low, high (sign-extended) and Sv48-only addresses;
hardware A/D updates visible in the PTEs in RAM (and nothing written into
non-leaf entries); store page faults with stval; satp WARL (Sv57 and mode 1
writes are ignored); sfence.vma making a changed PTE visible; 2 MiB
megapages; misaligned accesses over two discontiguous pages; MPRV.
"""

import struct

import pytest

import rvasm
from rvasm import PTE_A, PTE_D, PTE_R, PTE_U, PTE_V, PTE_W, PTE_X, SATP_SV39, SATP_SV48, PageTables

RAM = rvasm.RAM_BASE
POOL = RAM + 0x40_0000              # page-table pages come from here
P1, P2, P3 = RAM + 0x60_0000, RAM + 0x60_1000, RAM + 0x60_5000      # data pages
MEGA_PA = RAM + 0x80_0000           # 2 MiB aligned
IDENTITY = PTE_R | PTE_W | PTE_X | PTE_A | PTE_D

MODES = {
    "sv39": (SATP_SV39, 0x0000_0000_4000_0000),
    "sv39-high": (SATP_SV39, 0xFFFF_FFC0_0000_0000),    # kernel half, sign-extended
    "sv48": (SATP_SV48, 0x0000_7F12_0000_0000),         # beyond Sv39's reach
}


def paging_guest(mode: int, s_body: str, m_prelude: str = ""):
    """A guest that builds nothing itself: it loads satp from `satp_value`,
    enters S-mode at s_main and runs s_body.  RAM is identity mapped with a
    1 GiB page (code, data, tohost, page tables) so S-mode can exit."""
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        {m_prelude}
        la t0, satp_value
        ld t0, 0(t0)
        csrw satp, t0
        sfence.vma
        ENTER_S s_main
s_main:
{s_body}
        EXIT 0

        .data
        .balign 8
satp_value:     .dword 0
params:         .dword 0, 0, 0, 0, 0, 0, 0, 0

        .text
        .balign 4096
xpage:                                  // code pages to map somewhere else
        li a3, 0x77
        ret
        .balign 4096
xpage2:
        li a3, 0x99
        ret
        .balign 4096
""")
    pt = PageTables(g.machine, POOL, mode)
    pt.map(RAM, RAM, IDENTITY, level=2)
    g.set_u64("satp_value", pt.satp)
    return g, pt


def u64(g, pa):
    return struct.unpack("<Q", g.machine.read_phys(pa, 8))[0]


@pytest.mark.parametrize("name", list(MODES))
def test_translation_sets_accessed_and_dirty_bits(name):
    mode, va = MODES[name]
    g, pt = paging_guest(mode, f"""
        li s1, {va:#x}
        ld a0, 16(s1)                   // read page: A only
        li s2, {va + 0x1000:#x}
        li t0, 0x5a5a5a5a5a5a5a5a
        sd t0, 8(s2)                    // written page: A and D
        li s3, {va + 0x2000:#x}
        jalr s3                         // code page: A only
""")
    g.machine.write_phys(P1 + 16, struct.pack("<Q", 0x1122334455667788))
    pte_read = pt.map(va, P1, PTE_R | PTE_W)
    pte_write = pt.map(va + 0x1000, P2, PTE_R | PTE_W)
    pte_exec = pt.map(va + 0x2000, g.sym("xpage"), PTE_R | PTE_X)
    nonleaf = [pt.pte_address(va, level) for level in range(1, pt.levels)]
    nonleaf_before = [u64(g, a) for a in nonleaf]

    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(10) == 0x1122334455667788
    assert u64(g, P2 + 8) == 0x5A5A5A5A5A5A5A5A
    assert m.reg(13) == 0x77
    assert u64(g, pte_read) & (PTE_A | PTE_D) == PTE_A
    assert u64(g, pte_write) & (PTE_A | PTE_D) == PTE_A | PTE_D
    assert u64(g, pte_exec) & (PTE_A | PTE_D) == PTE_A
    # Everything else in the PTEs is untouched, and so are the non-leaf entries.
    assert u64(g, pte_read) == ((P1 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_A
    assert [u64(g, a) for a in nonleaf] == nonleaf_before


@pytest.mark.parametrize("name", list(MODES))
def test_store_to_read_only_page_is_a_store_page_fault(name):
    mode, va = MODES[name]
    g, pt = paging_guest(mode, f"""
        li s1, {va + 0x18:#x}
        ld a0, 0(s1)                    // reading is fine
        li t0, 1
bad:
        sd t0, 0(s1)
""")
    g.machine.write_phys(P1 + 0x18, struct.pack("<Q", 42))
    pte = pt.map(va, P1, PTE_R | PTE_A)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (15, g.sym("bad"), va + 0x18)
    assert (t.status >> 11) & 3 == 1                    # from S-mode
    assert g.machine.reg(10) == 42
    assert u64(g, P1 + 0x18) == 42                      # not written
    assert not u64(g, pte) & PTE_D                      # and not marked dirty


@pytest.mark.parametrize("flags, insn, cause", [
    (PTE_R | PTE_A, "amoadd.d a0, t0, (s1)", 15),       # AMO needs W
    (PTE_X | PTE_A, "ld a0, 0(s1)", 13),                # execute-only, MXR clear
    (PTE_R | PTE_W | PTE_A | PTE_D, "jalr s1", 12),     # not executable
    (0, "ld a0, 0(s1)", 13),                            # invalid
    (PTE_W | PTE_A | PTE_D, "ld a0, 0(s1)", 13),        # W without R is reserved
    (PTE_R | PTE_W | PTE_U | PTE_A | PTE_D, "ld a0, 0(s1)", 13),   # user page, SUM clear
])
def test_page_faults(flags, insn, cause):
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        li s1, {va:#x}
        li t0, 1
bad:
        {insn}
""")
    address = pt.pte_address(va)
    g.machine.write_phys(address, struct.pack("<Q", ((P1 >> 12) << 10) | flags | (PTE_V if flags else 0)))
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    # A fetch fault is taken at the jump target; data faults at the access.
    epc = va if cause == 12 else g.sym("bad")
    assert (t.cause, t.epc, t.tval) == (cause, epc, va)


def test_sum_lets_supervisor_touch_user_pages():
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        li t0, 1 << 18
        csrs sstatus, t0                // SUM
        li s1, {va:#x}
        ld a0, 0(s1)
""")
    g.machine.write_phys(P1, struct.pack("<Q", 99))
    pt.map(va, P1, PTE_R | PTE_W | PTE_U)
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 99


def test_non_canonical_address_faults_in_sv39_but_maps_in_sv48():
    va = 0x0000_0080_0000_0000            # bit 39 set, bits 63:40 clear
    body = f"""
        li s1, {va:#x}
bad:
        ld a0, 0(s1)
"""
    g, pt = paging_guest(SATP_SV39, body)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (13, g.sym("bad"), va)

    g, pt = paging_guest(SATP_SV48, body)
    g.machine.write_phys(P1, struct.pack("<Q", 1234))
    pt.map(va, P1, PTE_R)
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 1234


def test_satp_writes_with_unsupported_modes_are_ignored():
    ppn = POOL >> 12
    g = rvasm.boot(f"""
main:
        li t0, {(SATP_SV39 << 60) | ppn:#x}
        csrw satp, t0
        csrr a0, satp
        li t0, {(10 << 60) | (ppn + 1):#x}      // Sv57
        csrw satp, t0
        csrr a1, satp
        li t0, {(1 << 60) | (ppn + 2):#x}       // mode 1 (reserved)
        csrw satp, t0
        csrr a2, satp
        li t0, {(SATP_SV48 << 60) | (ppn + 3):#x}
        csrw satp, t0
        csrr a3, satp
        li t0, {(15 << 60) | (ppn + 4):#x}      // reserved
        csrw satp, t0
        csrr a4, satp
        csrw satp, zero                         // bare
        csrr a5, satp
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    sv39 = (SATP_SV39 << 60) | ppn
    sv48 = (SATP_SV48 << 60) | (ppn + 3)
    assert [m.reg(r) for r in range(10, 16)] == [sv39, sv39, sv39, sv48, sv48, 0]


@pytest.mark.parametrize("fence", ["sfence.vma", "sfence.vma s1", "sfence.vma s1, zero"])
def test_sfence_vma_makes_a_changed_pte_visible(fence):
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        la t0, params
        ld s2, 0(t0)                    // address of the PTE
        ld s3, 8(t0)                    // its new value
        li s1, {va:#x}
        ld a0, 0(s1)                    // through the old mapping (now cached)
        sd a0, 8(s1)                    // and a store, so the write path is cached too
        sd s3, 0(s2)                    // remap va to P2
        {fence}
        ld a1, 0(s1)
        li t0, 0x3333
        sd t0, 16(s1)
""")
    g.machine.write_phys(P1, struct.pack("<Q", 0x1111))
    g.machine.write_phys(P2, struct.pack("<Q", 0x2222))
    pte = pt.map(va, P1, PTE_R | PTE_W | PTE_A | PTE_D)
    g.set_u64("params", pte, 0)
    g.set_u64("params", ((P2 >> 12) << 10) | PTE_V | PTE_R | PTE_W | PTE_A | PTE_D, 1)
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 0x1111
    assert g.machine.reg(11) == 0x2222
    assert u64(g, P2 + 16) == 0x3333
    assert u64(g, P1 + 16) == 0


@pytest.mark.parametrize("name", list(MODES))
def test_megapage_mapping(name):
    mode, va = MODES[name]
    mega = va + 0x20_0000
    g, pt = paging_guest(mode, f"""
        li s1, {mega:#x}
        li t0, 0xabcdef
        li t1, 0x1234
        add t1, t1, s1
        sd t0, 0(t1)
        li t1, 0x1ffff8
        add t1, t1, s1
        sd t0, 0(t1)
        li t1, 0x123450
        add t1, t1, s1
        ld a0, 0(t1)
""")
    g.machine.write_phys(MEGA_PA + 0x123450, struct.pack("<Q", 777))
    pte = pt.map(mega, MEGA_PA, PTE_R | PTE_W, level=1)
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 777
    assert u64(g, MEGA_PA + 0x1234) == 0xABCDEF
    assert u64(g, MEGA_PA + 0x1FFFF8) == 0xABCDEF
    assert u64(g, pte) & (PTE_A | PTE_D) == PTE_A | PTE_D


def test_misaligned_megapage_is_a_page_fault():
    va = MODES["sv39"][1] + 0x20_0000
    g, pt = paging_guest(SATP_SV39, f"""
        li s1, {va + 8:#x}
bad:
        ld a0, 0(s1)
""")
    pt.map(va, MEGA_PA + 0x1000, PTE_R | PTE_A, level=1)     # PPN[0] != 0
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.tval) == (13, va + 8)


def test_misaligned_access_over_two_discontiguous_pages():
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        li s1, {va + 0xffc:#x}
        ld a0, 0(s1)
        li s2, {va + 0xffa:#x}
        li t0, 0x8877665544332211
        sd t0, 0(s2)
""")
    g.machine.write_phys(P1 + 0xFF8, bytes(range(1, 9)))
    g.machine.write_phys(P3, bytes(range(0x11, 0x19)))
    pt.map(va, P1, PTE_R | PTE_W)
    pt.map(va + 0x1000, P3, PTE_R | PTE_W)         # P3 is not P1 + 4 KiB
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == int.from_bytes(bytes([5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14]), "little")
    assert g.machine.read_phys(P1 + 0xFFA, 6) == bytes([0x11, 0x22, 0x33, 0x44, 0x55, 0x66])
    assert g.machine.read_phys(P3, 2) == bytes([0x77, 0x88])


def test_misaligned_store_into_a_read_only_second_page_faults():
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        li s1, {va + 0xffc:#x}
        li t0, -1
bad:
        sd t0, 0(s1)
""")
    pt.map(va, P1, PTE_R | PTE_W | PTE_A | PTE_D)
    pt.map(va + 0x1000, P3, PTE_R | PTE_A)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc) == (15, g.sym("bad"))
    # stval is the access's address or that of the part that faulted.
    assert t.tval in (va + 0xFFC, va + 0x1000)
    assert g.machine.read_phys(P3, 4) == bytes(4)


def test_mprv_translates_machine_mode_data_accesses():
    """OpenSBI reads S-mode memory with mstatus.MPRV = 1, MPP = S."""
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, "", m_prelude=f"""
        la t0, satp_value
        ld t0, 0(t0)
        csrw satp, t0
        li t0, (1 << 17) | (1 << 11)    // MPRV, MPP = S
        csrs mstatus, t0
        li s1, {va:#x}
        ld a0, 0(s1)
        li t0, 1 << 17
        csrc mstatus, t0
        la t0, params
        ld a1, 0(t0)                    // physical again
""")
    g.machine.write_phys(P1, struct.pack("<Q", 0xFEED))
    g.set_u64("params", 0xBEEF)
    pt.map(va, P1, PTE_R)
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 0xFEED
    assert g.machine.reg(11) == 0xBEEF


def test_sfence_vma_makes_a_remapped_code_page_visible():
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        la t0, params
        ld s2, 0(t0)
        ld s3, 8(t0)
        li s1, {va:#x}
        jalr s1                         // runs xpage through va
        mv s4, a3
        sd s3, 0(s2)                    // remap va to xpage2
        sfence.vma
        jalr s1
""")
    pte = pt.map(va, g.sym("xpage"), PTE_R | PTE_X | PTE_A)
    g.set_u64("params", pte, 0)
    g.set_u64("params", ((g.sym("xpage2") >> 12) << 10) | PTE_V | PTE_R | PTE_X | PTE_A, 1)
    assert g.run_to_exit() == 0
    assert (g.machine.reg(20), g.machine.reg(13)) == (0x77, 0x99)


def test_fetch_fault_on_the_second_half_of_an_instruction():
    """A 32-bit instruction in the last 2 bytes of a mapped page, the next page
    unmapped: the fault's epc is the instruction, tval the part that faulted."""
    va = MODES["sv39"][1]
    g, pt = paging_guest(SATP_SV39, f"""
        li s1, {va + 0xffc:#x}
        jr s1
""")
    # c.nop, then the low half of addi a0, a0, 7 (0x00750513).
    g.machine.write_phys(P1 + 0xFFC, struct.pack("<HH", 0x0001, 0x0513))
    pt.map(va, P1, PTE_R | PTE_X | PTE_A)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (12, va + 0xFFE, va + 0x1000)
