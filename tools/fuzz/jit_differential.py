#!/usr/bin/env python3
"""Differential fuzzer: the JIT against the interpreter, on random RV64 code.

Each case writes a random program into a small M-mode harness (tests/rvasm.py)
and runs it twice, once with the JIT and once with the interpreter only, to
the same random checkpoints, each machine reaching them in its own random
run(n) chunks (so slices end anywhere, inside blocks too).  At every
checkpoint the full architectural state must match: x and f registers, pc,
privilege, position, virtual clock, the CSRs that record traps and time,
all of RAM, and the console output.

The programs mix RV64IM ALU ops (x0 as a destination too), LUI/AUIPC, loads
and stores to RAM (aligned, misaligned, across pages), to the UART (MMIO) and
to unmapped addresses (access faults), mtime reads, forward branches, small
counted loops (the JIT's self-loops), forward jalr jumps and calls, programs
starting anywhere in a page (so blocks chain within and across pages),
compressed instructions, CSR reads,
ecall/ebreak/illegal traps, some D-extension ops and loads/stores, stores
that patch the program's own code (with and without fence.i) and,
optionally, a timer interrupt every few ticks, breakpoints and data
watchpoints on the data area (each stop is compared, then the run resumes
over it).  The trap handler skips the
trapping instruction and re-arms the timer.

    python3 tools/fuzz/jit_differential.py --seed 1 --count 200 --time-limit 60
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import rvasm  # noqa: E402
from chrono.core.machine import REG_F0, Stop, Watch  # noqa: E402

RAM_SIZE = 2 << 20

HARNESS = r"""
main:
    la t0, fz_trap
    csrw mtvec, t0
    la t0, fz_save
    csrw mscratch, t0
    li t0, 1 << 13                      // FS = Initial: D ops run
    csrs mstatus, t0
    la t0, fz_delta
    ld t0, 0(t0)
    beqz t0, 1f
    li t1, CLINT_MTIME
    ld t2, 0(t1)
    add t2, t2, t0
    li t1, CLINT_MTIMECMP
    sd t2, 0(t1)
    li t0, 1 << 7                       // MTIE
    csrs mie, t0
    csrsi mstatus, 8                    // MIE
1:
    la s0, fz_data
    li s1, UART
    li s2, CLINT_MTIME
    la s3, fz_code
    la t0, fz_offset
    ld t0, 0(t0)
    add s3, s3, t0                      // the program may start anywhere in a page
    la t0, fz_outer
    ld s4, 0(t0)
    jr s3
    .globl fz_end
fz_end:
    j fz_end

    .align 2
fz_trap:                                // skip the trapping instruction; re-arm the timer
    csrrw t0, mscratch, t0
    sd t1, 0(t0)
    sd t2, 8(t0)
    csrr t1, mcause
    bltz t1, 2f
    li t2, 1                            // fetch faults: give up, park
    beq t1, t2, 4f
    li t2, 12
    beq t1, t2, 4f
    beqz t1, 4f
    csrr t1, mepc
    lhu t2, 0(t1)
    andi t2, t2, 3
    addi t1, t1, 2
    xori t2, t2, 3
    bnez t2, 1f
    addi t1, t1, 2
1:  csrw mepc, t1
    j 3f
4:  la t1, fz_end
    csrw mepc, t1
    j 3f
2:  li t1, CLINT_MTIME
    ld t2, 0(t1)
    la t1, fz_delta
    ld t1, 0(t1)
    add t2, t2, t1
    li t1, CLINT_MTIMECMP
    sd t2, 0(t1)
3:  ld t1, 0(t0)
    ld t2, 8(t0)
    csrrw t0, mscratch, t0
    mret

    .data
    .align 3
fz_save:  .dword 0, 0
    .globl fz_delta, fz_outer, fz_offset, fz_data, fz_code
fz_delta: .dword 0
fz_outer: .dword 0
fz_offset: .dword 0
    .align 12
fz_data:  .space 8192
    .align 12
fz_code:  .space 16384
"""

# Registers the random code may write; s0-s5 hold bases and counters.
S0, S1, S2, S3, S4, S5 = 8, 9, 18, 19, 20, 21
FREE = [1, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]
ANY = list(range(32))
CSRS_READ = [0xB00, 0xB02, 0xC00, 0xC01, 0xC02, 0x300, 0x344, 0x341, 0x342, 0x343]
STATE_CSRS = [0x300, 0x341, 0x342, 0x343, 0x344, 0xB00, 0xB02, 0xC01, 0x001]


# ---- encoders ----------------------------------------------------------------

def r_type(f7, rs2, rs1, f3, rd, op):
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def i_type(imm, rs1, f3, rd, op):
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def s_type(imm, rs2, rs1, f3, op):
    imm &= 0xFFF
    return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op


def b_type(imm, rs2, rs1, f3):
    imm &= 0x1FFF
    return (((imm >> 12) & 1) << 31) | (((imm >> 5) & 63) << 25) | (rs2 << 20) | (rs1 << 15) | \
        (f3 << 12) | (((imm >> 1) & 15) << 8) | (((imm >> 11) & 1) << 7) | 0x63


def j_type(imm, rd):
    imm &= 0x1FFFFF
    return (((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3FF) << 21) | (((imm >> 11) & 1) << 20) | \
        (((imm >> 12) & 0xFF) << 12) | (rd << 7) | 0x6F


def u32(word):
    return word.to_bytes(4, "little")


def u16(half):
    return half.to_bytes(2, "little")


R_OPS = {  # name: (funct7, funct3, opcode)
    "add": (0, 0, 0x33), "sub": (0x20, 0, 0x33), "sll": (0, 1, 0x33), "slt": (0, 2, 0x33),
    "sltu": (0, 3, 0x33), "xor": (0, 4, 0x33), "srl": (0, 5, 0x33), "sra": (0x20, 5, 0x33),
    "or": (0, 6, 0x33), "and": (0, 7, 0x33),
    "mul": (1, 0, 0x33), "mulh": (1, 1, 0x33), "mulhsu": (1, 2, 0x33), "mulhu": (1, 3, 0x33),
    "div": (1, 4, 0x33), "divu": (1, 5, 0x33), "rem": (1, 6, 0x33), "remu": (1, 7, 0x33),
    "addw": (0, 0, 0x3B), "subw": (0x20, 0, 0x3B), "sllw": (0, 1, 0x3B), "srlw": (0, 5, 0x3B),
    "sraw": (0x20, 5, 0x3B), "mulw": (1, 0, 0x3B), "divw": (1, 4, 0x3B), "divuw": (1, 5, 0x3B),
    "remw": (1, 6, 0x3B), "remuw": (1, 7, 0x3B),
}
I_OPS = {"addi": 0, "slti": 2, "sltiu": 3, "xori": 4, "ori": 6, "andi": 7}
LOADS = {"lb": (0, 1), "lh": (1, 2), "lw": (2, 4), "ld": (3, 8), "lbu": (4, 1), "lhu": (5, 2),
         "lwu": (6, 4)}
STORES = {"sb": (0, 1), "sh": (1, 2), "sw": (2, 4), "sd": (3, 8)}
BRANCH_F3 = [0, 1, 4, 5, 6, 7]
EDGE_VALUES = [0, 1, -1, 2047, -2048, 0x7FF, 31, 32, 63]


# ---- program generation --------------------------------------------------------

@dataclass
class Item:
    """A piece of the program: fixed bytes, or a branch resolved at layout."""
    data: bytes = b""
    skip: int = 0                       # forward branch over this many following items
    cond: int = 0                       # branch: (f3, rs1, rs2) packed later
    rs: tuple = ()
    indirect: bool = False              # the skip is an auipc + jalr (rs = (scratch, link))
    patchable: bool = False             # a plain 4-byte ALU op a store may overwrite
    patch_target: int = -1              # self-modifying store: index of the item it patches
    patch_word: int = 0
    fence: bool = False


def rand_imm12(rng):
    return rng.choice(EDGE_VALUES) if rng.random() < 0.3 else rng.randint(-2048, 2047)


def alu_item(rng) -> Item:
    rd = 0 if rng.random() < 0.05 else rng.choice(FREE)
    kind = rng.random()
    if kind < 0.45:
        name = rng.choice(list(R_OPS))
        f7, f3, op = R_OPS[name]
        word = r_type(f7, rng.choice(ANY), rng.choice(ANY), f3, rd, op)
    elif kind < 0.75:
        f3 = rng.choice(list(I_OPS.values()))
        word = i_type(rand_imm12(rng), rng.choice(ANY), f3, rd, 0x13)
    elif kind < 0.85:
        sh = rng.randint(0, 63)
        f3, hi = rng.choice([(1, 0), (5, 0), (5, 0x10)])
        word = i_type((hi << 6) | sh, rng.choice(ANY), f3, rd, 0x13)
    elif kind < 0.92:
        sh = rng.randint(0, 31)
        choice = rng.choice([(0, 0, None), (1, 0, sh), (5, 0, sh), (5, 0x20, sh)])
        f3, f7, sh = choice
        if sh is None:                  # addiw
            word = i_type(rand_imm12(rng), rng.choice(ANY), 0, rd, 0x1B)
        else:
            word = i_type((f7 << 5) | sh, rng.choice(ANY), f3, rd, 0x1B)
    else:
        op = rng.choice([0x37, 0x17])   # lui, auipc
        word = (rng.getrandbits(20) << 12) | (rd << 7) | op
    return Item(u32(word), patchable=True)


def load_item(rng) -> Item:
    name = rng.choice(list(LOADS))
    f3, size = LOADS[name]
    rd = 0 if rng.random() < 0.05 else rng.choice(FREE)
    where = rng.random()
    if where < 0.55:
        off = rng.randrange(0, 8192 - 8, size)
        base = S0
    elif where < 0.7:                   # misaligned, sometimes across the page end
        off = rng.choice([4095, 4094, 4093, 2047 - 1, rng.randrange(1, 2040)])
        base = S0
    elif where < 0.8:
        base, off = S1, rng.randint(0, 7)
    elif where < 0.87:
        base, off, f3 = S2, 0, 3        # mtime
    elif where < 0.93:
        base, off = 0, rand_imm12(rng)  # around address 0: access faults
    else:
        base, off = rng.choice(FREE), rand_imm12(rng)
    if off > 2047:                      # 12-bit offsets: reach the second page via s0 + 2047 + ...
        return Item(u32(i_type(2047, S0, 0, 5, 0x13)) + u32(i_type(off - 2047, 5, f3, rd, 0x03)))
    return Item(u32(i_type(off, base, f3, rd, 0x03)))


def store_item(rng) -> Item:
    name = rng.choice(list(STORES))
    f3, size = STORES[name]
    src = rng.choice(ANY)
    where = rng.random()
    if where < 0.7:
        off = rng.randrange(0, 2047 - 8, size) if rng.random() < 0.85 else rng.randrange(1, 2040)
        base = S0
    elif where < 0.8:
        base, off = S0, 2047            # misaligned at the far end of the imm range
    elif where < 0.9:
        base, off, f3 = S1, 0, 0        # UART THR: console output
    else:
        base, off = 0, rand_imm12(rng)
    return Item(u32(s_type(off, src, base, f3, 0x23)))


def compressed_item(rng) -> Item:
    kind = rng.randrange(9)
    rd = rng.choice(FREE)
    rdp = rng.randint(10, 15)           # x10-x15 as rd'
    rs2p = rng.randint(8, 15)
    imm6 = rng.randint(-32, 31) & 63
    if kind == 0:                       # c.addi
        h = (0 << 13) | ((imm6 >> 5) << 12) | (rd << 7) | ((imm6 & 31) << 2) | 1
    elif kind == 1:                     # c.li
        h = (2 << 13) | ((imm6 >> 5) << 12) | (rd << 7) | ((imm6 & 31) << 2) | 1
    elif kind == 2:                     # c.mv
        h = (4 << 13) | (rd << 7) | (rng.randint(1, 31) << 2) | 2
    elif kind == 3:                     # c.add
        h = (4 << 13) | (1 << 12) | (rd << 7) | (rng.randint(1, 31) << 2) | 2
    elif kind == 4:                     # c.slli
        sh = rng.randint(1, 63)
        h = ((sh >> 5) << 12) | (rd << 7) | ((sh & 31) << 2) | 2
    elif kind in (5, 6):                # c.ld / c.sd off(s0)
        uimm = rng.randrange(0, 256, 8)
        reg = rdp if kind == 5 else rs2p
        f3 = 3 if kind == 5 else 7
        h = (f3 << 13) | (((uimm >> 3) & 7) << 10) | ((S0 - 8) << 7) | (((uimm >> 6) & 3) << 5) | \
            ((reg - 8) << 2)
    else:                               # c.sub / c.xor / c.or / c.and / c.subw / c.addw
        f2, bit12 = rng.choice([(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1)])
        h = (4 << 13) | (bit12 << 12) | (3 << 10) | ((rdp - 8) << 7) | (f2 << 5) | \
            ((rs2p - 8) << 2) | 1
    return Item(u16(h))


def special_item(rng) -> Item:
    kind = rng.randrange(9)
    rd = rng.choice(FREE)
    if kind < 3:                        # CSR read
        return Item(u32(i_type(rng.choice(CSRS_READ), 0, 2, rd, 0x73)))
    if kind == 3:
        return Item(u32(0x00000073))    # ecall
    if kind == 4:
        return Item(rng.choice([u32(0x00100073), u16(0x9002)]))   # ebreak, c.ebreak
    if kind == 5:
        return Item(rng.choice([u32(0xFFFFFFFF), u16(0x0000)]))   # illegal
    fd, fs1, fs2 = rng.randrange(32), rng.randrange(32), rng.randrange(32)
    if kind == 6:                       # fmv.d.x, fadd.d, fmv.x.d
        return Item(u32(r_type(0x79, 0, rng.choice(ANY), 0, fd, 0x53)) +
                    u32(r_type(0x01, fs2, fs1, 0, fd, 0x53)) +
                    u32(r_type(0x71, 0, fs1, 0, rd, 0x53)))
    off = rng.randrange(0, 2040, 8)
    if kind == 7:                       # fld
        return Item(u32(i_type(off, S0, 3, fd, 0x07)))
    return Item(u32(s_type(off, fs1, S0, 3, 0x27)))             # fsd


def simple_item(rng) -> Item:
    r = rng.random()
    if r < 0.45:
        return alu_item(rng)
    if r < 0.62:
        return load_item(rng)
    if r < 0.77:
        return store_item(rng)
    if r < 0.92:
        return compressed_item(rng)
    return special_item(rng)


def loop_items(rng) -> list[Item]:
    """A counted loop: its body is a block that branches back to itself."""
    body = [simple_item(rng) for _ in range(rng.randint(1, 6))]
    head = Item(u32(i_type(rng.randint(1, 20), 0, 0, S5, 0x13)))
    dec = Item(u32(i_type(-1, S5, 0, S5, 0x13)))
    size = sum(len(i.data) for i in body) + 4
    back = Item(u32(b_type(-size, 0, S5, 1)))       # bne s5, x0, body
    return [head, *body, dec, back]


def generate(rng: random.Random) -> tuple[bytes, list[int]]:
    """The program, and the offsets where its pieces start (instruction starts)."""
    items: list[Item] = []
    for _ in range(rng.randint(20, 120)):
        r = rng.random()
        if r < 0.08:
            items.append(Item(skip=rng.randint(1, 4), cond=rng.choice(BRANCH_F3),
                              rs=(rng.choice(ANY), rng.choice(ANY))))
        elif r < 0.11:                  # jalr forward (a call or an indirect jump)
            items.append(Item(skip=rng.randint(0, 4), indirect=True,
                              rs=(rng.choice(FREE), rng.choice([0, 1, rng.choice(FREE)]))))
        elif r < 0.15:
            items.extend(loop_items(rng))
        elif r < 0.18:
            items.append(Item(patch_target=0, fence=rng.random() < 0.5))
        else:
            items.append(simple_item(rng))
    # Layout: branches are 4 bytes, patches 12 or 16.
    for item in items:
        if item.patch_target >= 0:
            item.data = b"\0" * (16 if item.fence else 12)
        elif item.indirect:
            item.data = b"\0" * 8
        elif item.skip:
            item.data = b"\0" * 4
    offsets, pos = [], 0
    for item in items:
        offsets.append(pos)
        pos += len(item.data)
    offsets.append(pos)
    patchable = [i for i, it in enumerate(items) if it.patchable and offsets[i] + 4 <= 2047]
    for i, item in enumerate(items):
        if item.indirect:
            target = offsets[min(i + 1 + item.skip, len(items))]
            scratch, link = item.rs
            item.data = u32((scratch << 7) | 0x17) + \
                u32(i_type(target - offsets[i], scratch, 0, link, 0x67))      # auipc; jalr
        elif item.skip:
            target = offsets[min(i + 1 + item.skip, len(items))]
            item.data = u32(b_type(target - offsets[i], item.rs[1], item.rs[0], item.cond))
        elif item.patch_target >= 0:
            if not patchable:
                item.data = u32(0x00000013) * (len(item.data) // 4)     # nops
                continue
            victim = rng.choice(patchable)
            word = int.from_bytes(alu_item(rng).data, "little")
            hi = ((word + 0x800) >> 12) & 0xFFFFF
            lo = word - (hi << 12)
            lo = ((lo + 0x800) & 0xFFF) - 0x800
            code = u32((hi << 12) | (7 << 7) | 0x37) + u32(i_type(lo, 7, 0, 7, 0x1B)) + \
                u32(s_type(offsets[victim], 7, S3, 2, 0x23))           # sw t2, victim(s3)
            if item.fence:
                code += u32(0x0000100F)                                   # fence.i
            item.data = code
    body = b"".join(item.data for item in items)
    # Outer loop: addi s4, s4, -1; beqz s4, +8; j start; then the parking loop.
    tail_pos = len(body)
    tail = u32(i_type(-1, S4, 0, S4, 0x13)) + u32(b_type(8, 0, S4, 0)) + u32(j_type(-(tail_pos + 8), 0))
    return body + tail, offsets[:-1]


# ---- running and comparing ----------------------------------------------------

def state(m) -> dict:
    return {
        "x+pc": m.registers(),
        "f": [m.reg(REG_F0 + i) for i in range(32)],
        "priv": m.priv,
        "steps": m.steps,
        "vclock": m.vclock,
        "csrs": [m.csr(n) for n in STATE_CSRS],
    }


def ram_difference(a, b) -> str | None:
    """Where two machines' RAM first differs (all of RAM is compared)."""
    if np.array_equal(a.ram, b.ram):
        return None
    first = int(np.flatnonzero(a.ram != b.ram)[0])
    return f"RAM differs first at {rvasm.RAM_BASE + first:#x}"


@dataclass
class Side:
    guest: object
    console: bytearray = field(default_factory=bytearray)
    stopped: object = None              # a terminal stop, once seen
    hits: list = field(default_factory=list)    # (position, pc) of breakpoint stops


def _run_to(side: Side, target: int, rng: random.Random) -> None:
    """Run to position `target` in random chunks (OUTPUT stops just drain)."""
    m = side.guest.machine
    while side.stopped is None and m.steps < target:
        left = target - m.steps
        chunk = rng.choice([left, left, 1, rng.randint(1, left)])
        r = m.run(chunk)
        side.console += m.console_read()
        if r.reason == Stop.BREAKPOINT:
            side.hits.append((m.steps, m.pc))   # the next run resumes over it
        elif r.reason == Stop.WATCHPOINT:
            side.hits.append((m.steps, m.pc, m.watch_hit()))
        elif r.reason not in (Stop.BUDGET, Stop.OUTPUT):
            side.stopped = r.reason


def run_case(seed: int, steps: int = 30000) -> tuple[list[str], int]:
    """Problems found for this seed (empty = identical), and blocks translated."""
    rng = random.Random(seed)
    code, starts = generate(rng)
    delta = rng.choice([0, 0, 1, 2, 3, 7, 40])
    outer = rng.randint(2, 6)
    code_offset = rng.choice([0, rng.randrange(0, 4096, 2)])
    sides = []
    threshold = rng.choice([1, 1, 2, 3])   # translate early: short programs, many translations
    for jit in (True, False):
        g = rvasm.boot(HARNESS, ram_size=RAM_SIZE, jit=jit, jit_threshold=threshold)
        g.machine.write_phys(g.sym("fz_code") + code_offset, code)
        g.set_u64("fz_offset", code_offset)
        g.set_u64("fz_delta", delta)
        g.set_u64("fz_outer", outer)
        sides.append(Side(g))
    # Sometimes breakpoints, at instruction starts of the program.
    breakpoints = [rng.choice(starts) for _ in range(rng.choice([0, 0, 1, 3, 8]))]
    for side in sides:
        for offset in breakpoints:
            side.guest.machine.add_breakpoint(side.guest.sym("fz_code") + code_offset + offset)
    # Sometimes data watchpoints on the program's data area (loads and stores
    # go there), of each kind: the JIT's accesses to their pages must miss.
    data = sides[0].guest.sym("fz_data")
    watches = [(data + rng.randrange(0, 8192), rng.choice([1, 2, 4, 8, 64, 512, 4096]),
                rng.choice([Watch.WRITE, Watch.READ, Watch.ACCESS]))
               for _ in range(rng.choice([0, 0, 0, 1, 2]))]
    for side in sides:
        for address, length, kind in watches:
            side.guest.machine.add_watchpoint(address, length, kind)
    # Each side reaches the checkpoints in its own chunks; with breakpoints or
    # watchpoints both make the same calls (a run that ends at a breakpoint's
    # pc resumes over it: which stops are seen depends on the chunking).
    same_chunks = bool(breakpoints or watches)
    chunk_rngs = [random.Random(seed * 2 + 1), random.Random(seed * 2 + (1 if same_chunks else 2))]
    position = 0
    problems: list[str] = []
    while position < steps:
        position = min(steps, position + rng.choice([1, 2, 7, rng.randint(1, 300), rng.randint(1, 5000)]))
        for side, crng in zip(sides, chunk_rngs):
            _run_to(side, position, crng)
        a, b = (state(s.guest.machine) for s in sides)
        for key in a:
            if a[key] != b[key]:
                problems.append(f"seed {seed}: at position {position}: {key} differs: "
                                f"jit {a[key]} vs interpreter {b[key]}")
        ram = ram_difference(sides[0].guest.machine, sides[1].guest.machine)
        if ram:
            problems.append(f"seed {seed}: at position {position}: {ram}")
        if sides[0].console != sides[1].console:
            problems.append(f"seed {seed}: at position {position}: console output differs")
        if sides[0].hits != sides[1].hits:
            problems.append(f"seed {seed}: at position {position}: breakpoint/watchpoint stops differ: "
                            f"{sides[0].hits[-5:]} vs {sides[1].hits[-5:]}")
        if sides[0].stopped != sides[1].stopped:
            problems.append(f"seed {seed}: at position {position}: stops differ: "
                            f"{sides[0].stopped} vs {sides[1].stopped}")
        if problems or sides[0].stopped is not None:
            break
    return problems, sides[0].guest.machine.jit_translated


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds")
    ap.add_argument("--steps", type=int, default=30000, help="steps per case")
    args = ap.parse_args()
    start = time.monotonic()
    tried = broken = translated = 0
    for seed in range(args.seed, args.seed + args.count):
        if time.monotonic() - start > args.time_limit:
            break
        problems, n = run_case(seed, args.steps)
        tried += 1
        translated += n
        if problems:
            broken += 1
            for p in problems:
                print(p)
    print(f"jit_differential: {tried} cases from seed {args.seed}, {broken} differing, "
          f"{translated} blocks translated, {time.monotonic() - start:.1f} s")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
