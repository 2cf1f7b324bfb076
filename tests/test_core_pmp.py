"""Physical memory protection, as firmware probes and uses it.

OpenSBI discovers PMP by writing all-ones to pmpaddr and reading back the
implemented bits, relies on WARL clean-up of pmpcfg, locks entries, and then
runs S-mode behind a NAPOT entry.  Checked: those WARL behaviours, locked
entries ignoring writes (including the TOR neighbour), S/U-mode accesses
outside every entry faulting while M-mode is fine, locked entries binding
M-mode (even for a page it touched before the lock), priority of the
lowest-numbered entry, partial matches, NAPOT sizes, and PMP applied to
page-table walks.
"""

import struct

import pytest

import rvasm

RAM = rvasm.RAM_BASE
OUTSIDE = RAM + 0x80_0000           # a RAM page no S-mode entry covers
R, W, X, L = 0x01, 0x02, 0x04, 0x80
TOR, NA4, NAPOT = 0x08, 0x10, 0x18
ADDR_MASK = (1 << 54) - 1


def napot(base, size):
    return (base >> 2) | ((size >> 3) - 1)


def test_pmpaddr_keeps_54_bits():
    g = rvasm.boot("""
main:
        li t0, -1
        csrw pmpaddr0, t0
        csrr a0, pmpaddr0
        csrw pmpaddr15, t0
        csrr a1, pmpaddr15
        csrw 0x3c0, t0                  // pmpaddr16: not implemented, reads 0
        csrr a2, 0x3c0
        csrw pmpcfg2, t0                // entries 8-15
        csrr a3, pmpcfg2
        csrw 0x3a4, t0                  // pmpcfg4: not implemented, reads 0
        csrr a4, 0x3a4
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(10) == ADDR_MASK
    assert m.reg(11) == ADDR_MASK
    assert m.reg(12) == 0
    # 0xff per entry is L|A=NAPOT|XWR plus the two reserved bits, which read 0.
    assert m.reg(13) == 0x9F9F9F9F9F9F9F9F
    assert m.reg(14) == 0


def test_pmpcfg_write_only_without_read_is_cleaned_up():
    g = rvasm.boot(f"""
main:
        li t0, {(NAPOT | W) | (NAPOT | W | X) << 8 | (NAPOT | R | W | X) << 16 | 0x60 << 24:#x}
        csrw pmpcfg0, t0
        csrr a0, pmpcfg0
        EXIT 0
""")
    assert g.run_to_exit() == 0
    cfg = g.machine.reg(10).to_bytes(8, "little")
    assert cfg[0] == NAPOT                  # R=0 W=1 is reserved: W reads back 0
    assert cfg[1] == NAPOT | X
    assert cfg[2] == NAPOT | R | W | X
    assert cfg[3] == 0                      # reserved bits 6:5 read 0


def test_locked_entries_ignore_writes():
    g = rvasm.boot(f"""
main:
        li t0, -1
        csrw pmpaddr0, t0
        li t0, {L | NAPOT | R | W | X}
        csrw pmpcfg0, t0                // lock entry 0 (all memory, RWX)
        csrw pmpcfg0, zero              // ignored for entry 0
        csrw pmpaddr0, zero             // ignored
        csrr a0, pmpcfg0
        csrr a1, pmpaddr0
        li t0, {(L | NAPOT | R | W | X) | (TOR | R) << 8:#x}
        csrw pmpcfg0, t0                // entry 1 is not locked: this lands
        csrr a2, pmpcfg0
        // Locking a TOR entry also locks the pmpaddr below it.
        li t0, {RAM >> 2:#x}
        csrw pmpaddr2, t0
        li t0, {(RAM + 0x100_0000) >> 2:#x}
        csrw pmpaddr3, t0
        li t0, {(L | NAPOT | R | W | X) | (TOR | R) << 8 | (L | TOR | R | W | X) << 24:#x}
        csrw pmpcfg0, t0
        csrw pmpaddr2, zero             // ignored: entry 3 is locked TOR
        csrr a3, pmpaddr2
        csrw pmpaddr1, zero             // entry 1 is unlocked, entry 2 off: lands
        csrr a4, pmpaddr1
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(10) & 0xFF == L | NAPOT | R | W | X
    assert m.reg(11) == ADDR_MASK
    assert m.reg(12) & 0xFFFF == (L | NAPOT | R | W | X) | (TOR | R) << 8
    assert m.reg(13) == RAM >> 2
    assert m.reg(14) == 0


def s_mode_guest(pmp_setup: str, s_body: str, m_body: str = "", mode: str = "S") -> rvasm.Guest:
    enter = "ENTER_S" if mode == "S" else "ENTER_U"
    return rvasm.boot(f"""
main:
{m_body}
{pmp_setup}
        {enter} lower
lower:
{s_body}
        EXIT 0
""")


# Entry 0: TOR from 0 up to RAM + 4 MiB, RWX: devices, the program, not OUTSIDE.
LOW_ONLY = f"""
        li t0, {(RAM + 0x40_0000) >> 2:#x}
        csrw pmpaddr0, t0
        li t0, {TOR | R | W | X}
        csrw pmpcfg0, t0
"""


@pytest.mark.parametrize("mode", ["S", "U"])
@pytest.mark.parametrize("insn, cause", [("ld a0, 0(s1)", 5), ("sd s1, 0(s1)", 7),
                                         ("amoadd.d a0, s1, (s1)", 7), ("jalr s1", 1)])
def test_lower_mode_access_outside_every_entry_faults(mode, insn, cause):
    g = s_mode_guest(LOW_ONLY, f"""
        li s1, {OUTSIDE:#x}
bad:
        {insn}
""", m_body=f"""
        li t0, {OUTSIDE:#x}
        ld a1, 0(t0)                    // M-mode: no entry matches, allowed
        li t1, 5
        sd t1, 8(t0)
""", mode=mode)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    epc = OUTSIDE if cause == 1 else g.sym("bad")
    assert (t.cause, t.epc, t.tval) == (cause, epc, OUTSIDE)
    assert (t.status >> 11) & 3 == (1 if mode == "S" else 0)
    assert g.u64(OUTSIDE + 8) == 5
    assert g.u64(OUTSIDE) == 0


def test_supervisor_cannot_even_fetch_without_pmp_entries():
    g = s_mode_guest("", "        li a0, 1")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (1, g.sym("lower"), g.sym("lower"))


def test_napot_entry_over_all_memory_lets_supervisor_run():
    g = s_mode_guest("        PMP_ALLOW_ALL", f"""
        li s1, {OUTSIDE:#x}
        li t0, 77
        sd t0, 0(s1)
        ld a0, 0(s1)
        li t1, UART
        li t0, 'S'
        sb t0, 0(t1)
""")
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 77
    assert g.machine.console_read() == b"S"
    assert g.machine.priv == 1


def test_lowest_numbered_matching_entry_decides():
    """Entry 0 makes one page read-only; entry 1 (all memory, RWX) comes after."""
    g = s_mode_guest(f"""
        li t0, {napot(OUTSIDE, 4096):#x}
        csrw pmpaddr0, t0
        li t0, -1
        csrw pmpaddr1, t0
        li t0, {(NAPOT | R) | (NAPOT | R | W | X) << 8:#x}
        csrw pmpcfg0, t0
""", f"""
        li s1, {OUTSIDE:#x}
        ld a0, 0(s1)                    // allowed by entry 0
        li t0, 4096
        add t0, t0, s1
        sd a0, 0(t0)                    // next page: entry 1
bad:
        sd a0, 0(s1)
""")
    g.machine.write_phys(OUTSIDE, struct.pack("<Q", 31))
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (7, g.sym("bad"), OUTSIDE)
    assert g.machine.reg(10) == 31
    assert g.u64(OUTSIDE + 4096) == 31


def test_partially_matching_entry_fails_the_access():
    """An NA4 entry covering half of an aligned 8-byte load: the load fails even
    though a later entry would allow all of it."""
    g = s_mode_guest(f"""
        li t0, {OUTSIDE >> 2:#x}
        csrw pmpaddr0, t0
        li t0, -1
        csrw pmpaddr1, t0
        li t0, {(NA4 | R | W) | (NAPOT | R | W | X) << 8:#x}
        csrw pmpcfg0, t0
""", f"""
        li s1, {OUTSIDE:#x}
        lw a0, 0(s1)                    // all 4 bytes inside entry 0: fine
bad:
        ld a1, 0(s1)
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (5, g.sym("bad"), OUTSIDE)


def test_napot_region_size():
    size = 8192
    g = s_mode_guest(f"""
        li t0, {napot(RAM, 0x40_0000):#x}         // the program
        csrw pmpaddr0, t0
        li t0, {napot(OUTSIDE, size):#x}
        csrw pmpaddr1, t0
        li t0, {(NAPOT | R | W | X) | (NAPOT | R | W) << 8:#x}
        csrw pmpcfg0, t0
""", f"""
        li s1, {OUTSIDE:#x}
        ld a0, 0(s1)
        li t0, {size - 8}
        add t0, t0, s1
        ld a0, 0(t0)                    // last dword inside
        li t0, {size}
        add s2, s1, t0
bad:
        ld a0, 0(s2)                    // first byte past the region
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (5, g.sym("bad"), OUTSIDE + size)


def test_locked_entry_binds_machine_mode_even_for_a_cached_page():
    g = rvasm.boot(f"""
main:
        li s1, {OUTSIDE:#x}
        ld a0, 0(s1)                    // M-mode touches the page first
        li t0, {napot(OUTSIDE, 4096):#x}
        csrw pmpaddr0, t0
        li t0, {L | NAPOT}              // locked, no permissions
        csrw pmpcfg0, t0
        li t0, {OUTSIDE + 4096:#x}
        ld a1, 0(t0)                    // the next page is still fine
bad:
        ld a2, 0(s1)
        EXIT 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (5, g.sym("bad"), OUTSIDE)


def test_page_table_walk_is_checked_by_pmp():
    """Page tables outside every PMP entry: the walk itself fails with an
    access fault of the access's type (here the first fetch in S-mode)."""
    pool = RAM + 0x60_0000
    g = rvasm.boot(f"""
main:
{LOW_ONLY}
        la t0, satp_value
        ld t0, 0(t0)
        csrw satp, t0
        ENTER_S lower
lower:
        EXIT 0
        .data
        .balign 8
satp_value: .dword 0
""")
    pt = rvasm.PageTables(g.machine, pool, rvasm.SATP_SV39)
    pt.map(RAM, RAM, rvasm.PTE_R | rvasm.PTE_W | rvasm.PTE_X | rvasm.PTE_A | rvasm.PTE_D, level=2)
    g.set_u64("satp_value", pt.satp)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc) == (1, g.sym("lower"))
