"""The ns16550a UART as the console: guest output through THR reaches
console_read, host input given to console_write is read through RBR, and the
run loop stops for the host when the output buffer needs draining (OUTPUT) or
when the guest has emptied the receive FIFO while more input is waiting
(INPUT).  Received bytes raise the UART interrupt through the PLIC and wake a
hart idling in WFI.
"""

import rvasm
from chrono.core.machine import NO_DEADLINE, Stop

INTERRUPT = 1 << 63


def test_thr_output_reaches_console_read():
    g = rvasm.boot(r"""
main:
        li s1, UART
        la s2, message
1:      lbu t0, 0(s2)
        beqz t0, 3f
2:      lbu t1, 5(s1)                   // LSR
        andi t1, t1, 0x20               // THR empty
        beqz t1, 2b
        sb t0, 0(s1)
        addi s2, s2, 1
        j 1b
3:      EXIT 0
        .data
message: .asciz "Hello, UART\r\n\x7f"
""")
    assert g.run_to_exit() == 0
    assert g.machine.console_read() == b"Hello, UART\r\n\x7f"
    assert g.machine.console_read() == b""


def test_large_output_stops_for_draining_and_loses_nothing():
    total = 20_000
    g = rvasm.boot(f"""
main:
        li s1, UART
        li s2, 0
        li s3, {total}
1:      li t0, 26
        remu t0, s2, t0
        addi t0, t0, 'A'
        sb t0, 0(s1)
        addi s2, s2, 1
        blt s2, s3, 1b
        EXIT 0
""")
    out = b""
    stops = 0
    while True:
        r = g.run(10_000_000)
        out += g.machine.console_read()
        if r.reason == Stop.HTIF_EXIT:
            break
        assert r.reason == Stop.OUTPUT
        stops += 1
    assert stops >= 2
    assert out == bytes(ord("A") + i % 26 for i in range(total))


def test_divisor_latch_writes_do_not_print_and_scratch_holds_a_byte():
    g = rvasm.boot("""
main:
        li s1, UART
        li t0, 0x80
        sb t0, 3(s1)                    // LCR.DLAB
        li t0, 0x55
        sb t0, 0(s1)                    // DLL, not THR
        sb zero, 1(s1)                  // DLM
        lbu a0, 0(s1)
        li t0, 0x03
        sb t0, 3(s1)                    // 8N1, DLAB off
        li t0, 0xa5
        sb t0, 7(s1)                    // scratch
        lbu a1, 7(s1)
        lbu a2, 5(s1)                   // LSR
        li t0, 'x'
        sb t0, 0(s1)
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert (m.reg(10), m.reg(11)) == (0x55, 0xA5)
    assert m.reg(12) & 0x61 == 0x60                     # THRE | TEMT, no data ready
    assert m.console_read() == b"x"


READ_LINE = """
main:
        li s1, UART
        la s2, line
1:      lbu t0, 5(s1)                   // LSR
        andi t0, t0, 1                  // data ready
        beqz t0, 1b
        lbu t0, 0(s1)                   // RBR
        sb t0, 0(s2)
        addi s2, s2, 1
        li t1, '\\n'
        bne t0, t1, 1b
        EXIT 0
        .data
line:   .skip 64
"""


def test_console_write_is_read_through_rbr():
    g = rvasm.boot(READ_LINE)
    m = g.machine
    assert m.console_write(b"hi there\n") == 9
    assert g.run_to_exit() == 0
    assert g.read("line", 9) == b"hi there\n"


def test_receive_fifo_takes_what_fits_and_the_rest_later():
    g = rvasm.boot(READ_LINE)
    m = g.machine
    data = b"0123456789abcdefghijklmnopqrstuvwxyz\n"
    taken = m.console_write(data)
    assert 0 < taken < len(data)                        # a 16550 FIFO is 16 bytes
    sent = taken
    while True:
        r = m.run(50)
        if r.reason == Stop.HTIF_EXIT:
            break
        sent += m.console_write(data[sent:])
    assert sent == len(data)
    assert g.read("line", len(data)) == data


def test_input_stop_when_the_guest_empties_the_fifo():
    g = rvasm.boot(READ_LINE)
    m = g.machine
    m.console_write(b"ab")
    m.set_input_waiting(True)
    r = m.run(100_000)
    assert r.reason == Stop.INPUT
    # The instruction that read the last byte completed; the guest has it.
    assert m.reg(5) == ord("b")                         # t0
    assert g.read("line", 1) == b"a"
    r = m.run(1_000)                                    # FIFO empty, nothing more: just polls
    assert r.reason == Stop.BUDGET
    m.console_write(b"cd")
    r = m.run(100_000)
    assert r.reason == Stop.INPUT
    m.set_input_waiting(False)
    m.console_write(b"e\n")
    assert g.run_to_exit() == 0
    assert g.read("line", 6) == b"abcde\n"


def test_no_input_stop_unless_input_is_waiting():
    g = rvasm.boot(READ_LINE)
    m = g.machine
    m.console_write(b"ab")
    r = m.run(10_000)
    assert (r.reason, r.executed) == (Stop.BUDGET, 10_000)


def test_loopback_mode_feeds_output_back_as_input():
    g = rvasm.boot("""
main:
        li s1, UART
        li t0, 0x10
        sb t0, 4(s1)                    // MCR.LOOP
        li t0, 'q'
        sb t0, 0(s1)
        lbu a0, 5(s1)                   // LSR: data ready
        lbu a1, 0(s1)
        sb zero, 4(s1)
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert m.reg(10) & 1
    assert m.reg(11) == ord("q")
    assert m.console_read() == b""


PLIC_CONTEXT = {"M": 0, "S": 1}


def plic_uart_guest(mode: str) -> rvasm.Guest:
    ctx = PLIC_CONTEXT[mode]
    enable = f"PLIC + 0x2000 + {0x80 * ctx:#x}"
    claim = f"PLIC + 0x200004 + {0x1000 * ctx:#x}"
    if mode == "M":
        setup = """
        la t0, handler
        csrw mtvec, t0
        li t0, 1 << 11
        csrs mie, t0                    // MEIE
        csrsi mstatus, 8
"""
        enter, cause_csr = "", "mcause"
    else:
        setup = """
        PMP_ALLOW_ALL
        la t0, handler
        csrw stvec, t0
        li t0, 1 << 9
        csrw mideleg, t0
        csrs mie, t0                    // SEIE
"""
        enter, cause_csr = "ENTER_S s_main\ns_main:\n        csrsi sstatus, 2", "scause"
    return rvasm.boot(f"""
main:
        li t0, PLIC + 10 * 4
        li t1, 1
        sw t1, 0(t0)                    // priority of source 10 (UART)
        li t0, {enable}
        li t1, 1 << 10
        sw t1, 0(t0)
        li t0, PLIC + 0x200000 + {0x1000 * ctx:#x}
        sw zero, 0(t0)                  // threshold 0
        li t0, UART
        li t1, 1
        sb t1, 1(t0)                    // IER: received data available
{setup}
        {enter}
idle:
        wfi
        j idle

        .align 2
handler:
        csrr a0, {cause_csr}
        li t0, {claim}
        lw a1, 0(t0)                    // claim
        li t1, UART
        lbu a2, 0(t1)                   // the byte
        sw a1, 0(t0)                    // complete
        EXIT 0
""")


def test_received_byte_interrupts_machine_mode_through_the_plic():
    g = plic_uart_guest("M")
    m = g.machine
    r = m.run(100_000)
    assert (r.reason, r.deadline) == (Stop.IDLE, NO_DEADLINE)
    m.console_write(b"k")
    assert g.run_to_exit() == 0
    assert (m.reg(10), m.reg(11), m.reg(12)) == (INTERRUPT | 11, 10, ord("k"))


def test_received_byte_interrupts_supervisor_through_the_plic():
    g = plic_uart_guest("S")
    m = g.machine
    r = m.run(100_000)
    assert (r.reason, r.deadline) == (Stop.IDLE, NO_DEADLINE)
    m.console_write(b"z")
    assert g.run_to_exit() == 0
    assert (m.reg(10), m.reg(11), m.reg(12)) == (INTERRUPT | 9, 10, ord("z"))
    assert m.csr(0x342) == 0                            # M-mode never involved
