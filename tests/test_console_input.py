"""Piped console input reaches the guest whole, whenever the guest gets ready
for it, and a recording replays it exactly.

The host delivers input only to a guest that can keep it: one that enabled
the UART's receive interrupt, or one that is polling the line status for
data right now.  Firmware and kernels poll the line status before each byte
they print; that is not waiting for input.  A driver starting up (Linux's
8250: reset the FIFOs, read and drop the receive register, then enable the
receive interrupt) would throw away anything delivered before it is done.
"""
from __future__ import annotations

import pytest

import rvasm
from tracehelp import chrono

BANNER = 1200           # bytes printed before the console driver starts (as firmware does)

PRINT_BANNER = f"""
        li s1, UART
        li s2, {BANNER}
1:      lbu t0, 5(s1)                   // LSR: wait for THR empty before each byte
        andi t0, t0, 0x20
        beqz t0, 1b
        li t0, '.'
        sb t0, 0(s1)
        addi s2, s2, -1
        bnez s2, 1b
        li t0, '\\n'
        sb t0, 0(s1)
"""

ECHO_LINE = """
2:      lbu t0, 5(s1)                   // LSR: data ready?
        andi t0, t0, 1
        beqz t0, 2b
        lbu t0, 0(s1)                   // RBR
        sb t0, 0(s1)                    // echo it
        li t1, '\\n'
        bne t0, t1, 2b
        EXIT 0
"""

# Linux's 8250 start-up, in the order it touches the registers.
DRIVER_STARTUP = """
        li t0, 0x07
        sb t0, 2(s1)                    // FCR: enable, clear RX and TX
        sb zero, 2(s1)
        .rept 2                         // "clear the interrupt registers", twice
        lbu t0, 5(s1)                   // LSR
        lbu t0, 0(s1)                   // RBR: whatever is there is dropped
        lbu t0, 2(s1)                   // IIR
        lbu t0, 6(s1)                   // MSR
        .endr
        li t0, 0x05
        sb t0, 1(s1)                    // IER: receive data and line status interrupts
"""

LINUX_LIKE = "main:\n" + PRINT_BANNER + DRIVER_STARTUP + ECHO_LINE
POLLING = "main:\n" + PRINT_BANNER + ECHO_LINE          # never enables the interrupt

LINE = "echo abcdef\n"


@pytest.mark.parametrize("program", [LINUX_LIKE, POLLING], ids=["driver-startup", "polling"])
def test_piped_input_arrives_whole(program, tmp_path):
    elf = rvasm.build(program)
    proc = chrono(tmp_path, "run", "--kernel", elf, script=LINE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "." * BANNER + "\n" + LINE


def test_input_held_for_a_starting_driver_is_recorded_and_replays(tmp_path):
    elf = rvasm.build(LINUX_LIKE)
    store = tmp_path / "store"
    recorded = chrono(tmp_path, "record", "--kernel", elf, "--store", store, "--name", "early",
                      script=LINE, timeout=60)
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.endswith("\n" + LINE)
    replayed = chrono(tmp_path, "replay", "--store", store, "early", timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert "matched the recording" in replayed.stderr


def test_demo_guest_gets_piped_input_whole(tmp_path):
    store = tmp_path / "store"
    script = "echo abcdef\npoweroff\n"
    recorded = chrono(tmp_path, "record", "--store", store, "--name", "demo", script=script)
    assert recorded.returncode == 0, recorded.stderr
    lines = recorded.stdout.splitlines()
    assert "abcdef" in lines and "demo> echo abcdef" in lines, recorded.stdout
    replayed = chrono(tmp_path, "replay", "--store", store, "demo")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
