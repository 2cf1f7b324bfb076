"""Machine.run(n) runs exactly n steps, from any point, and how the steps are
split into run() calls never changes what the guest does.

Record/replay and snapshots position everything by step count, so this is
the property everything else stands on: run(n) returns BUDGET with
executed == n and steps advanced by n, and 1000 x run(1), 1 x run(1000) or any
other chunking end in the same registers, pc, RAM, CSRs and console output,
even with timer interrupts, ecalls and misaligned accesses in the mix.
"""

import random

import numpy as np
import pytest

import rvasm
from chrono.core.machine import Stop

# CSRs whose values depend on when traps were taken.
CSRS = {"mstatus": 0x300, "mepc": 0x341, "mcause": 0x342, "mtval": 0x343, "mip": 0x344,
        "minstret": 0xB02, "mcycle": 0xB00, "time": 0xC01}


def busy():
    return rvasm.boot(rvasm.BUSY)


def snapshot(g):
    m = g.machine
    return {
        "regs": m.registers(),
        "priv": m.priv,
        "steps": m.steps,
        "vclock": m.vclock,
        "csrs": {name: m.csr(n) for name, n in CSRS.items()},
        "ram": m.ram.copy(),
        "console": m.console_read(),
    }


def assert_same(a, b):
    assert a["regs"] == b["regs"]
    assert a["priv"] == b["priv"]
    assert a["steps"] == b["steps"]
    assert a["vclock"] == b["vclock"]
    assert a["csrs"] == b["csrs"]
    assert np.array_equal(a["ram"], b["ram"]), "RAM differs"
    assert a["console"] == b["console"]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 64, 299, 300, 301, 1000, 4097, 25_000])
def test_run_n_executes_exactly_n_steps(n):
    g = busy()
    g.run(123)                          # start somewhere in the middle
    before = g.machine.steps
    r = g.run(n)
    assert r.reason == Stop.BUDGET
    assert r.executed == n
    assert g.machine.steps == before + n


def test_run_n_is_exact_from_every_point():
    """Many consecutive runs of awkward sizes: each one exact, none stopping early."""
    g = busy()
    rng = random.Random(7)
    total = 0
    for _ in range(400):
        n = rng.choice([1, 2, 3, 5, 13, 97, 299, 301, 1024])
        r = g.run(n)
        assert (r.reason, r.executed) == (Stop.BUDGET, n)
        total += n
        assert g.machine.steps == total
    # The window really contained traps and interrupts.
    assert g.machine.reg(19) > 0, "no ecall was taken"        # s3
    assert g.machine.reg(20) > 0, "no timer interrupt was taken"  # s4


def test_thousand_single_steps_equal_one_run_of_thousand():
    one, many = busy(), busy()
    r = one.run(1000)
    assert (r.reason, r.executed) == (Stop.BUDGET, 1000)
    for _ in range(1000):
        r = many.run(1)
        assert (r.reason, r.executed) == (Stop.BUDGET, 1)
    assert_same(snapshot(one), snapshot(many))
    assert one.machine.reg(20) >= 3, "the window should include timer interrupts"
    assert one.machine.reg(19) >= 1, "the window should include an ecall"


def test_any_chunking_gives_identical_state():
    """60k steps (timer interrupts, ecalls, UART output) in one run, in random
    chunks, and in chunks of 1 around the interrupt points."""
    total = 60_000
    ref = busy()
    assert ref.run(total).executed == total
    expected = snapshot(ref)
    assert ref.machine.reg(20) >= 150 and ref.machine.reg(19) >= 30
    assert expected["console"], "the window should include UART output"

    for seed in (1, 2):
        g = busy()
        rng = random.Random(seed)
        out = b""
        left = total
        while left:
            n = min(left, rng.choice([1, 1, 2, 3, 50, 299, 300, 301, 4000]))
            r = g.run(n)
            assert (r.reason, r.executed) == (Stop.BUDGET, n)
            out += g.machine.console_read()
            left -= n
        got = snapshot(g)
        got["console"] = out + got["console"]
        assert_same(expected, got)


def test_run_zero_changes_nothing():
    g = busy()
    g.run(500)
    before = snapshot(g)
    r = g.run(0)
    assert (r.reason, r.executed) == (Stop.BUDGET, 0)
    after = snapshot(g)
    after["console"] = before["console"]        # snapshot() drained it already
    assert_same(before, after)
