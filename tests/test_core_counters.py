"""Zicntr counters: cycle, time, instret and their machine-mode versions.

The core keeps minstret and mcycle as an internal count plus an offset, so
writes must land exactly where the spec puts them: a CSR write takes effect
after the writing instruction, whose own increment is suppressed, so
``csrw minstret, 0`` followed at once by ``csrr minstret`` reads 0.  ECALL and
EBREAK do not retire (privileged spec, "Environment Call and Breakpoint"), so
they do not count either.  Lower modes may read the counters only where
mcounteren (and for U-mode scounteren) allow it; otherwise the read is an
illegal instruction.  The core models a 1 GHz CPU running one instruction
per cycle: a step is a cycle, idle time counts as cycles but not as
instructions.
"""

import pytest

import rvasm
from chrono.core.machine import Stop

CYCLE, TIME, INSTRET = 0xC00, 0xC01, 0xC02


def test_minstret_write_takes_effect_after_the_writing_instruction():
    g = rvasm.boot("""
main:
        csrw minstret, zero
        csrr a0, minstret               // no instruction retired since the write
        csrw minstret, zero
        nop
        nop
        nop
        csrr a1, minstret               // three
        li t0, 1000
        csrw minstret, t0
        csrr a2, minstret
        csrrw a3, minstret, zero        // reads the old value, writes 0
        csrr a4, minstret
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert [m.reg(r) for r in range(10, 15)] == [0, 3, 1000, 1001, 0]


def test_mcycle_write_takes_effect_after_the_writing_instruction():
    g = rvasm.boot("""
main:
        csrw mcycle, zero
        csrr a0, mcycle
        li t0, 500
        csrw mcycle, t0
        nop
        nop
        csrr a1, mcycle
        EXIT 0
""")
    assert g.run_to_exit() == 0
    assert (g.machine.reg(10), g.machine.reg(11)) == (0, 502)


def test_user_level_counters_mirror_the_machine_ones():
    g = rvasm.boot("""
main:
        li t0, 12345
        csrw minstret, t0
        csrr a0, minstret
        rdinstret a1
        csrr a2, mcycle
        rdcycle a3
        rdtime a4
        li t0, CLINT_MTIME
        ld a5, 0(t0)
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(11) == m.reg(10) + 1 == 12346
    assert m.reg(13) == m.reg(12) + 1
    assert m.reg(14) <= m.reg(15) <= m.reg(14) + 1     # time CSR = CLINT mtime
    # With nothing written, mcycle counts steps from reset.
    assert m.reg(12) == m.reg(13) - 1 < m.steps


@pytest.mark.parametrize("insn", ["ecall", "ebreak"])
def test_ecall_and_ebreak_do_not_retire(insn):
    g = rvasm.boot(f"""
main:
        la t0, handler
        csrw mtvec, t0
        csrw minstret, zero
        {insn}
        .align 2
handler:
        csrr a0, minstret               // the trapping instruction did not retire
        csrr a1, mcause
        EXIT 0
""")
    assert g.run_to_exit() == 0
    assert g.machine.reg(11) in (3, 11)
    assert g.machine.reg(10) == 0


def test_mcountinhibit_freezes_the_counters():
    g = rvasm.boot("""
main:
        csrsi mcountinhibit, 5          // CY and IR
        csrr a0, minstret
        csrr a1, mcycle
        nop
        nop
        csrr a2, minstret
        csrr a3, mcycle
        li t0, 77
        csrw minstret, t0               // writes still land while inhibited
        nop
        csrr a4, minstret
        csrci mcountinhibit, 5
        nop
        nop
        csrr a5, minstret
        rdtime a6
        csrsi mcountinhibit, 2          // TM is not writable: time never stops
        csrr a7, mcountinhibit
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(12) == m.reg(10)
    assert m.reg(13) == m.reg(11)
    assert m.reg(14) == 77
    assert 77 < m.reg(15) <= 77 + 4
    assert m.reg(17) == 0


def test_idle_time_counts_as_cycles_not_instructions():
    g = rvasm.boot("""
main:
        li t0, CLINT_MTIME
        ld t1, 0(t0)
        li t2, 10000000
        add t1, t1, t2
        li t0, CLINT_MTIMECMP
        sd t1, 0(t0)
        li t0, 1 << 7
        csrs mie, t0
        csrr s1, minstret
        csrr s2, mcycle
        wfi
        csrr s3, minstret
        csrr s4, mcycle
        EXIT 0
""")
    m = g.machine
    r = g.run(100_000)
    assert r.reason == Stop.IDLE
    m.skip_to(r.deadline)
    assert g.run_to_exit() == 0
    assert m.reg(19) - m.reg(18) == 2                   # wfi, csrr
    # mcycle follows the virtual clock: woken at the deadline, read one step later.
    assert m.reg(20) == r.deadline + 1
    assert m.reg(20) - m.reg(9) > 999_999_900           # ~ one second of 1 GHz cycles


# (mode, mcounteren, scounteren, csr, allowed)
ACCESS = [
    ("S", 0, 0, CYCLE, False), ("S", 0, 7, TIME, False), ("S", 7, 0, INSTRET, True),
    ("S", 1, 0, CYCLE, True), ("S", 1, 0, TIME, False), ("S", 2, 0, TIME, True),
    ("S", 5, 0, INSTRET, True), ("S", 5, 0, TIME, False),
    ("U", 0, 0, CYCLE, False), ("U", 7, 0, CYCLE, False), ("U", 0, 7, TIME, False),
    ("U", 7, 7, CYCLE, True), ("U", 7, 7, TIME, True), ("U", 7, 7, INSTRET, True),
    ("U", 7, 5, TIME, False), ("U", 2, 3, TIME, True), ("U", 2, 3, CYCLE, False),
    ("U", 0xF, 0xF, 0xC03, True),                       # hpmcounter3: exists, reads 0
    ("U", 0x7, 0x7, 0xC03, False),
]


@pytest.mark.parametrize("mode, mcounteren, scounteren, csr, allowed", ACCESS)
def test_counter_access_from_lower_modes(mode, mcounteren, scounteren, csr, allowed):
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        li t0, {mcounteren}
        csrw mcounteren, t0
        li t0, {scounteren}
        csrw scounteren, t0
        {"ENTER_S" if mode == "S" else "ENTER_U"} lower
lower:
        li a0, -1
bad:
        csrr a0, {csr:#x}
        EXIT 0
""")
    code = g.run_to_exit()
    if allowed:
        assert code == 0, g.trap
        assert g.machine.reg(10) != 2**64 - 1
        if csr == 0xC03:
            assert g.machine.reg(10) == 0
    else:
        assert code == rvasm.TRAP_EXIT
        assert (g.trap.cause, g.trap.epc) == (2, g.sym("bad"))
