#!/usr/bin/env python3
"""Core fuzzer: random RV64GC instruction streams on chrono and on QEMU, state compared.

    python3 tools/fuzz/core_vs_qemu.py --seed S --count N --time-limit T [--per-image K]

Each *stream* is a short run of random valid instructions: RV64I, M, A (AMOs and
adjacent LR/SC pairs), F and D (every arithmetic, fused, convert, move, compare,
classify and sign-injection op, static and dynamic rounding modes, inputs biased
to zeros, infinities, NaNs (quiet, signalling, not NaN-boxed), subnormals and
limits), compressed forms (the assembler compresses whatever fits; register and
immediate choices are biased so that much does), Zicsr on the safe CSRs (fflags,
frm, fcsr, mscratch, mhartid), aligned loads and stores into the stream's
scratch RAM, and branches and jumps forward within the stream (so it always
ends).  Every register starts from random values the image carries.

Streams are batched, K to an ELF image (default 50): one image runs on chrono
(in-process, loaded as `chrono run --kernel` loads it) and on
`qemu-system-riscv64 -M virt -bios none -kernel IMAGE`.  Each stream ends with
an epilogue that stores x1-x30, f0-f31, fcsr and its pc into the stream's own
dump area; after the last stream the image prints every stream's scratch RAM
and dump area in hex on the UART and powers off through the sifive_test
device.  Both consoles are parsed the same way and compared stream by stream:
registers, fcsr, pc, trap record and a digest of the scratch RAM.

Register conventions: x31 (t6) holds the stream's region base and is never a
destination; loads and stores address t6 + offset (aligned, inside the 1 KiB
scratch window), AMOs and LR/SC go through a register set to t6 + offset just
before.

Traps: the streams are built not to trap except on purpose (ecall, ebreak,
c.ebreak, and FP ops with a dynamic rounding mode after frm was set to an
invalid value 5-7, which are illegal instructions).  An M-mode handler counts
traps and records the last mcause, mepc, mtval in the dump area, steps over the
trapping instruction and returns; it saves t0 in mscratch, so mscratch reads
see that value after a trap, on both machines alike.

Left out because the spec leaves them to the implementation (chrono and QEMU
may both be right and still differ): mstatus (FS may turn Dirty
conservatively: priv. spec 3.1.6.6), misa/marchid/mimpid, the counters (time
and instret are host-paced on QEMU), SC without a directly preceding LR to the
same address, or after a trap (xRET may or may not clear a reservation:
priv. spec 3.3.2), misaligned accesses (may trap or not: unpriv. spec 2.6).
Compared loosely: mtval after EBREAK or an illegal instruction, which may be
zero or the pc / the instruction bits (priv. spec 3.1.16): QEMU 7.2 writes 0
for EBREAK, chrono the pc, and equal or one side zero counts as agreement.

QEMU-side deviations from the spec found by this fuzzer are listed in
QEMU_DEVIATIONS below with the spec text and are excluded from the comparison
(or from generation) as that entry says.

Prints a summary line: images, streams, agreeing, differing, and for each
difference the stream (its seed and its assembly) and the differing state.
Exit status 0 only when every stream agreed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

GCC = "riscv64-unknown-elf-gcc"
QEMU = "qemu-system-riscv64"
MARCH = "rv64imafdc_zicsr_zifencei"
BUILD_FLAGS = [f"-march={MARCH}", "-mabi=lp64", "-mcmodel=medany", "-nostdlib", "-nostartfiles",
               "-static", "-Wl,-Ttext=0x80000000", "-Wl,--no-relax", "-Wl,--build-id=none", "-Wl,-n"]
RAM_SIZE = 128 << 20

# Layout of a stream's region (t6 = region + WINDOW // 2 while the stream runs).
WINDOW = 1024                      # scratch RAM the stream loads from and stores to
DUMP = WINDOW                      # dump area right after it
DUMP_X = DUMP                      # x1..x30 (index 1..30; slot 0 unused)
DUMP_F = DUMP + 8 * 31             # f0..f31
DUMP_FCSR = DUMP_F + 8 * 32
DUMP_PC = DUMP_FCSR + 8
DUMP_TRAPS = DUMP_PC + 8           # count, mcause, mepc, mtval, handler's t1 save
REGION = 2048
T6 = WINDOW // 2                   # t6's offset in the region

# QEMU 7.2 deviations from the spec this fuzzer met (none so far); each:
# (name, spec reference and what QEMU does, how it is excluded).
QEMU_DEVIATIONS: list[tuple[str, str, str]] = []

M64 = (1 << 64) - 1

# Causes for which mtval may be zero or the exception's information, at the
# implementation's choice (priv. spec 3.1.16, "mtval": illegal instruction may
# give the instruction bits, a breakpoint the pc, or zero): QEMU 7.2 gives 0
# for EBREAK, chrono the pc.  Equal, or one of them zero, is agreement.
CAUSE_ILLEGAL, CAUSE_BREAKPOINT = 2, 3
OPTIONAL_MTVAL = (CAUSE_ILLEGAL, CAUSE_BREAKPOINT)


# ---- random values ------------------------------------------------------------------

INT_SPECIALS = [0, 1, 2, 3, M64, M64 - 1, 1 << 63, (1 << 63) - 1, 0xFFFF_FFFF, 0x8000_0000,
                0x7FFF_FFFF, 0xFFFF_FFFF_8000_0000, 0xFFFF_FFFF_7FFF_FFFF, 0x1_0000_0000,
                0xFF, 0x80, 0xFFFF, 0x8000, 31, 32, 63, 64]

F64_SPECIALS = [0, 1 << 63, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000,   # +-0, +-inf
                0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0001,                 # quiet NaNs
                0x7FF4_0000_0000_0000, 0x7FF0_0000_0000_0001,                 # signalling NaNs
                0x0000_0000_0000_0001, 0x000F_FFFF_FFFF_FFFF,                 # subnormals
                0x0010_0000_0000_0000, 0x7FEF_FFFF_FFFF_FFFF,                 # min normal, max
                0x3FF0_0000_0000_0000, 0xBFF8_0000_0000_0000, 0x4000_0000_0000_0000,
                0x43E0_0000_0000_0000, 0xC3E0_0000_0000_0000,                 # +-2^63
                0x41E0_0000_0000_0000, 0x41F0_0000_0000_0000,                 # 2^31, 2^32
                0x3FE0_0000_0000_0000, 0x3FF8_0000_0000_0000, 0x4004_0000_0000_0000]
F32_SPECIALS = [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFFC0_0001,
                0x7FA0_0000, 0x7F80_0001, 0x0000_0001, 0x007F_FFFF, 0x0080_0000, 0x7F7F_FFFF,
                0x3F80_0000, 0xBFC0_0000, 0x4000_0000, 0x5F00_0000, 0xDF00_0000, 0x4F00_0000,
                0x4F80_0000, 0x3F00_0000, 0x3FC0_0000, 0x4020_0000]
NAN_BOX = 0xFFFF_FFFF_0000_0000


def int_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.35:
        return rng.choice(INT_SPECIALS)
    if r < 0.5:
        return rng.randrange(-64, 64) & M64
    if r < 0.65:                                        # sign-extended 32-bit
        v = rng.getrandbits(32)
        return (v | (NAN_BOX if v & 0x8000_0000 else 0)) & M64
    return rng.getrandbits(64)


def f32_value(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return rng.choice(F32_SPECIALS) ^ (rng.random() < 0.2) * 0x8000_0000
    if rng.random() < 0.5:                              # near-representable: small exponents
        return (rng.getrandbits(1) << 31) | (rng.randrange(100, 160) << 23) | rng.getrandbits(23)
    return rng.getrandbits(32)


def f64_value(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return rng.choice(F64_SPECIALS) ^ (rng.random() < 0.2) * (1 << 63)
    if rng.random() < 0.5:
        return (rng.getrandbits(1) << 63) | (rng.randrange(990, 1060) << 52) | rng.getrandbits(52)
    return rng.getrandbits(64)


def fp_register_value(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.45:
        return NAN_BOX | f32_value(rng)                 # a NaN-boxed single
    if r < 0.9:
        return f64_value(rng)
    return rng.getrandbits(64)                          # neither (a single reads it as NaN)


# ---- stream generation -----------------------------------------------------------------

XREGS = [f"x{i}" for i in range(31)]                    # x31 = t6 is the region base
RVC_XREGS = [f"x{i}" for i in range(8, 16)]
FREGS = [f"f{i}" for i in range(32)]
RVC_FREGS = [f"f{i}" for i in range(8, 16)]
RMS = ["rne", "rtz", "rdn", "rup", "rmm", "dyn"]

ALU_R = ["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and",
         "addw", "subw", "sllw", "srlw", "sraw",
         "mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
         "mulw", "divw", "divuw", "remw", "remuw"]
ALU_I = ["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"]
SHIFT_I = [("slli", 64), ("srli", 64), ("srai", 64), ("slliw", 32), ("srliw", 32), ("sraiw", 32)]
LOADS = [("lb", 1), ("lh", 2), ("lw", 4), ("ld", 8), ("lbu", 1), ("lhu", 2), ("lwu", 4)]
STORES = [("sb", 1), ("sh", 2), ("sw", 4), ("sd", 8)]
BRANCHES = ["beq", "bne", "blt", "bge", "bltu", "bgeu"]
AMO_OPS = ["amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax", "amominu", "amomaxu"]
FP_BIN_RM = ["fadd", "fsub", "fmul", "fdiv"]
FP_BIN = ["fmin", "fmax", "fsgnj", "fsgnjn", "fsgnjx"]
FP_FMA = ["fmadd", "fmsub", "fnmadd", "fnmsub"]
FP_CMP = ["feq", "flt", "fle"]
CSR_READ = ["fflags", "frm", "fcsr", "mscratch", "mhartid"]
CSR_WRITE = ["fflags", "frm", "fcsr", "mscratch"]


class StreamBuilder:
    """Random instructions with forward labels; `lines()` returns the body."""

    def __init__(self, rng: random.Random, name: str):
        self.rng = rng
        self.name = name
        self.body: list[str] = []
        self.pending: dict[int, list[str]] = {}          # instruction index -> labels placed there
        self.count = 0                                   # instructions (groups) emitted
        self.nlabels = 0

    # register choices: a third of the time from the compressible set, so that
    # the assembler emits compressed forms
    def x(self, *, rvc: bool = False) -> str:
        return self.rng.choice(RVC_XREGS if rvc else XREGS)

    def xd(self, *, rvc: bool = False) -> str:
        return self.x(rvc=rvc)

    def xs(self, *, rvc: bool = False) -> str:
        return self.x(rvc=rvc)

    def f(self, *, rvc: bool = False) -> str:
        return self.rng.choice(RVC_FREGS if rvc else FREGS)

    def emit(self, *texts: str) -> None:
        """One instruction, or a group that must run as a whole (no label lands
        inside it); labels due at or before this point are placed first."""
        for index in sorted(i for i in self.pending if i <= self.count):
            self.body.extend(f"{label}:" for label in self.pending.pop(index))
        self.body.extend(f"        {text}" for text in texts)
        self.count += 1

    def forward_label(self) -> str:
        """A label 1-8 instructions (or groups) after the one emitted next."""
        label = f".L{self.name}_{self.nlabels}"
        self.nlabels += 1
        self.pending.setdefault(self.count + 1 + self.rng.randrange(8), []).append(label)
        return label

    def finish(self) -> list[str]:
        for index in sorted(self.pending):
            self.body.extend(f"{label}:" for label in self.pending[index])
        self.pending.clear()
        return self.body

    # ---- instruction kinds --------------------------------------------------------
    def alu(self) -> None:
        rng = self.rng
        rvc = rng.random() < 0.5
        kind = rng.random()
        if kind < 0.45:
            op = rng.choice(ALU_R)
            # c.add takes any registers, c.sub/xor/or/and/addw/subw x8-x15
            wide = op == "add"
            rd = self.xd(rvc=rvc and not wide)
            rs1 = rd if rvc else self.xs()
            self.emit(f"{op} {rd}, {rs1}, {self.xs(rvc=rvc and not wide)}")
        elif kind < 0.7:
            rd = self.xd(rvc=rvc)
            rs1 = rd if rvc else self.xs()
            imm = rng.randrange(-32, 32) if rvc or rng.random() < 0.3 else rng.randrange(-2048, 2048)
            self.emit(f"{rng.choice(ALU_I)} {rd}, {rs1}, {imm}")
        elif kind < 0.85:
            op, width = rng.choice(SHIFT_I)
            rd = self.xd(rvc=rvc)
            self.emit(f"{op} {rd}, {rd if rvc else self.xs()}, {rng.randrange(width)}")
        elif kind < 0.9:
            self.emit(f"li {self.xd(rvc=rvc)}, {rng.randrange(-32, 32)}")     # c.li
        elif kind < 0.95:
            self.emit(f"mv {self.xd()}, {self.xs()}")                          # c.mv
        else:
            op = rng.choice(["lui", "auipc"])
            self.emit(f"{op} {self.xd()}, {rng.randrange(1 << 20)}")

    def offset(self, size: int) -> int:
        rvc_range = self.rng.random() < 0.3              # small positive offsets compress
        low, high = (0, 31 * size) if rvc_range else (-T6, T6 - size)
        return self.rng.randrange(low, high + 1) // size * size

    def compressed_memory(self) -> None:
        """c.lw/c.ld/c.sw/c.sd/c.fld/c.fsd: a base in x8-x15 set just before."""
        rng = self.rng
        op, size = rng.choice([("lw", 4), ("ld", 8), ("sw", 4), ("sd", 8), ("fld", 8), ("fsd", 8)])
        base = self.x(rvc=True)
        address = f"addi {base}, x31, {rng.randrange(-T6, T6 - 32 * size + 1) // size * size}"
        reg = self.f(rvc=True) if op.startswith("f") else self.x(rvc=True)
        self.emit(address, f"{op} {reg}, {rng.randrange(32) * size}({base})")

    def memory(self) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.25:
            self.compressed_memory()
        elif kind < 0.5:
            op, size = rng.choice(LOADS)
            self.emit(f"{op} {self.xd()}, {self.offset(size)}(x31)")
        elif kind < 0.75:
            op, size = rng.choice(STORES)
            self.emit(f"{op} {self.xs()}, {self.offset(size)}(x31)")
        elif kind < 0.85:
            size = rng.choice([4, 8])
            op = "flw" if size == 4 else "fld"
            self.emit(f"{op} {self.f()}, {self.offset(size)}(x31)")
        else:
            size = rng.choice([4, 8])
            op = "fsw" if size == 4 else "fsd"
            self.emit(f"{op} {self.f()}, {self.offset(size)}(x31)")

    def atomic(self) -> None:
        """An AMO, or LR with its SC right after to the same address (an SC
        elsewhere may land in the reservation set or not: its size is the
        implementation's choice), with the address register set just before."""
        rng = self.rng
        size = rng.choice([4, 8])
        suffix = ".w" if size == 4 else ".d"
        order = rng.choice(["", "", ".aq", ".rl", ".aqrl"])
        ra = rng.choice(XREGS[1:])
        address = f"addi {ra}, x31, {rng.randrange(-T6, T6 - size + 1) // size * size}"
        if rng.random() < 0.75:
            self.emit(address, f"{rng.choice(AMO_OPS)}{suffix}{order} {self.xd()}, {self.xs()}, ({ra})")
            return
        rd = rng.choice([r for r in XREGS if r != ra])
        self.emit(address, f"lr{suffix}{order} {rd}, ({ra})",
                  f"sc{suffix}{order} {self.xd()}, {self.xs()}, ({ra})")

    def branch(self) -> None:
        rng = self.rng
        kind = rng.random()
        label = self.forward_label()
        if kind < 0.7:
            if rng.random() < 0.3:
                self.emit(f"{rng.choice(['beqz', 'bnez'])} {self.xs(rvc=True)}, {label}")  # c.beqz/c.bnez
            else:
                self.emit(f"{rng.choice(BRANCHES)} {self.xs()}, {self.xs()}, {label}")
        elif kind < 0.85:
            self.emit(f"jal {rng.choice(['x0', 'x1', self.xd()])}, {label}")          # c.j / c.jal-less
        else:
            ra = rng.choice(XREGS[1:])
            self.emit(f"la {ra}, {label}", f"jalr {rng.choice(['x0', 'x1', self.xd()])}, 0({ra})")  # c.jr/c.jalr

    def fp(self) -> None:
        rng = self.rng
        fmt = rng.choice(["s", "d"])
        rm = "" if rng.random() < 0.4 else ", " + rng.choice(RMS)
        kind = rng.random()
        if kind < 0.25:
            self.emit(f"{rng.choice(FP_BIN_RM)}.{fmt} {self.f()}, {self.f()}, {self.f()}{rm}")
        elif kind < 0.35:
            self.emit(f"{rng.choice(FP_BIN)}.{fmt} {self.f()}, {self.f()}, {self.f()}")
        elif kind < 0.45:
            self.emit(f"{rng.choice(FP_FMA)}.{fmt} {self.f()}, {self.f()}, {self.f()}, {self.f()}{rm}")
        elif kind < 0.5:
            self.emit(f"fsqrt.{fmt} {self.f()}, {self.f()}{rm}")
        elif kind < 0.62:
            to = rng.choice(["w", "wu", "l", "lu"])
            self.emit(f"fcvt.{to}.{fmt} {self.xd()}, {self.f()}{rm}")
        elif kind < 0.72:
            src = rng.choice(["w", "wu", "l", "lu"])
            exact = fmt == "d" and src in ("w", "wu")          # the assembler takes no rm here
            self.emit(f"fcvt.{fmt}.{src} {self.f()}, {self.xs()}{'' if exact else rm}")
        elif kind < 0.77:
            if fmt == "s":
                self.emit(f"fcvt.s.d {self.f()}, {self.f()}{rm}")
            else:
                self.emit(f"fcvt.d.s {self.f()}, {self.f()}")
        elif kind < 0.85:
            w = "w" if fmt == "s" else "d"
            if rng.random() < 0.5:
                self.emit(f"fmv.x.{w} {self.xd()}, {self.f()}")
            else:
                self.emit(f"fmv.{w}.x {self.f()}, {self.xs()}")
        elif kind < 0.95:
            self.emit(f"{rng.choice(FP_CMP)}.{fmt} {self.xd()}, {self.f()}, {self.f()}")
        else:
            self.emit(f"fclass.{fmt} {self.xd()}, {self.f()}")

    def csr(self) -> None:
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:
            self.emit(f"csrr {self.xd()}, {rng.choice(CSR_READ)}")
        elif kind < 0.6:
            self.emit(f"{rng.choice(['csrrw', 'csrrs', 'csrrc'])} {self.xd()}, "
                      f"{rng.choice(['fflags', 'fcsr', 'mscratch'])}, {self.xs()}")
        elif kind < 0.9:
            csr = rng.choice(CSR_WRITE)
            if csr == "frm":                   # mostly a valid mode; 5..7 make dyn ops illegal
                value = rng.randrange(5) if rng.random() < 0.9 else rng.randrange(5, 8)
            else:
                value = rng.randrange(32)
            self.emit(f"{rng.choice(['csrrwi', 'csrrsi', 'csrrci'])} {self.xd()}, {csr}, {value}")
        else:                                   # frm from a register, masked to its 3 bits
            self.emit(f"csrrw {self.xd()}, frm, {self.xs()}")

    def system(self) -> None:
        self.emit(self.rng.choice(["ecall", "ebreak", "c.ebreak", "fence", "fence rw, rw", "nop"]))

    # (cumulative probability, kind): about 30% integer ALU, 18% loads and
    # stores, 7% atomics, 10% branches and jumps, 27% FP, 6.5% CSRs, the rest
    # ecall/ebreak/fence/nop
    MIX = ((0.3, "alu"), (0.48, "memory"), (0.55, "atomic"), (0.65, "branch"), (0.92, "fp"),
           (0.985, "csr"), (1.0, "system"))

    def random_instruction(self) -> None:
        r = self.rng.random()
        kind = next(kind for bound, kind in self.MIX if r < bound or bound == 1.0)
        getattr(self, kind)()


@dataclass
class Stream:
    name: str
    seed: str
    xinit: list[int]            # x1..x30
    finit: list[int]            # f0..f31
    fcsr: int
    scratch: bytes
    body: list[str]


def make_stream(seed: str, length: int) -> Stream:
    rng = random.Random(seed)
    name = "s" + hashlib.sha256(seed.encode()).hexdigest()[:10]
    xinit = [int_value(rng) for _ in range(30)]
    finit = [fp_register_value(rng) for _ in range(32)]
    fcsr = rng.randrange(5) << 5 | rng.randrange(32)
    scratch = bytes(rng.getrandbits(8) for _ in range(WINDOW))
    builder = StreamBuilder(rng, name)
    for _ in range(length):
        builder.random_instruction()
    return Stream(name, seed, xinit, finit, fcsr, scratch, builder.finish())


# ---- the image ---------------------------------------------------------------------------

IMAGE_HEAD = r"""
        .option norelax
        .text
        .globl _start
_start:
        la t0, trap_handler
        csrw mtvec, t0
        li t0, 1 << 13                  // mstatus.FS = Initial
        csrs mstatus, t0
        j streams

        .align 2
trap_handler:                           // count the trap, record it, step over it
        csrw mscratch, t0
        sd t1, %(t1save)d(x31)
        ld t0, %(traps)d(x31)
        addi t0, t0, 1
        sd t0, %(traps)d(x31)
        csrr t0, mcause
        sd t0, %(traps)d+8(x31)
        csrr t0, mepc
        sd t0, %(traps)d+16(x31)
        csrr t1, mtval
        sd t1, %(traps)d+24(x31)
        lhu t1, 0(t0)
        andi t1, t1, 3
        addi t0, t0, 2
        addi t1, t1, -3
        bnez t1, 1f
        addi t0, t0, 2
1:      csrw mepc, t0
        ld t1, %(t1save)d(x31)
        csrr t0, mscratch
        mret

        .macro PUTC reg                 // wait until the UART (t0) can take a byte, send it
2:      lbu t4, 5(t0)
        andi t4, t4, 0x20
        beqz t4, 2b
        sb \reg, 0(t0)
        .endm

print_hex:                              // a0 = address, a1 = bytes; uses t0-t4
        li t0, 0x10000000
        la t3, hexdigits
1:      beqz a1, 3f
        lbu t1, 0(a0)
        srli t2, t1, 4
        add t2, t2, t3
        lbu t2, 0(t2)
        PUTC t2
        andi t2, t1, 15
        add t2, t2, t3
        lbu t2, 0(t2)
        PUTC t2
        addi a0, a0, 1
        addi a1, a1, -1
        j 1b
3:      li t2, 10
        PUTC t2
        ret

streams:
""" % dict(traps=DUMP_TRAPS - T6, t1save=DUMP_TRAPS + 32 - T6)

IMAGE_TAIL = r"""
        li t5, 0x100000                 // sifive_test: pass
        li t6, 0x5555
        sw t6, 0(t5)
1:      j 1b

        .section .rodata
hexdigits: .ascii "0123456789abcdef"
"""


def stream_asm(stream: Stream) -> str:
    n = stream.name
    out = [f"// stream {n} (seed {stream.seed})",
           f"        la x31, {n}_init",
           f"        ld x1, {8 * 30}(x31)",
           "        fscsr x1"]
    out += [f"        fld f{i}, {8 * (31 + i)}(x31)" for i in range(32)]
    out += [f"        ld x{i}, {8 * (i - 1)}(x31)" for i in range(1, 31)]
    out.append(f"        la x31, {n}_region + {T6}")
    out.append(f"{n}_body:")
    out += stream.body
    out.append(f"{n}_end:")
    out += [f"        sd x{i}, {DUMP_X + 8 * i - T6}(x31)" for i in range(1, 31)]
    out += [f"        fsd f{i}, {DUMP_F + 8 * i - T6}(x31)" for i in range(32)]
    out.append("        frcsr x1")
    out.append(f"        sd x1, {DUMP_FCSR - T6}(x31)")
    out.append("        auipc x1, 0")
    out.append(f"        sd x1, {DUMP_PC - T6}(x31)")
    return "\n".join(out) + "\n"


def stream_data(stream: Stream) -> str:
    n = stream.name
    init = stream.xinit + [stream.fcsr] + stream.finit
    words = ", ".join(f"{v:#x}" for v in init)
    scratch = ", ".join(str(b) for b in stream.scratch)
    return (f"        .align 3\n{n}_init: .dword {words}\n"
            f"        .align 3\n{n}_region: .byte {scratch}\n"
            f"        .skip {REGION - WINDOW}\n")


def image_source(streams: list[Stream]) -> str:
    parts = [IMAGE_HEAD]
    parts += [stream_asm(s) for s in streams]
    parts.append("// print every region\n")
    for s in streams:
        parts.append(f"        la a0, {s.name}_region\n        li a1, {REGION}\n        call print_hex\n")
    parts.append(IMAGE_TAIL)
    parts.append("        .data\n")
    parts += [stream_data(s) for s in streams]
    return "".join(parts)


class BuildError(Exception):
    pass


def build_image(streams: list[Stream], directory: Path) -> Path:
    source = directory / "streams.S"
    source.write_text(image_source(streams))
    elf = directory / "streams.elf"
    proc = subprocess.run([GCC, *BUILD_FLAGS, "-o", str(elf), str(source)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(proc.stderr[-4000:])
    return elf


# ---- running ------------------------------------------------------------------------------

def run_qemu(elf: Path, timeout: float = 120) -> bytes:
    cmd = [QEMU, "-M", "virt", "-bios", "none", "-m", "128M", "-kernel", str(elf),
           "-display", "none", "-serial", "stdio", "-monitor", "none"]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"qemu exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout


def run_chrono(elf: Path, max_insns: int = 200_000_000) -> bytes:
    from chrono.core.launch import GuestSpec, launch
    from chrono.core.machine import Stop

    machine = launch(GuestSpec(kernel=elf, ram_size=RAM_SIZE, rtc_epoch_ns=0)).machine
    out = bytearray()
    left = max_insns
    while left > 0:
        result = machine.run(left)
        left -= result.executed
        out += machine.console_read()
        if result.reason == Stop.POWEROFF:
            out += machine.console_read()
            return bytes(out)
        if result.reason not in (Stop.OUTPUT, Stop.BUDGET):
            raise RuntimeError(f"chrono stopped: {result.reason.name} code {result.code} at pc {machine.pc:#x}")
    raise RuntimeError(f"chrono did not power off within {max_insns} instructions (pc {machine.pc:#x})")


def parse_regions(output: bytes, count: int) -> list[bytes]:
    lines = output.decode(errors="replace").split()
    regions = [bytes.fromhex(line) for line in lines if len(line) == 2 * REGION]
    if len(regions) != count:
        raise RuntimeError(f"expected {count} region dumps, got {len(regions)}")
    return regions


# ---- comparing ----------------------------------------------------------------------------

@dataclass
class State:
    x: list[int]
    f: list[int]
    fcsr: int
    pc: int
    traps: tuple[int, int, int, int]
    scratch: bytes

    @classmethod
    def from_region(cls, region: bytes) -> State:
        q = lambda off: struct.unpack_from("<Q", region, off)[0]     # noqa: E731
        return cls(x=[0] + [q(DUMP_X + 8 * i) for i in range(1, 31)],
                   f=[q(DUMP_F + 8 * i) for i in range(32)],
                   fcsr=q(DUMP_FCSR), pc=q(DUMP_PC),
                   traps=tuple(q(DUMP_TRAPS + 8 * i) for i in range(4)),
                   scratch=region[:WINDOW])

    def differences(self, other: State) -> list[str]:
        """Lines 'name: qemu X chrono Y' (self = QEMU, other = chrono)."""
        out = []
        for i in range(1, 31):
            if self.x[i] != other.x[i]:
                out.append(f"x{i}: qemu {self.x[i]:#018x} chrono {other.x[i]:#018x}")
        for i in range(32):
            if self.f[i] != other.f[i]:
                out.append(f"f{i}: qemu {self.f[i]:#018x} chrono {other.f[i]:#018x}")
        if self.fcsr != other.fcsr:
            out.append(f"fcsr: qemu {self.fcsr:#x} chrono {other.fcsr:#x}")
        if self.pc != other.pc:
            out.append(f"pc: qemu {self.pc:#x} chrono {other.pc:#x}")
        for name, a, b in zip(("traps", "mcause", "mepc", "mtval"), self.traps, other.traps):
            if name == "mtval" and self.traps[1] == other.traps[1] in OPTIONAL_MTVAL and 0 in (a, b):
                continue
            if a != b:
                out.append(f"{name}: qemu {a:#x} chrono {b:#x}")
        if self.scratch != other.scratch:
            diffs = [i for i in range(WINDOW) if self.scratch[i] != other.scratch[i]]
            out.append(f"scratch digest: qemu {hashlib.sha256(self.scratch).hexdigest()[:16]} "
                       f"chrono {hashlib.sha256(other.scratch).hexdigest()[:16]}; "
                       f"{len(diffs)} bytes differ, first at t6{diffs[0] - T6:+d}")
        return out


@dataclass
class Difference:
    stream: Stream
    lines: list[str]

    def report(self) -> str:
        listing = "\n".join(self.stream.body)
        return (f"DIFF stream {self.stream.name} (seed {self.stream.seed!r}):\n  "
                + "\n  ".join(self.lines) + f"\n--- stream body ---\n{listing}\n---")


@dataclass
class Summary:
    images: int = 0
    streams: int = 0
    agreed: int = 0
    traps: int = 0
    differences: list[Difference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped_by_time: bool = False

    def line(self) -> str:
        return (f"core_vs_qemu: {self.images} images, {self.streams} streams, {self.agreed} agree, "
                f"{len(self.differences)} differ, {len(self.errors)} errors, "
                f"{self.traps} traps taken{' (time limit reached)' if self.stopped_by_time else ''}")


def check_tools() -> None:
    for tool, package in ((GCC, "gcc-riscv64-unknown-elf"), (QEMU, "qemu-system-misc")):
        if shutil.which(tool) is None:
            raise SystemExit(f"core_vs_qemu: {tool} not found (Debian: apt-get install {package})")


def run_image(streams: list[Stream], summary: Summary) -> None:
    with tempfile.TemporaryDirectory(prefix="core_vs_qemu-") as tmp:
        elf = build_image(streams, Path(tmp))
        reference = [State.from_region(r) for r in parse_regions(run_qemu(elf), len(streams))]
        ours = [State.from_region(r) for r in parse_regions(run_chrono(elf), len(streams))]
    summary.images += 1
    for stream, a, b in zip(streams, reference, ours):
        summary.streams += 1
        summary.traps += b.traps[0]
        lines = a.differences(b)
        if lines:
            summary.differences.append(Difference(stream, lines))
        else:
            summary.agreed += 1


def fuzz(seed: int, count: int, time_limit: float, *, per_image: int = 50, length: int = 150,
         progress=None) -> Summary:
    """Run `count` streams (stopping early at `time_limit` seconds); stream i of
    seed S is generated from the string "S:i", so any stream can be rebuilt."""
    check_tools()
    summary = Summary()
    start = time.monotonic()
    index = 0
    while index < count:
        if time.monotonic() - start > time_limit:
            summary.stopped_by_time = True
            break
        batch = [make_stream(f"{seed}:{i}", length) for i in range(index, min(count, index + per_image))]
        try:
            run_image(batch, summary)
        except (BuildError, RuntimeError, subprocess.TimeoutExpired) as e:
            summary.errors.append(f"streams {seed}:{index}..{index + len(batch) - 1}: {e}")
        index += len(batch)
        if progress:
            progress(summary)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=1000, help="streams to run (default 1000)")
    ap.add_argument("--time-limit", type=float, default=600, help="seconds (default 600)")
    ap.add_argument("--per-image", type=int, default=50, help="streams per ELF image (default 50)")
    ap.add_argument("--length", type=int, default=150, help="random instructions per stream (default 150)")
    ap.add_argument("--show", type=int, default=5, help="differences printed in full (default 5)")
    args = ap.parse_args()
    summary = fuzz(args.seed, args.count, args.time_limit, per_image=args.per_image, length=args.length,
                   progress=lambda s: print(f"  ... {s.streams} streams, {len(s.differences)} differ",
                                            file=sys.stderr, flush=True))
    for d in summary.differences[:args.show]:
        print(d.report())
    for d in summary.differences[args.show:]:
        print(f"DIFF stream {d.stream.name} (seed {d.stream.seed!r}): {'; '.join(d.lines)}")
    for e in summary.errors:
        print(f"ERROR {e}")
    print(summary.line())
    return 0 if summary.agreed == summary.streams and not summary.errors else 1


if __name__ == "__main__":
    sys.exit(main())
