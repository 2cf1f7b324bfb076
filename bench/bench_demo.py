#!/usr/bin/env python3
"""CPU speed: the demo guest's `bench N` on chrono (JIT and interpreter) and on
QEMU (TCG and `-icount shift=0`, QEMU's deterministic mode), in one run.

All run the same binary on the same board layout.  The bench is
deterministic, so all execute the same instructions; chrono counts them
exactly.  chrono's time is host time around the bench command.  QEMU TCG's is
the guest's own mtime difference (QEMU's mtime follows the host clock), which
leaves out QEMU's start-up.  Under -icount mtime follows the instruction
count instead, so there the time is the whole process's for `bench N` minus
that for `bench 1` (start-up and one unit taken off, and that unit's
instructions too).  Prints the instruction rates and the ratios.

    python bench/bench_demo.py [--units 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

from chrono.core.launch import GuestSpec, demo_guest_path, launch
from chrono.core.machine import Stop

ELAPSED = re.compile(rb"elapsed [0-9.]+ s \((\d+) mtime ticks\)")
CHECKSUM = re.compile(rb"checksum (0x[0-9a-f]+)")


def run_until_idle(machine) -> bytes:
    out = bytearray()
    while True:
        r = machine.run(200_000_000)
        out += machine.console_read()
        if r.reason in (Stop.IDLE, Stop.POWEROFF):
            return bytes(out)


def chrono_bench(units: int, jit: bool = True) -> tuple[float, int, str]:
    """(seconds, instructions, checksum) for `bench units` on chrono."""
    before = os.environ.get("CHRONO_JIT")
    os.environ["CHRONO_JIT"] = "1" if jit else "0"
    try:
        guest = launch(GuestSpec())
    finally:
        if before is None:
            del os.environ["CHRONO_JIT"]
        else:
            os.environ["CHRONO_JIT"] = before
    m = guest.machine
    run_until_idle(m)                      # boot to the prompt
    m.console_write(f"bench {units}\r".encode())
    start_steps, start = m.steps, time.perf_counter()
    out = run_until_idle(m)
    seconds = time.perf_counter() - start
    checksum = CHECKSUM.search(out)
    return seconds, m.steps - start_steps, checksum.group(1).decode() if checksum else "?"


def qemu_run(units: int, icount: bool) -> tuple[float, subprocess.CompletedProcess]:
    cmd = ["qemu-system-riscv64", "-M", "virt", "-bios", "none", "-m", "128M",
           "-kernel", str(demo_guest_path()), "-nographic", "-serial", "stdio", "-monitor", "none"]
    if icount:
        cmd += ["-icount", "shift=0"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=f"bench {units}\npoweroff\n".encode(),
                          capture_output=True, timeout=600)
    return time.perf_counter() - start, proc


def qemu_icount_bench(units: int, repeat: int) -> float:
    """Seconds for `bench units` minus `bench 1` under -icount shift=0 (whole process)."""
    one = min(qemu_run(1, True)[0] for _ in range(repeat))
    return min(qemu_run(units, True)[0] for _ in range(repeat)) - one


def qemu_bench(units: int) -> tuple[float, str]:
    """(seconds, checksum) for `bench units` on QEMU TCG, from the guest's mtime."""
    _, proc = qemu_run(units, False)
    ticks = ELAPSED.search(proc.stdout)
    checksum = CHECKSUM.search(proc.stdout)
    if not ticks:
        sys.exit(f"QEMU run did not print the bench result:\n{proc.stdout.decode(errors='replace')}")
    return int(ticks.group(1)) / 10_000_000, checksum.group(1).decode() if checksum else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=100, help="bench units (~10M instructions each)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    args = ap.parse_args()

    def best(jit):
        return min((chrono_bench(args.units, jit) for _ in range(args.repeat)), key=lambda r: r[0])

    seconds, insns, checksum = best(True)
    chrono_mips = insns / seconds / 1e6
    print(f"chrono JIT:         {insns} instructions in {seconds:.3f} s = {chrono_mips:7.1f} MIPS, "
          f"checksum {checksum}")
    i_seconds, _, i_checksum = best(False)
    interp_mips = insns / i_seconds / 1e6
    print(f"chrono interpreter: {insns} instructions in {i_seconds:.3f} s = {interp_mips:7.1f} MIPS, "
          f"checksum {i_checksum}")

    if shutil.which("qemu-system-riscv64") is None:
        print("QEMU: qemu-system-riscv64 NOT FOUND (apt-get install qemu-system-misc): "
              "no QEMU reference, no ratio", file=sys.stderr)
        print(f"ratio chrono JIT / interpreter: {chrono_mips / interp_mips:.2f}")
        return
    q_seconds, q_checksum = min((qemu_bench(args.units) for _ in range(args.repeat)), key=lambda r: r[0])
    qemu_mips = insns / q_seconds / 1e6
    print(f"QEMU TCG:           {insns} instructions in {q_seconds:.3f} s = {qemu_mips:7.1f} MIPS, "
          f"checksum {q_checksum}")
    one_unit = chrono_bench(1)[1]
    c_seconds = qemu_icount_bench(args.units, args.repeat)
    icount_mips = (insns - one_unit) / c_seconds / 1e6
    print(f"QEMU -icount shift=0: {insns - one_unit} instructions in {c_seconds:.3f} s = "
          f"{icount_mips:7.1f} MIPS (the process for `bench {args.units}` minus `bench 1`)")
    print(f"ratio chrono JIT / interpreter: {chrono_mips / interp_mips:.2f}")
    print(f"ratio chrono JIT / QEMU TCG: {chrono_mips / qemu_mips:.2f}")
    print(f"ratio chrono JIT / QEMU -icount shift=0: {chrono_mips / icount_mips:.2f}")
    if len({checksum, i_checksum, q_checksum}) > 1:
        sys.exit("checksums differ: chrono and QEMU computed different results")


if __name__ == "__main__":
    main()
