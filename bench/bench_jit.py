#!/usr/bin/env python3
"""CPU speed of the JIT: the 1e9-instruction bare-metal loop on chrono (JIT and
interpreter) and on QEMU (TCG, and -icount shift=0, QEMU's deterministic mode),
in one run, best of --repeat.

The loop is mul/add/srli/andi/add/ld/xor/sd/addi/bnez over a 4 KiB table
(10 instructions per iteration), built with tests/rvasm.py, ending with a
sifive_test poweroff so QEMU exits by itself.  chrono's time is the run()
call; QEMU's is its whole process minus the same process running the loop
once (its start-up).  Both execute the same instructions; chrono counts them.

    python bench/bench_jit.py [--iterations 100000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import rvasm  # noqa: E402
from chrono.core.machine import Stop  # noqa: E402

LOOP = r"""
main:
    li t0, %(iterations)d
    li t1, 0x9E3779B97F4A7C15
    la t2, table
    li a0, 1
1:  mul a0, a0, t1
    add a0, a0, t0
    srli a1, a0, 29
    andi a1, a1, 0x3f8
    add a2, t2, a1
    ld a3, 0(a2)
    xor a3, a3, a0
    sd a3, 0(a2)
    addi t0, t0, -1
    bnez t0, 1b
    POWEROFF 0x5555
    .data
    .align 12
table: .space 4096
"""


def loop_elf(iterations: int) -> Path:
    return rvasm.build(LOOP % {"iterations": iterations})


def chrono_seconds(elf: Path, jit: bool) -> tuple[float, int]:
    g = rvasm.Guest(elf, jit=jit)
    start = time.perf_counter()
    r = g.machine.run(1 << 62)
    seconds = time.perf_counter() - start
    if r.reason != Stop.POWEROFF:
        sys.exit(f"chrono did not finish the loop: {r}")
    if jit and not g.machine.jit_enabled:
        sys.exit("the JIT is not available on this host")
    return seconds, g.machine.steps


def qemu_seconds(elf: Path, icount: bool) -> float:
    cmd = ["qemu-system-riscv64", "-M", "virt", "-bios", "none", "-m", "128M", "-kernel", str(elf),
           "-display", "none", "-serial", "none", "-monitor", "none"]
    if icount:
        cmd += ["-icount", "shift=0"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"QEMU failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=100_000_000, help="loop iterations (10 instructions each)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    args = ap.parse_args()
    elf = loop_elf(args.iterations)

    rates = {}
    for name, jit in (("chrono JIT", True), ("chrono interpreter", False)):
        seconds, insns = min(chrono_seconds(elf, jit) for _ in range(args.repeat))
        rates[name] = insns / seconds / 1e6
        print(f"{name:20s} {insns:,} instructions in {seconds:.3f} s = {rates[name]:7.0f} MIPS")

    if shutil.which("qemu-system-riscv64") is None:
        print("QEMU: qemu-system-riscv64 NOT FOUND (apt-get install qemu-system-misc): "
              "no QEMU figures, no ratios against it")
    else:
        startup_elf = loop_elf(1)
        for name, icount in (("QEMU TCG", False), ("QEMU -icount shift=0", True)):
            startup = min(qemu_seconds(startup_elf, icount) for _ in range(args.repeat))
            seconds = min(qemu_seconds(elf, icount) for _ in range(args.repeat)) - startup
            rates[name] = insns / seconds / 1e6
            print(f"{name:20s} {insns:,} instructions in {seconds:.3f} s = {rates[name]:7.0f} MIPS "
                  f"(start-up {startup:.3f} s taken off)")

    jit = rates["chrono JIT"]
    for name, rate in rates.items():
        if name != "chrono JIT":
            print(f"ratio chrono JIT / {name}: {jit / rate:.2f}")


if __name__ == "__main__":
    main()
