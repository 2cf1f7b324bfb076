"""Breakpoints on guest pc, as a debugger and the replay tools use them.

run() stops with BREAKPOINT before executing the instruction at a
breakpoint, with pc on it; the next run() executes it (it does not stop at
once again) and stops at the next hit.  Breakpoints work on trap handler
entry, on one-instruction loops, together with budgets, and can be removed.
"""

import pytest

import rvasm
from chrono.core.machine import Stop
from chrono.errors import UsageError

LOOP = """
main:
        li s0, 0
        li s1, 5
loop:
        addi s2, s2, 3
bp_here:
        addi s0, s0, 1
        blt s0, s1, loop
        EXIT 0
"""


def test_stops_before_the_instruction_and_resumes_over_it():
    g = rvasm.boot(LOOP)
    m = g.machine
    bp = g.sym("bp_here")
    m.add_breakpoint(bp)
    loop_body = None
    for hit in range(5):
        before = m.steps
        r = m.run(10_000)
        assert r.reason == Stop.BREAKPOINT
        assert m.pc == bp
        assert m.reg(8) == hit                          # s0: not incremented yet
        assert m.reg(18) == 3 * (hit + 1)               # s2: the instruction before ran
        assert m.steps == before + r.executed
        if hit == 1:
            loop_body = r.executed
        elif hit > 1:
            assert r.executed == loop_body == 3         # addi, blt, addi: once around
    assert g.run_to_exit() == 0
    assert m.reg(8) == 5


def test_one_instruction_loop_stops_once_per_iteration():
    g = rvasm.boot("""
main:
spin:
        j spin
""")
    m = g.machine
    m.add_breakpoint(g.sym("spin"))
    r = m.run(100)
    assert (r.reason, m.pc) == (Stop.BREAKPOINT, g.sym("spin"))
    for _ in range(3):
        r = m.run(100)
        assert (r.reason, r.executed, m.pc) == (Stop.BREAKPOINT, 1, g.sym("spin"))


def test_budget_and_breakpoint_interplay():
    g = rvasm.boot(LOOP)
    m = g.machine
    m.add_breakpoint(g.sym("bp_here"))
    r = m.run(10_000)
    assert r.reason == Stop.BREAKPOINT
    r = m.run(0)
    assert (r.reason, r.executed, m.pc) == (Stop.BUDGET, 0, g.sym("bp_here"))
    r = m.run(1)                                        # steps over the breakpoint
    assert (r.reason, r.executed) == (Stop.BUDGET, 1)
    assert m.reg(8) == 1
    r = m.run(2)                                        # blt, addi: just short of the next hit
    assert (r.reason, r.executed, m.pc) == (Stop.BUDGET, 2, g.sym("bp_here"))
    r = m.run(1)                                        # a new run at a breakpoint resumes over it
    assert (r.reason, r.executed, m.reg(8)) == (Stop.BUDGET, 1, 2)


def test_breakpoint_on_a_trap_handler():
    g = rvasm.boot("""
main:
        li a0, 1
        ecall
        EXIT 3
""")
    m = g.machine
    m.add_breakpoint(g.sym("__rv_trap"))
    r = m.run(1000)
    assert (r.reason, m.pc) == (Stop.BREAKPOINT, g.sym("__rv_trap"))
    assert m.csr(0x342) == 11                           # the trap was taken, handler not run
    assert g.trap.count == 0
    assert g.run_to_exit() == rvasm.TRAP_EXIT


def test_remove_breakpoint():
    g = rvasm.boot(LOOP)
    m = g.machine
    bp = g.sym("bp_here")
    m.add_breakpoint(bp)
    m.add_breakpoint(bp)                                # adding twice is harmless
    assert m.run(1000).reason == Stop.BREAKPOINT
    assert m.remove_breakpoint(bp) is True
    assert m.remove_breakpoint(bp) is False
    assert g.run_to_exit() == 0


def test_breakpoint_limit():
    g = rvasm.boot(LOOP)
    m = g.machine
    for i in range(64):
        m.add_breakpoint(0x9000_0000 + 2 * i)
    with pytest.raises(UsageError):
        m.add_breakpoint(0x9100_0000)
    assert g.run_to_exit() == 0


NESTED = """
main:
        li s0, 0
        li s1, 300
outer:
        li t0, 7
inner:
bp_inner:
        addi t0, t0, -1
        bnez t0, inner
bp_outer:
        addi s0, s0, 1
        blt s0, s1, outer
        EXIT 0
"""


def stop_positions(g, pcs, budget):
    """Every (position, pc) where run() stops at a breakpoint, run by run."""
    m = g.machine
    for pc in pcs:
        m.add_breakpoint(pc)
    hits = []
    while True:
        r = m.run(budget)
        if r.reason == Stop.BREAKPOINT:
            hits.append((m.steps, m.pc))
        elif r.reason != Stop.BUDGET:
            return hits, r


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("budget", [10_000_000, 5, 1])
def test_passing_breakpoints_counts_every_hit_a_stop_would_make(jit, budget):
    """Reverse-continue's scan: with breakpoints passed, the core counts each
    hit (the first instruction of a run call included) and keeps the last,
    exactly where stopping runs stop, on both engines and in any slicing."""
    source = NESTED
    stopping = rvasm.boot(source, jit=jit, jit_threshold=1)
    pcs = [stopping.sym("bp_inner"), stopping.sym("bp_outer")]
    hits, end = stop_positions(stopping, pcs, 10_000_000)
    assert len(hits) == 300 * 7 + 300

    passing = rvasm.boot(source, jit=jit, jit_threshold=1)
    m = passing.machine
    for pc in pcs:
        m.add_breakpoint(pc)
    m.pass_breakpoints(True)
    while (r := m.run(budget)).reason == Stop.BUDGET:
        pass
    m.pass_breakpoints(False)
    assert r.reason == end.reason and m.steps == stopping.machine.steps
    assert m.breakpoint_hits() == (len(hits), *hits[-1])
    m.pass_breakpoints(True)
    assert m.breakpoint_hits() == (0, 0, 0)             # turning it on starts a new count
