"""Interrupts and trap delegation as firmware and kernels use them.

CLINT timer and software interrupts in M-mode with exact mcause and at the
exact instruction boundary; vectored mtvec/stvec; priority; delegation of
exceptions (medeleg) and interrupts (mideleg) to S-mode; OpenSBI's way of
handing the timer to S-mode through mip.STIP; Sstc (stimecmp raising STIP
with no M-mode involvement); M-level interrupts preempting S-mode whatever
mstatus.MIE says, and S-level ones never interrupting M-mode.
"""

import pytest

import rvasm

INTERRUPT = 1 << 63
MSTATUS_MIE, MSTATUS_MPIE = 1 << 3, 1 << 7
STEPS_PER_TICK = 100


def test_machine_timer_interrupt():
    g = rvasm.boot("""
main:
        la t0, handler
        csrw mtvec, t0
        li t0, CLINT_MTIME
        ld t1, 0(t0)
        addi t1, t1, 5
        li t0, CLINT_MTIMECMP
        sd t1, 0(t0)
        la t0, cmp
        sd t1, 0(t0)
        li t0, 1 << 7
        csrs mie, t0                    // MTIE
        csrsi mstatus, 8                // MIE
spin:
        addi s0, s0, 1
        j spin

        .align 2
handler:
        csrr a0, mcycle
        csrr a1, mcause
        csrr a2, mepc
        csrr a3, time
        csrr a4, mip
        csrr a5, mstatus
        csrr a6, mtval
        EXIT 0
        .data
        .balign 8
cmp:    .dword 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    cmp = g.u64("cmp")
    assert m.reg(11) == INTERRUPT | 7
    assert g.sym("spin") <= m.reg(12) < g.sym("handler")
    assert m.reg(16) == 0                               # mtval is 0 for interrupts
    # Taken at the first boundary where mtime >= mtimecmp, not a step later.
    assert m.reg(10) == cmp * STEPS_PER_TICK
    assert m.reg(13) == cmp
    assert m.reg(14) & (1 << 7)                         # MTIP
    assert m.reg(15) & (MSTATUS_MIE | MSTATUS_MPIE | (3 << 11)) == MSTATUS_MPIE | (3 << 11)


def test_pending_interrupt_is_taken_right_after_enabling():
    g = rvasm.boot("""
main:
        la t0, handler
        csrw mtvec, t0
        li t0, CLINT_MTIMECMP
        sd zero, 0(t0)                  // already due
        li t0, 1 << 7
        csrs mie, t0
        li s0, 1                        // MIE still off: nothing happens
        csrsi mstatus, 8
next:
        li s0, 2
        EXIT 9

        .align 2
handler:
        csrr a0, mcause
        csrr a1, mepc
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert (m.reg(10), m.reg(11), m.reg(8)) == (INTERRUPT | 7, g.sym("next"), 1)


def vector_table(name: str, slots: int = 12) -> str:
    lines = [".option push", ".option norvc", ".balign 256", f"{name}:"]
    lines += [f"        j {name}_{i}" for i in range(slots)]
    lines += [".option pop"]
    for i in range(slots):
        lines += [f"{name}_{i}:", f"        li a7, {i}", f"        j {name}_common"]
    return "\n".join(lines)


@pytest.mark.parametrize("trigger, slot, cause", [
    ("timer", 7, INTERRUPT | 7),
    ("software", 3, INTERRUPT | 3),
    ("ecall", 0, 11),                   # exceptions always go to the base
])
def test_vectored_mtvec(trigger, slot, cause):
    triggers = {
        "timer": "li t0, CLINT_MTIMECMP\n        sd zero, 0(t0)",
        "software": "li t0, 0x2000000\n        li t1, 1\n        sw t1, 0(t0)      // CLINT msip",
        "ecall": "ecall",
    }
    g = rvasm.boot(f"""
main:
        la t0, vtable
        ori t0, t0, 1                   // mode 1: vectored
        csrw mtvec, t0
        csrr s1, mtvec
        li t0, (1 << 7) | (1 << 3)
        csrs mie, t0
        csrsi mstatus, 8
        {triggers[trigger]}
        j .

{vector_table("vtable")}
vtable_common:
        csrr a0, mcause
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(9) == g.sym("vtable") | 1
    assert (m.reg(17), m.reg(10)) == (slot, cause)


def test_interrupt_priority_software_before_timer():
    """MSI and MTI pending together: MSI first; after it is cleared, MTI."""
    g = rvasm.boot("""
main:
        la t0, handler
        csrw mtvec, t0
        la s1, order
        li t0, CLINT_MTIMECMP
        sd zero, 0(t0)
        li t0, 0x2000000
        li t1, 1
        sw t1, 0(t0)
        li t0, (1 << 7) | (1 << 3)
        csrs mie, t0
        csrsi mstatus, 8
        j .

        .align 2
handler:
        csrr t0, mcause
        sd t0, 0(s1)
        addi s1, s1, 8
        slli t0, t0, 1
        srli t0, t0, 1
        li t1, 3
        bne t0, t1, 1f
        li t0, 0x2000000
        sw zero, 0(t0)                  // clear msip
        mret
1:      EXIT 0
        .data
        .balign 8
order:  .dword 0, 0, 0
""")
    assert g.run_to_exit() == 0
    assert [g.u64("order", i) for i in range(3)] == [INTERRUPT | 3, INTERRUPT | 7, 0]


def test_user_ecall_delegated_to_supervisor():
    g = rvasm.boot("""
main:
        PMP_ALLOW_ALL
        la t0, s_handler
        csrw stvec, t0
        li t0, 1 << 8
        csrw medeleg, t0
        ENTER_S s_main
s_main:
        la t0, u_main
        csrw sepc, t0
        li t0, 1 << 8
        csrc sstatus, t0                // SPP = U
        sret
u_main:
        li a1, 5
u_ecall:
        ecall
        j .

        .align 2
s_handler:
        csrr a2, scause
        csrr a3, sepc
        csrr a4, stval
        csrr a5, sstatus
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert (m.reg(12), m.reg(13), m.reg(14)) == (8, g.sym("u_ecall"), 0)
    assert not m.reg(15) & (1 << 8)                     # SPP = U
    assert m.priv == 1
    assert m.csr(0x342) == 0                            # M-mode never saw it
    assert g.trap.count == 0


@pytest.mark.parametrize("medeleg, expect_s", [(0, False), (1 << 9, True)])
def test_supervisor_ecall_delegation(medeleg, expect_s):
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        USE_DEFAULT_STVEC
        li t0, {medeleg}
        csrw medeleg, t0
        ENTER_S s_main
s_main:
bad:
        ecall
""")
    code = g.run_to_exit()
    record = g.strap if expect_s else g.trap
    assert code == (rvasm.STRAP_EXIT if expect_s else rvasm.TRAP_EXIT)
    assert (record.count, record.cause, record.epc) == (1, 9, g.sym("bad"))


def test_machine_ecall_is_never_delegated():
    g = rvasm.boot("""
main:
        USE_DEFAULT_STVEC
        li t0, -1
        csrw medeleg, t0
        csrr s1, medeleg
bad:
        ecall
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc) == (11, g.sym("bad"))
    medeleg = g.machine.reg(9)
    assert not medeleg & (1 << 11)
    for cause in (0, 2, 3, 8, 12, 13, 15):              # what Linux asks OpenSBI to delegate
        assert medeleg & (1 << cause), cause


def test_timer_handed_to_supervisor_through_mip_stip():
    """Without Sstc, OpenSBI sets mip.STIP on the M timer; with mideleg.STIP
    the supervisor takes it at stvec (vectored here) once SIE is set."""
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        la t0, stable
        ori t0, t0, 1
        csrw stvec, t0
        li t0, 1 << 5
        csrw mideleg, t0
        csrs mie, t0
        csrs mip, t0                    // STIP, as OpenSBI's timer handler does
        ENTER_S s_main
s_main:
        li s0, 1                        // SIE is still off
        csrsi sstatus, 2
s_next:
        li s0, 2
        j .

{vector_table("stable")}
stable_common:
        csrr a0, scause
        csrr a1, sepc
        csrr a2, sip
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert (m.reg(17), m.reg(10), m.reg(11)) == (5, INTERRUPT | 5, g.sym("s_next"))
    assert m.reg(12) & (1 << 5)
    assert m.reg(8) == 1
    assert m.csr(0x342) == 0


def test_machine_timer_preempts_supervisor_whatever_mstatus_mie():
    g = rvasm.boot("""
main:
        PMP_ALLOW_ALL
        li t0, 1 << 7
        csrs mie, t0
        csrci mstatus, 8                // MIE off: irrelevant below M
        li t0, CLINT_MTIME
        ld t1, 0(t0)
        addi t1, t1, 2
        li t0, CLINT_MTIMECMP
        sd t1, 0(t0)
        ENTER_S s_main
s_main:
        addi s0, s0, 1
        j s_main
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert g.trap.cause == INTERRUPT | 7
    assert (g.trap.status >> 11) & 3 == 1
    assert g.machine.reg(8) > 40                        # S-mode ran until the deadline


def test_delegated_interrupt_never_interrupts_machine_mode():
    g = rvasm.boot("""
main:
        li t0, (1 << 5) | (1 << 1)
        csrw mideleg, t0
        csrs mie, t0
        csrs mip, t0                    // STIP and SSIP pending
        csrsi mstatus, 8 | 2            // MIE and SIE on
        li s0, 0
1:      addi s0, s0, 1
        li t0, 100
        blt s0, t0, 1b
        csrr a0, mip
        EXIT 0
""")
    assert g.run_to_exit() == 0
    assert g.trap.count == 0
    assert g.machine.reg(10) & 0x22 == 0x22


def sstc_guest(stce: bool) -> rvasm.Guest:
    return rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        la t0, m_handler
        csrw mtvec, t0
        li t0, {1 << 63 if stce else 0:#x}
        csrw menvcfg, t0                // STCE
        li t0, 1 << 5
        csrw mideleg, t0
        csrs mie, t0                    // STIE
        li t0, 2
        csrw mcounteren, t0             // S may read time
        ENTER_S s_main
s_main:
        la t0, s_handler
        csrw stvec, t0
        csrr t0, time
        addi t0, t0, 3
        la t1, cmp
        sd t0, 0(t1)
set_cmp:
        csrw stimecmp, t0               // (stimecmp resets to 0: set it before SIE)
        csrsi sstatus, 2                // SIE
spin:
        addi s0, s0, 1
        j spin

        .align 2
s_handler:
        csrr a0, scause
        csrr a1, time
        csrr a2, sip
        li t0, -1
        csrw stimecmp, t0               // the next deadline is far away:
        csrr a3, sip                    // STIP drops at once
        EXIT 0

        .align 2
m_handler:
        csrr a0, mcause
        csrr a1, mepc
        EXIT 66                         // M-mode must not be involved with Sstc
        .data
        .balign 8
cmp:    .dword 0
""")


def test_sstc_stimecmp_interrupts_supervisor_without_machine_mode():
    g = sstc_guest(stce=True)
    assert g.run_to_exit() == 0
    m = g.machine
    cmp = g.u64("cmp")
    assert m.reg(10) == INTERRUPT | 5
    assert m.reg(11) == cmp
    assert m.reg(12) & (1 << 5)
    assert not m.reg(13) & (1 << 5)
    assert m.reg(8) > 90                                # it waited for the deadline (2 ticks+)
    assert m.csr(0x342) == 0


def test_stimecmp_is_illegal_in_supervisor_without_menvcfg_stce():
    g = sstc_guest(stce=False)
    assert g.run_to_exit() == 66
    assert (g.machine.reg(10), g.machine.reg(11)) == (2, g.sym("set_cmp"))


def test_interrupt_pending_below_machine_mode_is_taken_at_the_mret_target():
    """MTIP pending with MIE off in M-mode: the mret to S-mode makes it
    deliverable, and it is taken before the first S-mode instruction."""
    g = rvasm.boot("""
main:
        PMP_ALLOW_ALL
        la t0, handler
        csrw mtvec, t0
        li t0, CLINT_MTIMECMP
        sd zero, 0(t0)
        li t0, 1 << 7
        csrs mie, t0
        ENTER_S s_main
s_main:
        li s0, 1
        EXIT 5

        .align 2
handler:
        csrr a0, mcause
        csrr a1, mepc
        csrr a2, mstatus
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert (m.reg(10), m.reg(11), m.reg(8)) == (INTERRUPT | 7, g.sym("s_main"), 0)
    assert (m.reg(12) >> 11) & 3 == 1


def test_supervisor_interrupt_is_taken_in_user_mode_whatever_sie():
    g = rvasm.boot("""
main:
        PMP_ALLOW_ALL
        USE_DEFAULT_STVEC
        li t0, 1 << 1
        csrw mideleg, t0
        csrs mie, t0                    // SSIE
        ENTER_S s_main
s_main:
        csrci sstatus, 2                // SIE off: only matters in S-mode
        li t0, 1 << 1
        csrs sip, t0                    // raise SSIP, not taken here
        la t0, u_main
        csrw sepc, t0
        li t0, 1 << 8
        csrc sstatus, t0
        li s0, 1
        sret
u_main:
        li s0, 2
        EXIT 7
""")
    assert g.run_to_exit() == rvasm.STRAP_EXIT
    s = g.strap
    assert (s.cause, s.epc) == (INTERRUPT | 1, g.sym("u_main"))
    assert g.machine.reg(8) == 1
