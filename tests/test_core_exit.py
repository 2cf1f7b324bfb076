"""How a guest ends a run: HTIF tohost exit codes, the sifive_test finisher
(poweroff with a status, reboot), and HTIF console output.

The host decides what to do next from RunResult.reason and .code alone, so
each path must stop the run right after the instruction that asked for it,
with the exact code.
"""

import pytest

import rvasm
from chrono.core.machine import Stop


@pytest.mark.parametrize("code", [0, 1, 42, 255, 0x1234_5678, (1 << 47) - 1])
def test_htif_exit_code_reaches_run_result(code):
    g = rvasm.boot(f"""
main:
        li a0, {code}
        EXIT_REG a0
""")
    r = g.run(1000)
    assert r.reason == Stop.HTIF_EXIT
    assert r.code == code


def test_htif_exit_stops_right_after_the_store():
    g = rvasm.boot("""
main:
        li a0, 3
        slli a0, a0, 1
        ori a0, a0, 1
        la a1, tohost
exit_store:
        sd a0, 0(a1)
after_exit:
        li a2, 99                       // must not run
        j after_exit
""")
    r = g.run(1000)
    assert (r.reason, r.code) == (Stop.HTIF_EXIT, 3)
    assert g.machine.pc == g.sym("after_exit")
    assert g.machine.reg(12) == 0
    # The exit command stays in tohost, like a halted host would leave it.
    assert g.u64("tohost") == 7


@pytest.mark.parametrize("value, reason, code", [
    (0x5555, Stop.POWEROFF, 0),
    (0x3333 | (7 << 16), Stop.POWEROFF, 7),
    (0x3333 | (0xFFFF << 16), Stop.POWEROFF, 0xFFFF),
    (0x3333, Stop.POWEROFF, 1),                 # a failure never reads as success
    (0x7777, Stop.REBOOT, 0),
])
def test_sifive_test_finisher(value, reason, code):
    g = rvasm.boot(f"""
main:
        li a0, SIFIVE_TEST
        li a1, {value}
finisher_store:
        sw a1, 0(a0)
after:
        EXIT 77                         // never reached
""")
    r = g.run(1000)
    assert (r.reason, r.code) == (reason, code)
    assert g.machine.pc == g.sym("after")
    assert r.executed == g.machine.steps


def test_sifive_test_other_values_do_nothing():
    g = rvasm.boot("""
main:
        li a0, SIFIVE_TEST
        li a1, 0x1234
        sw a1, 0(a0)
        lw a2, 0(a0)                    // reads as 0
        EXIT 5
""")
    assert g.run_to_exit() == 5
    assert g.machine.reg(12) == 0


def test_htif_console_output_reaches_console_read():
    g = rvasm.boot(r"""
main:
        la s0, message
        la s1, tohost
        li s2, (1 << 56) | (1 << 48)    // device 1 (console), command 1 (putchar)
next:
        lbu t0, 0(s0)
        beqz t0, done
        or t0, t0, s2
        sd t0, 0(s1)
wait:
        ld t1, 0(s1)                    // the host clears tohost once it is done
        bnez t1, wait
        addi s0, s0, 1
        j next
done:
        EXIT 0
        .data
message: .asciz "hello, htif\n\x01\xff"
""")
    assert g.run_to_exit() == 0
    assert g.machine.console_read() == b"hello, htif\n\x01\xff"
    assert g.machine.console_read() == b""


def test_run_result_code_is_not_left_over_from_an_earlier_stop():
    """RunResult.code is the poweroff / HTIF exit code; a later BUDGET or IDLE
    stop has no code and must report 0, not the previous stop's."""
    g = rvasm.boot("""
main:
        li a0, SIFIVE_TEST
        li a1, 0x3333 | (7 << 16)
        sw a1, 0(a0)
        csrw mie, zero
idle:
        wfi
        j idle
""")
    r = g.run(100)
    assert (r.reason, r.code) == (Stop.POWEROFF, 7)
    r = g.run(1)
    assert (r.reason, r.executed, r.code) == (Stop.BUDGET, 1, 0)
    r = g.run(100)
    assert (r.reason, r.code) == (Stop.IDLE, 0)
