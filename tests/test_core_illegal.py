"""Illegal-instruction traps: mcause 2, mepc = the instruction, mtval = its
bits (all 32, or only the 16 of a compressed one).

Firmware and kernels probe for features by touching a CSR or an instruction
and catching the trap (OpenSBI probes CSRs, Linux checks for an FPU), and
they emulate or report the instruction from mtval, so the exact values
matter.  mstatus.FS is Off at reset, so fcsr and FP instructions trap too
(test_core_fpu.py covers the FPU with FS on).
"""

import struct

import pytest

import rvasm

MSTATUS_MPP = 3 << 11

# (label, assembly of the instruction under test).  The 32-bit cases are read
# back from guest memory to get their bits, so the assembler picks encodings.
CASES_32 = {
    "csr_0x7c0_read": "csrr a0, 0x7c0",
    "csr_0x7c0_write_only": "csrw 0x7c0, a0",      # no read, still must exist
    "csr_fcsr_read": "csrr a0, 0x003",             # fcsr: FS is Off at reset
    "csr_fflags_write": "csrw 0x001, a0",
    "csr_frm_read": "csrr a0, 0x002",
    "csr_pmpcfg1": "csrr a0, pmpcfg1",             # odd pmpcfg do not exist on RV64
    "csr_mvendorid_write": "csrw mvendorid, zero", # read-only CSR
    "csr_cycle_set_bits": "csrs cycle, a1",        # write to a read-only counter
    "custom0_opcode": ".word 0x0000000b",
    "fadd_s": ".word 0x00007053",                  # fadd.s f0, f0, f0 (dynamic rm)
    "flw": ".word 0x00002007",                     # flw f0, 0(x0)
    "amo_bad_funct5": ".word 0x3800202f",          # AMO word, funct5 0b00111 is undefined
    "lr_w_rs2_nonzero": ".word 0x1010202f",        # lr.w must have rs2 = 0
    "op_bad_funct7": ".word 0x40001033",           # sll with funct7 0x20
    "load_funct3_7": ".word 0x00007003",           # lb-group funct3 = 7
    "store_funct3_4": ".word 0x00004023",          # sd-group funct3 = 4
    "jalr_funct3_1": ".word 0x00001067",
    "system_undefined": ".word 0x30300073",        # funct12 0x303: no such SYSTEM instruction
    "slliw_shamt_bit5": ".word 0x0205151b",        # slliw a0, a0, 32 is reserved
    "srai_bad_funct6": ".word 0x44155513",
    "op32_mulhw": ".word 0x02b5153b",              # there is no mulhw
}

# (label, 16-bit parcel): reserved or FP compressed encodings.
CASES_16 = {
    "c_all_zero": 0x0000,           # defined illegal
    "c_lui_zero_imm": 0x6081,       # c.lui x1, 0 is reserved
    "c_addi16sp_zero": 0x6101,      # c.addi16sp with imm 0 is reserved
    "c_fld": 0x2008,                # c.fld: FS is Off at reset
    "c_fsdsp": 0xA002,              # c.fsdsp: FS is Off at reset
    "c_jr_x0": 0x8002,              # c.jr with rs1 = x0 is reserved
    "c_lwsp_x0": 0x4002,            # c.lwsp with rd = x0 is reserved
    "c_ldsp_x0": 0x6002,            # c.ldsp with rd = x0 is reserved
    "c_addiw_x0": 0x2005,           # c.addiw with rd = x0 is reserved
    "c_addi4spn_zero": 0x0004,      # c.addi4spn with imm 0 (rd' = s1) is reserved
}


def trap_program(insn: str) -> str:
    return f"""
main:
        li a1, 1
bad:
        {insn}
        EXIT 0                          // reached only if it did not trap
"""


@pytest.mark.parametrize("label", list(CASES_32))
def test_illegal_32bit_instruction(label):
    g = rvasm.boot(trap_program(CASES_32[label]))
    assert g.run_to_exit() == rvasm.TRAP_EXIT, "instruction did not trap"
    bits = struct.unpack("<I", g.read("bad", 4))[0]
    assert bits & 3 == 3
    t = g.trap
    assert (t.count, t.cause, t.epc) == (1, 2, g.sym("bad"))
    assert t.tval == bits
    assert t.status & MSTATUS_MPP == MSTATUS_MPP      # trapped from M


@pytest.mark.parametrize("label", list(CASES_16))
def test_illegal_16bit_instruction(label):
    parcel = CASES_16[label]
    # A nonzero parcel follows, so a core that read 32 bits would show it in mtval.
    g = rvasm.boot(trap_program(f".half {parcel:#x}\n        .half 0xffff"))
    assert g.run_to_exit() == rvasm.TRAP_EXIT, "parcel did not trap"
    t = g.trap
    assert (t.count, t.cause, t.epc) == (1, 2, g.sym("bad"))
    assert t.tval == parcel


def test_illegal_instruction_straddling_a_page_boundary():
    """A 32-bit instruction whose second half is on the next page: mtval still
    has all 32 bits, mepc its first byte."""
    g = rvasm.boot("""
main:
        j bad
        .balign 4096
        .skip 4094
bad:
        .byte 0x0b, 0x00, 0x34, 0x12     // custom-0 opcode, bits 0x1234000b
        EXIT 0
""")
    assert g.sym("bad") % 4096 == 4094
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (2, g.sym("bad"), 0x1234000B)


@pytest.mark.parametrize("insn", ["csrr a0, mstatus", "csrr a0, sstatus", "csrr a0, 0x7c0",
                                  "csrr a0, 0x003", "mret", "sret", "sfence.vma"])
def test_privileged_instruction_from_user_mode(insn):
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        ENTER_U user
user:
        li a1, 1
bad:
        {insn}
        EXIT 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    bits = struct.unpack("<I", g.read("bad", 4))[0]
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (2, g.sym("bad"), bits)
    assert t.status & MSTATUS_MPP == 0                # trapped from U


def test_fpu_is_advertised_and_off_at_reset():
    """misa claims F and D (not V); mstatus.FS is Off at reset and software
    turns the FPU on by writing it."""
    g = rvasm.boot("""
main:
        csrr a0, misa
        csrr a1, mstatus
        li t0, 3 << 13
        csrs mstatus, t0                // turn the FPU on
        csrr a2, mstatus
        EXIT 0
""")
    assert g.run_to_exit() == 0
    misa = g.machine.reg(10)
    assert misa >> 62 == 2                            # MXL = 64
    for ext in "IMAFDCSU":
        assert misa & (1 << (ord(ext) - ord("A"))), ext
    assert not misa & (1 << (ord("V") - ord("A")))
    assert g.machine.reg(11) & (3 << 13) == 0         # FS Off at reset
    assert g.machine.reg(12) & (3 << 13) == 3 << 13   # FS writable


# Encodings the spec reserves as HINTs: they must run as no-ops, never trap.
HINTS_16 = {
    "c_li_x0": 0x4015,              # c.li x0, 5
    "c_addi_x0": 0x000D,            # c.addi x0, 3
    "c_mv_x0": 0x802A,              # c.mv x0, a0
    "c_add_x0": 0x902A,             # c.add x0, a0
    "c_slli_x0": 0x0006,            # c.slli x0, 1
    "c_lui_x0": 0x6005,             # c.lui x0, 1
    "c_srli_shamt0": 0x8001,        # c.srli s0, 0
    "c_srai_shamt0": 0x8401,        # c.srai s0, 0
    "c_nop": 0x0001,
}
HINTS_32 = {
    "addi_x0": "addi zero, a0, 5",
    "lui_x0": "lui zero, 1",
    "add_x0": "add zero, a0, a0",
    "slli_x0": "slli zero, a0, 3",
    "fence_tso": ".word 0x8330000f",
    "pause": ".word 0x0100000f",    # Zihintpause: a FENCE with pred = W, succ = 0
    "fence_i": "fence.i",
}


@pytest.mark.parametrize("insn", [f".half {v:#x}" for v in HINTS_16.values()] + list(HINTS_32.values()),
                         ids=list(HINTS_16) + list(HINTS_32))
def test_hint_encodings_are_no_ops(insn):
    g = rvasm.boot(f"""
main:
        li a0, 123
        li s0, 0x456
        {insn}
        EXIT 0
""")
    assert g.run_to_exit() == 0, g.trap
    assert (g.machine.reg(10), g.machine.reg(8), g.machine.reg(0)) == (123, 0x456, 0)


@pytest.mark.parametrize("insn", ["ebreak", "c.ebreak"])
def test_ebreak_is_a_breakpoint_exception(insn):
    g = rvasm.boot(f"""
main:
bad:
        {insn}
        EXIT 0
""")
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc) == (3, g.sym("bad"))
    assert t.tval in (0, g.sym("bad"))                 # 0 or the pc, both legal
