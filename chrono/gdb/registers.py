"""The registers gdb sees: their numbering, the target description, and access.

Numbering (the order of the `g` packet): x0..x31 (0-31), pc (32); with F/D,
f0..f31 (33-64), fflags, frm, fcsr (65-67); then the CSRs below; then the
privilege level (gdb's `priv`, in the org.gnu.gdb.riscv.virtual feature).
"""
from __future__ import annotations

from dataclasses import dataclass

from chrono.core.machine import REG_F0, REG_PC, REG_PRIV

X_NAMES = ("zero ra sp gp tp t0 t1 t2 fp s1 a0 a1 a2 a3 a4 a5 a6 a7 "
           "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6").split()
F_NAMES = ("ft0 ft1 ft2 ft3 ft4 ft5 ft6 ft7 fs0 fs1 fa0 fa1 fa2 fa3 fa4 fa5 fa6 fa7 "
           "fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11 ft8 ft9 ft10 ft11").split()
CSRS = (("mstatus", 0x300), ("misa", 0x301), ("mie", 0x304), ("mtvec", 0x305),
        ("mscratch", 0x340), ("mepc", 0x341), ("mcause", 0x342), ("mtval", 0x343),
        ("mip", 0x344), ("sstatus", 0x100), ("sie", 0x104), ("stvec", 0x105),
        ("sscratch", 0x140), ("sepc", 0x141), ("scause", 0x142), ("stval", 0x143),
        ("sip", 0x144), ("satp", 0x180))
FP_CSRS = (("fflags", 0x001), ("frm", 0x002), ("fcsr", 0x003))


@dataclass(frozen=True)
class Register:
    name: str
    number: int             # gdb's regnum
    feature: str
    type: str
    source: tuple           # ("reg", machine index) or ("csr", number)


def register_map(has_fpu: bool) -> list[Register]:
    regs = [Register(n, i, "cpu", "code_ptr" if n == "ra" else
                     "data_ptr" if n in ("sp", "gp", "tp", "fp") else "int", ("reg", i))
            for i, n in enumerate(X_NAMES)]
    regs.append(Register("pc", 32, "cpu", "code_ptr", ("reg", REG_PC)))
    if has_fpu:
        regs += [Register(n, 33 + i, "fpu", "ieee_double", ("reg", REG_F0 + i))
                 for i, n in enumerate(F_NAMES)]
        regs += [Register(n, 65 + i, "fpu", "int", ("csr", c)) for i, (n, c) in enumerate(FP_CSRS)]
    base = len(regs)
    regs += [Register(n, base + i, "csr", "int", ("csr", c)) for i, (n, c) in enumerate(CSRS)]
    regs.append(Register("priv", len(regs), "virtual", "int", ("reg", REG_PRIV)))
    return regs


def target_xml(regs: list[Register]) -> str:
    # Imported here: xml.sax.saxutils pulls in urllib.request and http.client
    # (~25 ms), which only a connecting gdb should pay.
    from xml.sax.saxutils import escape

    out = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
           '<target version="1.0">', "  <architecture>riscv:rv64</architecture>"]
    for feature in ("cpu", "fpu", "csr", "virtual"):
        members = [r for r in regs if r.feature == feature]
        if not members:
            continue
        out.append(f'  <feature name="org.gnu.gdb.riscv.{feature}">')
        for r in members:
            out.append(f'    <reg name="{escape(r.name)}" bitsize="64" type="{r.type}" '
                       f'regnum="{r.number}"/>')
        out.append("  </feature>")
    out.append("</target>")
    return "\n".join(out) + "\n"


def read_register(machine, r: Register) -> int | None:
    kind, index = r.source
    if kind == "reg":
        return machine.reg(index)
    return machine.csr(index)


PRIVILEGES = (0, 1, 3)      # U, S, M


def writable(r: Register, value: int) -> bool:
    """Can `r` take `value`?  CSRs are read-only here (writing one can change
    the machine's mode), and the privilege level is U, S or M."""
    kind, index = r.source
    return kind == "reg" and (index != REG_PRIV or value in PRIVILEGES)


def write_register(machine, r: Register, value: int) -> None:
    kind, index = r.source
    if kind == "reg" and index != 0:    # x0 ignores writes
        machine.set_reg(index, value)
