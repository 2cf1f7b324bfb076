"""Code that changes under the hart: the core caches decoded blocks, but only
while their bytes are unchanged, so new instructions are seen.

A guest storing an instruction and executing it after fence.i (JITs, Linux
patching its own text, module loading), a host patching guest code between
runs (a debugger planting ebreak), and code brought in by virtio-blk DMA must
all execute the new bytes.
"""

import struct

import numpy as np

import rvasm
from blkguest import BlkGuest
from chrono.core.disk import Disk
from chrono.core.machine import REG_PC, Stop

ADDI_A0_A0_7 = 0x00750513           # addi a0, a0, 7
ADDI_A0_A0_100 = 0x06450513         # addi a0, a0, 100
RET = 0x00008067                    # jalr x0, 0(ra)


def test_guest_stores_an_instruction_and_runs_it_after_fence_i():
    g = rvasm.boot(f"""
main:
        li a0, 0
        li s0, 3
again:
        .option push
        .option norvc
patched:
        addi a0, a0, 1
        .option pop
        la t0, patched
        li t1, {ADDI_A0_A0_7:#x}
        sw t1, 0(t0)
        fence.i
        addi s0, s0, -1
        bnez s0, again
        EXIT 0
""")
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 1 + 7 + 7


def test_host_patch_between_runs_is_executed():
    g = rvasm.boot("""
main:
        li a0, 0
        li s0, 4
loop:
        .option push
        .option norvc
patched:
        addi a0, a0, 1
        .option pop
        addi s0, s0, -1
        bnez s0, loop
        EXIT 0
""")
    m = g.machine
    m.add_breakpoint(g.sym("patched"))
    assert m.run(1000).reason == Stop.BREAKPOINT
    assert m.run(1000).reason == Stop.BREAKPOINT       # one iteration done: a0 = 1
    m.write_phys(g.sym("patched"), struct.pack("<I", ADDI_A0_A0_100))
    m.remove_breakpoint(g.sym("patched"))
    assert g.run_to_exit() == 0
    assert m.reg(10) == 1 + 3 * 100


def call(m, address, a0):
    """Call the routine at `address` with a0 from the host; returns its a0.
    It returns to address 0, where a breakpoint waits; registers and pc are
    put back afterwards so the guest carries on where it was."""
    saved = m.registers()
    m.set_reg(10, a0)
    m.set_reg(1, 0)
    m.set_reg(REG_PC, address)
    r = m.run(100)
    assert (r.reason, m.pc) == (Stop.BREAKPOINT, 0)
    result = m.reg(10)
    for i, value in enumerate(saved):
        m.set_reg(i, value)
    return result


def test_code_loaded_by_virtio_dma_is_executed():
    """A routine that has run from a page is replaced there by a virtio-blk
    read; calling it again runs the new code."""
    disk = Disk.blank(64 * 1024)
    new_code = struct.pack("<II", ADDI_A0_A0_100, RET)
    disk.data[:len(new_code)] = np.frombuffer(new_code, dtype=np.uint8)
    b = BlkGuest(disk)
    m = b.m
    m.add_breakpoint(0)
    target = b.buffer(0)
    m.write_phys(target, struct.pack("<II", ADDI_A0_A0_7, RET))
    assert call(m, target, 5) == 12
    status, _ = b.request(0, 0, target, 512)
    assert status == 0
    assert m.read_phys(target, 8) == new_code
    assert call(m, target, 5) == 105


def test_a_store_to_the_next_instruction_is_seen_without_fence_i():
    """Decoded blocks never run stale bytes: the instruction right after a
    store that rewrote it runs in its new form."""
    g = rvasm.boot(f"""
main:
        li a0, 0
        la t0, patched
        li t1, {ADDI_A0_A0_100:#x}
        .option push
        .option norvc
        sw t1, 0(t0)
patched:
        addi a0, a0, 1
        .option pop
        EXIT 0
""")
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 100


def test_code_sharing_its_page_with_busy_data_sees_its_own_patches():
    """A loop that keeps storing into its own code page (data next to code),
    then patches the instruction after the store: the new one runs, on every
    iteration that follows."""
    g = rvasm.boot(f"""
main:
        li a0, 0
        li s0, 20
        la t0, counter
        la t2, patched
        li t1, {ADDI_A0_A0_100:#x}
loop:
        sw s0, 0(t0)
        li t3, 10
        bne s0, t3, 1f
        sw t1, 0(t2)
1:
        .option push
        .option norvc
patched:
        addi a0, a0, 1
        .option pop
        addi s0, s0, -1
        bnez s0, loop
        EXIT 0
counter:
        .word 0
""")
    assert g.run_to_exit() == 0
    assert g.machine.reg(10) == 10 * 1 + 10 * 100


def test_host_patch_between_budget_stops_is_executed():
    """RAM written by the host between two runs (no breakpoint involved) is
    what the next run executes."""
    g = rvasm.boot("""
main:
        li a0, 0
        li s0, 1000
loop:
        .option push
        .option norvc
patched:
        addi a0, a0, 1
        .option pop
        addi s0, s0, -1
        bnez s0, loop
        EXIT 0
""")
    m = g.machine
    assert m.run(500).reason == Stop.BUDGET            # well into the loop, its blocks cached
    while m.pc != g.sym("patched"):
        assert m.run(1).reason == Stop.BUDGET
    done, left = m.reg(10), m.reg(8)
    assert 0 < done < 1000 and done + left == 1000
    m.write_phys(g.sym("patched"), struct.pack("<I", ADDI_A0_A0_100))
    assert g.run_to_exit(100_000) == 0
    assert m.reg(10) == done + 100 * left
