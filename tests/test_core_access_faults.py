"""Accesses to physical addresses with nothing behind them are access faults,
and an access is performed even when its result is thrown away.

Firmware probes memory and devices this way, and kernels report the fault
address from mtval.  Checked: loads, stores and fetches outside RAM and the
devices (also right past the end of RAM, and from a pc whose decode slot was
just used by RAM code), a load into x0 still faulting and still consuming a
UART byte, jalr with rd == rs1 jumping to the old value.  (The PCIe windows
are not "nothing": an access there no BAR claims completes as a master abort,
all ones, as test_pci_config.py checks.)
"""

import pytest

import rvasm

RAM_END = rvasm.RAM_BASE + rvasm.DEFAULT_RAM


@pytest.mark.parametrize("address", [0x0, 0x0400_0000, 0x2000_0000, RAM_END, RAM_END + 0x1000,
                                     1 << 40])
@pytest.mark.parametrize("insn, cause", [("ld a0, 0(s1)", 5), ("lw zero, 0(s1)", 5),
                                         ("sd s1, 0(s1)", 7), ("sb s1, 0(s1)", 7)])
def test_data_access_to_nothing_is_an_access_fault(address, insn, cause):
    g = rvasm.boot(f"""
main:
        li s1, {address:#x}
bad:
        {insn}
        EXIT 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (cause, g.sym("bad"), address)


def test_last_bytes_of_ram_are_accessible_and_crossing_the_end_faults():
    g = rvasm.boot(f"""
main:
        li s1, {RAM_END - 8:#x}
        li t0, 0x0102030405060708
        sd t0, 0(s1)
        ld a0, 0(s1)
        li s2, {RAM_END - 4:#x}
bad:
        ld a1, 0(s2)                    // 4 bytes in RAM, 4 past its end
        EXIT 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert g.machine.reg(10) == 0x0102030405060708
    assert (g.trap.cause, g.trap.epc) == (5, g.sym("bad"))
    assert g.trap.tval in (RAM_END - 4, RAM_END)


@pytest.mark.parametrize("target", ["uart", "nothing", "ram_end"])
def test_fetch_from_outside_ram_is_an_access_fault(target):
    """Jump to an address with no RAM behind it, after running RAM code whose
    pc has the same low 17 bits (a pc-indexed decode cache must not be
    fooled by them)."""
    g = rvasm.boot("""
main:
        la t0, params
        ld s1, 0(t0)
        jalr s1
        .data
        .balign 8
params: .dword 0
""")
    low = g.sym("main") & 0x1FFFF
    address = {"uart": rvasm.UART + (low & 0xFF), "nothing": 0x4000_0000 + low,
               "ram_end": RAM_END + low}[target]
    g.set_u64("params", address)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc, g.trap.tval) == (1, address, address)


def test_load_into_x0_still_reads_the_device():
    g = rvasm.boot("""
main:
        li s1, UART
        lbu zero, 0(s1)                 // consumes 'a', result discarded
        lbu a0, 0(s1)
        lw zero, 0(s1)                  // a 32-bit read of RBR consumes 'c'
        lbu a1, 0(s1)
        EXIT 0
""")
    g.machine.console_write(b"abcd")
    assert g.run_to_exit() == 0
    assert (g.machine.reg(10), g.machine.reg(11), g.machine.reg(0)) == (ord("b"), ord("d"), 0)


def test_jalr_with_rd_equal_to_rs1_jumps_to_the_old_value():
    g = rvasm.boot("""
main:
        la ra, first
        jalr ra, 0(ra)                  // ra := back, jump to the old ra
back:
        EXIT 1
first:
        mv a0, ra
        la t0, second
        jalr t0, 0(t0)
after_second:
        EXIT 2
second:
        mv a1, t0
        la ra, third
        c.jalr ra
after_third:
        EXIT 3
third:
        mv a2, ra
        EXIT 0
""")
    assert g.run_to_exit() == 0
    m = g.machine
    assert (m.reg(10), m.reg(11), m.reg(12)) == (g.sym("back"), g.sym("after_second"),
                                                 g.sym("after_third"))
