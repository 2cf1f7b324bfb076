"""Build and boot tiny RISC-V guest programs for the core tests.

``build(source)`` wraps a snippet of RISC-V assembly in a common prologue,
assembles and links it with Debian's ``riscv64-unknown-elf-gcc`` into an ELF
linked at 0x80000000, and caches the result by content hash (in
``$CHRONO_TEST_CACHE`` or ``~/.cache/chrono-tests/rvasm``), so only the first
run of the suite pays for the compiler.  ``boot(source)`` builds it and loads it
into a fresh ``Machine`` through the public loader.

The cross compiler is a hard requirement (CI installs it): when it is missing
the tests fail with a message saying what to install, they do not skip.

What the prologue gives every snippet (the snippet must define ``main``):

* ``_start``: mtvec = the default M-mode trap handler, sp = top of an 8 KiB
  stack, then ``j main``.  Everything else is still at reset values (M-mode,
  no PMP entries, satp bare, interrupts off).
* ``__rv_trap`` (default M-mode handler): counts the trap and records mcause,
  mepc, mtval, mstatus into ``trap_record``, then exits through HTIF with
  ``TRAP_EXIT``.  ``__rv_strap`` is the same for S-mode (``strap_record``,
  ``STRAP_EXIT``); install it with ``USE_DEFAULT_STVEC``.  Both clobber only
  t0-t6, so a0-a7 and s0-s11 can be read from Python afterwards.
* ``tohost`` / ``fromhost`` in a ``.tohost`` section that is a 4 KiB page of
  its own.
* Macros: ``EXIT code``, ``EXIT_REG reg`` (HTIF exit), ``POWEROFF value``
  (sifive_test finisher), ``PMP_ALLOW_ALL`` (pmp0 = NAPOT, whole address
  space, RWX), ``ENTER_S label`` / ``ENTER_U label`` (mret to that mode).

Snippets are preprocessed (``.S``): write comments as ``//`` or ``/* */``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from chrono.core.loader import BootImage, load_elf
from chrono.core.machine import Machine, RunResult, Stop

GCC = "riscv64-unknown-elf-gcc"
MiB = 1 << 20
RAM_BASE = 0x8000_0000
DEFAULT_RAM = 16 * MiB

# Exit codes of the default trap handlers.
TRAP_EXIT = 1000
STRAP_EXIT = 1001

# Board addresses (QEMU virt layout, native/devices.h).
SIFIVE_TEST = 0x0010_0000
CLINT = 0x0200_0000
CLINT_MTIMECMP = CLINT + 0x4000
CLINT_MTIME = CLINT + 0xBFF8
PLIC = 0x0C00_0000
UART = 0x1000_0000
VIRTIO_BLK = 0x1000_1000 + 7 * 0x1000

# --relax would turn `la` into gp-relative code, and nothing sets gp.
ARCH_FLAGS = ["-march=rv64imac_zicsr_zifencei", "-mabi=lp64", "-mcmodel=medany"]
LINK_FLAGS = ["-nostdlib", "-nostartfiles", "-static", "-Wl,-Ttext=0x80000000",
              "-Wl,--no-relax", "-Wl,--build-id=none", "-Wl,-n"]
C_FLAGS = ["-O2", "-ffreestanding", "-fno-builtin", "-fno-tree-loop-distribute-patterns",
           "-fno-stack-protector", "-Wall", "-Werror"]

PROLOGUE = r"""
        .equ TRAP_EXIT, %(trap_exit)d
        .equ STRAP_EXIT, %(strap_exit)d
        .equ SIFIVE_TEST, %(sifive_test)#x
        .equ CLINT_MTIMECMP, %(mtimecmp)#x
        .equ CLINT_MTIME, %(mtime)#x
        .equ UART, %(uart)#x
        .equ PLIC, %(plic)#x

        .macro EXIT code
        li t6, ((\code) << 1) | 1
        la t5, tohost
        sd t6, 0(t5)
1:      j 1b
        .endm

        .macro EXIT_REG reg
        slli t6, \reg, 1
        ori t6, t6, 1
        la t5, tohost
        sd t6, 0(t5)
1:      j 1b
        .endm

        .macro POWEROFF value
        li t5, SIFIVE_TEST
        li t6, \value
        sw t6, 0(t5)
1:      j 1b
        .endm

        .macro PMP_ALLOW_ALL
        li t0, -1
        csrw pmpaddr0, t0
        li t0, 0x1f                     // A = NAPOT, X W R
        csrw pmpcfg0, t0
        .endm

        .macro ENTER_S label
        li t0, 3 << 11
        csrc mstatus, t0
        li t0, 1 << 11                  // MPP = S
        csrs mstatus, t0
        la t0, \label
        csrw mepc, t0
        mret
        .endm

        .macro ENTER_U label
        li t0, 3 << 11                  // MPP = U
        csrc mstatus, t0
        la t0, \label
        csrw mepc, t0
        mret
        .endm

        .macro USE_DEFAULT_STVEC
        la t0, __rv_strap
        csrw stvec, t0
        .endm

        .text
        .globl _start
_start:
        la t0, __rv_trap
        csrw mtvec, t0
        la sp, __rv_stack_top
        j main

        .align 2
__rv_trap:
        la t0, trap_record
        ld t1, 0(t0)
        addi t1, t1, 1
        sd t1, 0(t0)
        csrr t1, mcause
        sd t1, 8(t0)
        csrr t1, mepc
        sd t1, 16(t0)
        csrr t1, mtval
        sd t1, 24(t0)
        csrr t1, mstatus
        sd t1, 32(t0)
        EXIT TRAP_EXIT

        .align 2
__rv_strap:
        la t0, strap_record
        ld t1, 0(t0)
        addi t1, t1, 1
        sd t1, 0(t0)
        csrr t1, scause
        sd t1, 8(t0)
        csrr t1, sepc
        sd t1, 16(t0)
        csrr t1, stval
        sd t1, 24(t0)
        csrr t1, sstatus
        sd t1, 32(t0)
        EXIT STRAP_EXIT

        .data
        .align 3
        .globl trap_record, strap_record
trap_record:    .dword 0, 0, 0, 0, 0    // count, cause, epc, tval, status
strap_record:   .dword 0, 0, 0, 0, 0

        .section .tohost, "aw", @progbits
        .align 12
        .globl tohost, fromhost
tohost:         .dword 0
fromhost:       .dword 0
        .skip 4096 - 16

        .bss
        .align 12
__rv_stack:     .skip 8192
__rv_stack_top:

        .text
        .align 2
// ---- snippet ----
""" % dict(trap_exit=TRAP_EXIT, strap_exit=STRAP_EXIT, sifive_test=SIFIVE_TEST,
           mtimecmp=CLINT_MTIMECMP, mtime=CLINT_MTIME, uart=UART, plic=PLIC)

_memo: dict[str, Path] = {}


def toolchain() -> str:
    """Path of the cross compiler; fails the test (not skip) when it is missing."""
    path = shutil.which(GCC)
    if path is None:
        pytest.fail(f"{GCC} not found: the core tests assemble guest programs with it; "
                    f"install Debian's gcc-riscv64-unknown-elf (apt-get install gcc-riscv64-unknown-elf)",
                    pytrace=False)
    return path


@functools.cache
def _cache_dir() -> Path:
    wanted = os.environ.get("CHRONO_TEST_CACHE")
    base = Path(wanted) if wanted else Path.home() / ".cache" / "chrono-tests"
    for candidate in (base / "rvasm", Path(tempfile.gettempdir()) / f"chrono-rvasm-{os.getuid()}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise RuntimeError("no writable directory for the guest build cache")


@functools.cache
def _compiler_id(gcc: str) -> str:
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0] if out else gcc


def guest_c(name: str) -> str:
    """A C driver from tests/guests with virtio_mmio.h put in front of it: a c_source
    is one file (and its text is the build cache's key, header included)."""
    folder = Path(__file__).parent / "guests"
    header = (folder / "virtio_mmio.h").read_text()
    return header + (folder / name).read_text().replace('#include "virtio_mmio.h"\n', "")


def build(source: str, *, c_source: str | None = None, march: str | None = None) -> Path:
    """Assemble the prologue + ``source`` (and optionally a C file) into an ELF; cached.

    ``march`` replaces the default ``-march`` (e.g. ``"rv64imafdc_zicsr_zifencei"``
    for FP code; the ABI stays lp64)."""
    asm = PROLOGUE + source + "\n"
    gcc = toolchain()
    arch_flags = ARCH_FLAGS if march is None else [f"-march={march}", *ARCH_FLAGS[1:]]
    key_material = "\0".join([_compiler_id(gcc), " ".join(arch_flags + LINK_FLAGS + C_FLAGS),
                              asm, c_source or ""])
    key = hashlib.sha256(key_material.encode()).hexdigest()[:24]
    if key in _memo and _memo[key].exists():
        return _memo[key]
    cache = _cache_dir()
    elf = cache / f"{key}.elf"
    if not elf.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            tmp_path = Path(tmp)
            (tmp_path / "guest.S").write_text(asm)
            inputs = [str(tmp_path / "guest.S")]
            if c_source is not None:
                (tmp_path / "guest_c.c").write_text(c_source)
                inputs.append(str(tmp_path / "guest_c.c"))
            out = tmp_path / "guest.elf"
            cmd = [gcc, *arch_flags, *C_FLAGS, *LINK_FLAGS, "-o", str(out), *inputs]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                numbered = "\n".join(f"{i + 1:4d} {line}" for i, line in enumerate(asm.splitlines()))
                pytest.fail(f"guest program does not build:\n{proc.stderr}\n--- guest.S ---\n{numbered}",
                            pytrace=False)
            os.replace(out, elf)        # atomic: concurrent runs never see half a file
    _memo[key] = elf
    return elf


@dataclass(frozen=True)
class TrapRecord:
    count: int
    cause: int
    epc: int
    tval: int
    status: int


class Guest:
    """A Machine with a built program loaded, plus symbol-based memory access."""

    def __init__(self, elf: Path, ram_size: int = DEFAULT_RAM, jit: bool | None = None,
                 jit_threshold: int = 0, virtio: str = "mmio"):
        self.elf = elf
        self.image: BootImage = load_elf(elf)
        self.machine = Machine(ram_size, tohost=self.image.tohost, fromhost=self.image.fromhost,
                               jit=jit, jit_threshold=jit_threshold, virtio=virtio)
        for address, data in self.image.segments:
            self.machine.write_phys(address, data)
        self.machine.reset(self.image.entry)

    @property
    def m(self) -> Machine:
        return self.machine

    def sym(self, name: str) -> int:
        try:
            return self.image.symbols[name]
        except KeyError:
            raise KeyError(f"guest program has no symbol {name!r}") from None

    def _addr(self, where: str | int) -> int:
        return self.sym(where) if isinstance(where, str) else where

    def u64(self, where: str | int, index: int = 0) -> int:
        return struct.unpack("<Q", self.machine.read_phys(self._addr(where) + 8 * index, 8))[0]

    def set_u64(self, where: str | int, value: int, index: int = 0) -> None:
        self.machine.write_phys(self._addr(where) + 8 * index, struct.pack("<Q", value & (2**64 - 1)))

    def read(self, where: str | int, length: int) -> bytes:
        return self.machine.read_phys(self._addr(where), length)

    def page_of(self, where: str | int) -> int:
        """Index of the 4 KiB page in ram_dirty holding this address."""
        return (self._addr(where) - RAM_BASE) >> 12

    @property
    def trap(self) -> TrapRecord:
        return TrapRecord(*(self.u64("trap_record", i) for i in range(5)))

    @property
    def strap(self) -> TrapRecord:
        return TrapRecord(*(self.u64("strap_record", i) for i in range(5)))

    def run(self, max_steps: int = 1_000_000) -> RunResult:
        return self.machine.run(max_steps)

    def run_to_exit(self, max_steps: int = 1_000_000) -> int:
        """Run until the HTIF exit and return its code (fails on any other stop)."""
        r = self.machine.run(max_steps)
        assert r.reason == Stop.HTIF_EXIT, (
            f"guest did not exit through HTIF: {r}, pc={self.machine.pc:#x}, trap={self.trap}")
        return r.code


def boot(source: str, *, ram_size: int = DEFAULT_RAM, c_source: str | None = None,
         march: str | None = None, jit: bool | None = None, jit_threshold: int = 0,
         virtio: str = "mmio") -> Guest:
    """jit=None: the JIT as CHRONO_JIT says (on by default); True/False force it.
    jit_threshold: runs of a block before it is translated (0: the default).
    virtio: where the machine's virtio devices sit (mmio or pci)."""
    return Guest(build(source, c_source=c_source, march=march), ram_size, jit, jit_threshold, virtio)


# ---- Sv39 / Sv48 page tables, written from the host -------------------------

PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D = (1 << i for i in range(8))
SATP_SV39, SATP_SV48 = 8, 9


class PageTables:
    """Builds page tables directly in guest RAM (via write_phys).

    Table pages are taken from ``pool`` upwards.  ``map`` creates a leaf at
    ``level`` (0 = 4 KiB, 1 = 2 MiB megapage, 2 = 1 GiB gigapage) and any
    missing intermediate tables.  ``pte_address`` says where a leaf lives, so
    tests can read the A/D bits the hardware writes back.
    """

    def __init__(self, machine: Machine, pool: int, mode: int = SATP_SV39):
        assert mode in (SATP_SV39, SATP_SV48)
        self.machine = machine
        self.mode = mode
        self.levels = 3 if mode == SATP_SV39 else 4
        self.next_free = pool
        self.root = self._new_table()

    def _new_table(self) -> int:
        address = self.next_free
        self.next_free += 4096
        self.machine.write_phys(address, bytes(4096))
        return address

    def _read(self, address: int) -> int:
        return struct.unpack("<Q", self.machine.read_phys(address, 8))[0]

    def _write(self, address: int, pte: int) -> None:
        self.machine.write_phys(address, struct.pack("<Q", pte))

    @property
    def satp(self) -> int:
        return (self.mode << 60) | (self.root >> 12)

    def _vpn(self, va: int, level: int) -> int:
        return (va >> (12 + 9 * level)) & 511

    def pte_address(self, va: int, level: int = 0) -> int:
        table = self.root
        for lvl in range(self.levels - 1, level, -1):
            slot = table + 8 * self._vpn(va, lvl)
            pte = self._read(slot)
            if not pte & PTE_V:
                pte = ((self._new_table() >> 12) << 10) | PTE_V
                self._write(slot, pte)
            assert not pte & (PTE_R | PTE_W | PTE_X), f"{va:#x}: a leaf is in the way at level {lvl}"
            table = (pte >> 10) << 12
        return table + 8 * self._vpn(va, level)

    def map(self, va: int, pa: int, flags: int, level: int = 0) -> int:
        """Map va -> pa with PTE flags (V is added); returns the PTE's address."""
        address = self.pte_address(va, level)
        self._write(address, ((pa >> 12) << 10) | flags | PTE_V)
        return address

    def pte(self, va: int, level: int = 0) -> int:
        return self._read(self.pte_address(va, level))


# ---- a busy guest that never stops ------------------------------------------
#
# An endless loop that keeps every part of the run loop busy: a pseudo-random
# mix of aligned and misaligned loads and stores over three pages, an ecall
# every 32 iterations (handled and returned from), a CLINT timer interrupt
# every 3 ticks (300 steps), counter and time CSR reads, a UART byte every 128
# iterations.  The trap handler only uses a5-a7, which the loop leaves alone,
# so interrupts may land anywhere.  Used by the run-budget and state tests.
BUSY = r"""
main:
        la t0, busy_trap
        csrw mtvec, t0
        li t0, CLINT_MTIME
        ld t1, 0(t0)
        addi t1, t1, 3
        li t0, CLINT_MTIMECMP
        sd t1, 0(t0)
        li t0, 1 << 7
        csrs mie, t0
        csrsi mstatus, 8
        li s0, 0x12345678
        la s1, busy_buf
        li s2, 0                        // iterations
        li s3, 0                        // ecalls handled
        li s4, 0                        // timer interrupts taken
busy_loop:
        li t0, 6364136223846793005
        mul s0, s0, t0
        li t0, 1442695040888963407
        add s0, s0, t0
        srli t1, s0, 33
        li t2, 3 * 4096 - 8
        remu t1, t1, t2
        add t1, t1, s1
        ld t2, 0(t1)
        xor t2, t2, s0
        sd t2, 0(t1)
        lw t3, 0(s1)
        add t3, t3, s2
        sw t3, 0(s1)
        csrr s5, time
        csrr s6, instret
        csrr s7, cycle
        andi t3, s2, 31
        bnez t3, 1f
        ecall
1:      andi t3, s2, 127
        bnez t3, 2f
        li t4, UART
        andi t5, s2, 15
        addi t5, t5, 'a'
        sb t5, 0(t4)
2:      addi s2, s2, 1
        j busy_loop

        .align 2
busy_trap:
        csrr a5, mcause
        bltz a5, busy_irq
        csrr a5, mepc
        addi a5, a5, 4
        csrw mepc, a5
        addi s3, s3, 1
        mret
busy_irq:
        addi s4, s4, 1
        li a6, CLINT_MTIMECMP
        ld a7, 0(a6)
        addi a7, a7, 3
        sd a7, 0(a6)
        mret

        .bss
        .align 12
busy_buf: .skip 3 * 4096
"""
