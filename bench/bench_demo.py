#!/usr/bin/env python3
"""CPU speed: the demo guest's `bench N` on chrono and on QEMU TCG, in one run.

Both run the same binary on the same board layout.  The bench is
deterministic, so both execute the same instructions; chrono counts them
exactly.  chrono's time is host time around the bench command; QEMU's is the
guest's own mtime difference (QEMU's mtime follows the host clock), which
leaves out QEMU's start-up.  Prints both instruction rates and the ratio.

    python bench/bench_demo.py [--units 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
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


def chrono_bench(units: int) -> tuple[float, int, str]:
    """(seconds, instructions, checksum) for `bench units` on chrono."""
    guest = launch(GuestSpec())
    m = guest.machine
    run_until_idle(m)                      # boot to the prompt
    m.console_write(f"bench {units}\r".encode())
    start_steps, start = m.steps, time.perf_counter()
    out = run_until_idle(m)
    seconds = time.perf_counter() - start
    checksum = CHECKSUM.search(out)
    return seconds, m.steps - start_steps, checksum.group(1).decode() if checksum else "?"


def qemu_bench(units: int) -> tuple[float, str]:
    """(seconds, checksum) for `bench units` on QEMU TCG, from the guest's mtime."""
    cmd = ["qemu-system-riscv64", "-M", "virt", "-bios", "none", "-m", "128M",
           "-kernel", str(demo_guest_path()), "-nographic", "-serial", "stdio", "-monitor", "none"]
    proc = subprocess.run(cmd, input=f"bench {units}\npoweroff\n".encode(),
                          capture_output=True, timeout=600)
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

    best_chrono = min((chrono_bench(args.units) for _ in range(args.repeat)), key=lambda r: r[0])
    seconds, insns, checksum = best_chrono
    chrono_mips = insns / seconds / 1e6
    print(f"chrono: {insns} instructions in {seconds:.3f} s = {chrono_mips:.1f} MIPS, checksum {checksum}")

    if shutil.which("qemu-system-riscv64") is None:
        print("QEMU: qemu-system-riscv64 not found (apt-get install qemu-system-misc); no ratio")
        return
    q_seconds, q_checksum = min((qemu_bench(args.units) for _ in range(args.repeat)), key=lambda r: r[0])
    qemu_mips = insns / q_seconds / 1e6
    print(f"QEMU:   {insns} instructions in {q_seconds:.3f} s = {qemu_mips:.1f} MIPS, checksum {q_checksum}")
    print(f"ratio chrono/QEMU: {chrono_mips / qemu_mips:.2f}")
    if checksum != q_checksum:
        sys.exit("checksums differ: chrono and QEMU computed different results")


if __name__ == "__main__":
    main()
