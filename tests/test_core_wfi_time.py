"""WFI, idle stops and virtual time.

A guest waiting in WFI makes run() return IDLE with the virtual clock of its
next timer deadline (mtimecmp * steps_per_tick, or stimecmp with Sstc); the
host may then skip_to() that deadline instead of burning steps, and the next
run() takes the interrupt at once.  Skipped time advances mtime and the time
CSR but never the step count.  With no timer enabled the deadline is
NO_DEADLINE.
"""

import rvasm
from chrono.core.machine import NO_DEADLINE, Machine, Stop

INTERRUPT = 1 << 63
ONE_SECOND = 10_000_000             # timebase ticks

WAIT_ONE_SECOND = f"""
main:
        la t0, handler
        csrw mtvec, t0
        csrr s1, time
        li t0, CLINT_MTIME
        ld t1, 0(t0)
        li t2, {ONE_SECOND}
        add t1, t1, t2
        li t0, CLINT_MTIMECMP
        sd t1, 0(t0)
        la t0, cmp
        sd t1, 0(t0)
        li t0, 1 << 7
        csrs mie, t0
        csrsi mstatus, %(mie)d
idle:
        wfi
after_wfi:
        csrr s3, time                   // reached only when MIE is off
        EXIT 1

        .align 2
handler:
        csrr s2, time
        csrr a0, mcause
        csrr a1, mepc
        EXIT 0
        .data
        .balign 8
cmp:    .dword 0
"""


def test_timebase():
    assert Machine.timebase_hz == 10_000_000
    assert Machine.steps_per_tick == 100


def test_wfi_idles_until_the_timer_deadline():
    g = rvasm.boot(WAIT_ONE_SECOND % {"mie": 8})
    m = g.machine
    r = g.run(1_000_000)
    assert r.reason == Stop.IDLE
    cmp = g.u64("cmp")
    assert r.deadline == cmp * Machine.steps_per_tick
    assert r.executed == m.steps
    assert m.pc == g.sym("after_wfi")           # WFI itself has completed
    steps_idle = m.steps

    # Still idle: nothing happens, nothing is executed.
    r = g.run(1_000_000)
    assert (r.reason, r.executed, r.deadline) == (Stop.IDLE, 0, cmp * 100)
    # One step of virtual time short of the deadline is not enough.
    m.skip_to(r.deadline - 1)
    assert m.vclock == r.deadline - 1
    r = g.run(1_000_000)
    assert (r.reason, r.executed, r.deadline) == (Stop.IDLE, 0, cmp * 100)
    assert m.steps == steps_idle

    m.skip_to(r.deadline)
    assert m.steps == steps_idle                # idle time is not steps
    assert m.vclock == r.deadline
    assert m.mtime == cmp
    r = g.run(1_000_000)
    assert (r.reason, r.code) == (Stop.HTIF_EXIT, 0)
    assert r.executed < 20                      # the handler, nothing else
    assert m.reg(10) == INTERRUPT | 7
    assert m.reg(11) == g.sym("after_wfi")
    # The guest saw one second pass on its clock.
    assert m.reg(18) == cmp                     # s2: time in the handler
    assert ONE_SECOND <= m.reg(18) - m.reg(9) <= ONE_SECOND + 1


def test_skipped_time_is_the_difference_between_vclock_and_steps():
    g = rvasm.boot(WAIT_ONE_SECOND % {"mie": 8})
    m = g.machine
    r = g.run(1_000_000)
    steps = m.steps
    assert m.vclock == steps                    # nothing skipped yet
    m.skip_to(r.deadline)
    assert m.vclock - m.steps == r.deadline - steps
    g.run_to_exit()
    assert m.vclock - m.steps == r.deadline - steps


def test_skip_to_never_goes_backwards():
    g = rvasm.boot(WAIT_ONE_SECOND % {"mie": 8})
    m = g.machine
    r = g.run(1_000_000)
    m.skip_to(r.deadline - 500)
    m.skip_to(r.deadline - 1000)
    m.skip_to(0)
    assert m.vclock == r.deadline - 500
    m.skip_to(NO_DEADLINE)                      # "forever" is not a place to jump to
    assert m.vclock == r.deadline - 500


def test_wfi_wakes_up_without_a_trap_when_interrupts_are_disabled():
    g = rvasm.boot(WAIT_ONE_SECOND % {"mie": 0})
    m = g.machine
    r = g.run(1_000_000)
    assert r.reason == Stop.IDLE and r.deadline == g.u64("cmp") * 100
    m.skip_to(r.deadline)
    assert g.run_to_exit() == 1                 # continued after wfi
    assert g.trap.count == 0
    assert m.reg(19) == g.u64("cmp")            # s3: time after waking


def test_wfi_with_nothing_enabled_idles_with_no_deadline():
    g = rvasm.boot("""
main:
        csrw mie, zero
        csrsi mstatus, 8
        wfi
        EXIT 0
""")
    m = g.machine
    r = g.run(1_000_000)
    assert (r.reason, r.deadline) == (Stop.IDLE, NO_DEADLINE)
    assert not r.has_deadline
    vclock = m.vclock
    r = g.run(1_000_000)
    assert (r.reason, r.executed, r.deadline) == (Stop.IDLE, 0, NO_DEADLINE)
    assert m.vclock == vclock


def test_wfi_with_an_interrupt_already_pending_does_not_idle():
    g = rvasm.boot("""
main:
        li t0, CLINT_MTIMECMP
        sd zero, 0(t0)
        li t0, 1 << 7
        csrs mie, t0                    // MTIP pending, MIE off
        wfi
        EXIT 0
""")
    r = g.run(1_000_000)
    assert (r.reason, r.code) == (Stop.HTIF_EXIT, 0)


def test_idle_deadline_is_the_earlier_of_mtimecmp_and_stimecmp():
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        li t0, 1 << 63
        csrw menvcfg, t0                // Sstc
        li t0, CLINT_MTIME
        ld t1, 0(t0)
        li t2, {2 * ONE_SECOND}
        add t2, t1, t2
        li t0, CLINT_MTIMECMP
        sd t2, 0(t0)                    // M timer in 2 s
        li t2, {ONE_SECOND}
        add t2, t1, t2
        csrw stimecmp, t2               // S timer in 1 s
        la t0, scmp
        sd t2, 0(t0)
        li t0, 1 << 5
        csrw mideleg, t0
        li t0, (1 << 5) | (1 << 7)
        csrs mie, t0
        USE_DEFAULT_STVEC
        ENTER_S s_main
s_main:
        csrsi sstatus, 2
        wfi
        j s_main
        .data
        .balign 8
scmp:   .dword 0
""")
    m = g.machine
    r = g.run(1_000_000)
    assert r.reason == Stop.IDLE
    assert r.deadline == g.u64("scmp") * 100
    m.skip_to(r.deadline)
    assert g.run_to_exit() == rvasm.STRAP_EXIT
    assert g.strap.cause == INTERRUPT | 5
    assert g.trap.count == 0
