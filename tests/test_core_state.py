"""save_state / load_state: the CPU and device state as bytes.

A snapshot is this state plus a copy of RAM.  Loading it, into the same
machine or a fresh one, and running N steps must give exactly what the
original run gave (registers, pc, CSRs, RAM, console output, clocks), and
the state saved afterwards must be byte-identical.  Device state (timer
compare, UART receive FIFO, an idle hart, skipped time) travels with it.
Bad buffers are rejected with UsageError and leave the machine untouched.
"""

import hashlib
import struct

import pytest

import rvasm
from chrono.core.machine import Machine, Stop
from chrono.errors import UsageError

CSRS = [0x300, 0x304, 0x305, 0x341, 0x342, 0x343, 0x344, 0xB00, 0xB02, 0xC01, 0x180]


def observe(m, steps, chunk=997):
    """Run `steps` steps in chunks; everything the guest could show."""
    out = b""
    left = steps
    while left:
        r = m.run(min(chunk, left))
        assert r.reason == Stop.BUDGET
        out += m.console_read()
        left -= r.executed
    return {
        "regs": m.registers(), "priv": m.priv, "steps": m.steps, "vclock": m.vclock,
        "mtime": m.mtime, "csrs": [m.csr(c) for c in CSRS],
        "ram": hashlib.sha256(m.ram.tobytes()).hexdigest(), "console": out,
        "state": m.save_state(),
    }


def fresh_like(g):
    return Machine(g.machine.ram_size, tohost=g.image.tohost, fromhost=g.image.fromhost)


def test_restore_into_same_and_fresh_machine_replays_identically():
    g = rvasm.boot(rvasm.BUSY)
    m = g.machine
    m.run(5_000)
    m.console_read()
    state, ram = m.save_state(), m.ram.copy()

    expected = observe(m, 30_000)
    assert m.reg(20) > 50 and expected["console"], "the window should see interrupts and output"

    m.load_state(state)
    m.write_phys(rvasm.RAM_BASE, ram.tobytes())
    assert observe(m, 30_000) == expected

    other = fresh_like(g)
    other.write_phys(rvasm.RAM_BASE, ram.tobytes())
    other.load_state(state)
    assert observe(other, 30_000, chunk=4096) == expected


def test_state_size_is_stable_and_round_trips():
    g = rvasm.boot(rvasm.BUSY)
    g.run(1234)
    state = g.machine.save_state()
    other = fresh_like(g)
    other.load_state(state)
    assert other.save_state() == state
    assert other.registers() == g.machine.registers()
    assert (other.steps, other.vclock, other.priv) == (g.machine.steps, g.machine.vclock, g.machine.priv)


def test_idle_hart_and_skipped_time_survive_a_restore():
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
        wfi                             // first second
        li t0, CLINT_MTIMECMP
        ld t1, 0(t0)
        li t2, 10000000
        add t1, t1, t2
        sd t1, 0(t0)
        wfi                             // second second
        csrr a0, time
        EXIT 0
""")
    m = g.machine
    r = m.run(10_000)
    assert r.reason == Stop.IDLE
    m.skip_to(r.deadline)
    r = m.run(10_000)
    assert r.reason == Stop.IDLE
    first_deadline = r.deadline

    other = fresh_like(g)
    other.write_phys(rvasm.RAM_BASE, m.ram.tobytes())
    other.load_state(m.save_state())
    assert (other.steps, other.vclock, other.mtime) == (m.steps, m.vclock, m.mtime)
    r2 = other.run(10_000)
    assert (r2.reason, r2.executed, r2.deadline) == (Stop.IDLE, 0, first_deadline)
    other.skip_to(r2.deadline)
    r2 = other.run(10_000)
    assert (r2.reason, r2.code) == (Stop.HTIF_EXIT, 0)
    assert other.reg(10) == first_deadline // 100


def test_uart_receive_fifo_survives_a_restore():
    g = rvasm.boot("""
main:
        li s1, UART
        la s2, got
        li s3, 3
1:      lbu t0, 5(s1)                   // LSR
        andi t0, t0, 1                  // data ready
        beqz t0, 1b
        lbu t0, 0(s1)
        sb t0, 0(s2)
        addi s2, s2, 1
        addi s3, s3, -1
        bnez s3, 1b
        EXIT 0
        .data
got:    .skip 8
""")
    m = g.machine
    m.run(20)                           # polling, nothing there yet
    assert m.console_write(b"xyz") == 3
    state, ram = m.save_state(), m.ram.copy()

    other = fresh_like(g)
    other.write_phys(rvasm.RAM_BASE, ram.tobytes())
    other.load_state(state)
    r = other.run(10_000)
    assert (r.reason, r.code) == (Stop.HTIF_EXIT, 0)
    assert other.read_phys(g.sym("got"), 3) == b"xyz"


@pytest.mark.parametrize("damage", ["truncated", "extended", "empty", "magic", "version", "part_size"])
def test_load_state_rejects_bad_buffers(damage):
    g = rvasm.boot(rvasm.BUSY)
    m = g.machine
    m.run(777)
    good = m.save_state()
    bad = bytearray(good)
    if damage == "truncated":
        bad = bad[:-1]
    elif damage == "extended":
        bad += b"\0"
    elif damage == "empty":
        bad = bytearray()
    elif damage == "magic":
        bad[0] ^= 0xFF
    elif damage == "version":
        bad[4:8] = struct.pack("<I", struct.unpack("<I", bad[4:8])[0] + 1)
    elif damage == "part_size":
        bad[8:12] = struct.pack("<I", struct.unpack("<I", bad[8:12])[0] + 8)

    other = rvasm.boot(rvasm.BUSY).machine
    other.run(100)
    before = other.save_state()
    with pytest.raises(UsageError):
        other.load_state(bytes(bad))
    assert other.save_state() == before             # nothing was half-loaded
    r = other.run(100)
    assert (r.reason, r.executed) == (Stop.BUDGET, 100)


def test_reset_gives_the_same_run_as_a_fresh_machine():
    """After reset() and putting the boot RAM back, a machine that has run (with
    timers, traps, TLB and decode state behind it) runs exactly like a new one."""
    g = rvasm.boot(rvasm.BUSY)
    m = g.machine
    boot_ram = m.ram.copy()
    fresh = rvasm.Guest(g.elf).machine
    expected = observe(fresh, 20_000)

    m.run(12_345)
    m.skip_to(m.vclock + 50_000)
    m.reset(g.image.entry)
    m.write_phys(rvasm.RAM_BASE, boot_ram.tobytes())
    m.console_read()
    assert (m.steps, m.vclock, m.pc, m.priv) == (0, 0, g.image.entry, 3)
    assert observe(m, 20_000) == expected
