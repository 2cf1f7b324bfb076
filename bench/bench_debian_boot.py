#!/usr/bin/env python3
"""Linux boot: the Debian guest from power-on to its shell marker, on chrono and on
QEMU TCG, in one run.

Both get the same OpenSBI fw_jump.bin, kernel Image, initramfs, command line,
RAM (256 MiB) and disk contents (`chrono guest fetch debian`).  chrono runs
in-process, unpaced (idle time jumps to the next timer deadline), on a
copy-on-write view of the guest's disk; QEMU (`-M virt`) on a copy of it.
Each time is host wall time from the start (chrono: launch(), which loads the
images; QEMU: the process start) until `chrono-debian: shell ready` is on the
console.  Prints both, chrono's instruction count and the ratio.

    python bench/bench_debian_boot.py [--repeat 3] [--cache DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from debian_guest import ChronoDebian, QemuDebian, copy_disk, guest_files, marker  # noqa: E402


def chrono_boot(spec, ready: str) -> tuple[float, int, float]:
    """(seconds, instructions, guest seconds) from launch to the marker."""
    g = ChronoDebian(spec)
    g.expect(ready)
    seconds = time.perf_counter() - g.started
    return seconds, g.machine.steps, g.machine.vclock / 1e9


def qemu_boot(spec, ready: str, folder: Path) -> float:
    disk = copy_disk(spec, folder)
    q = QemuDebian(spec, disk)
    try:
        q.expect(ready, timeout=600)
        return time.perf_counter() - q.started
    finally:
        q.close()
        disk.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="boots of each; the best is reported")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    args = ap.parse_args()

    spec = guest_files(args.cache)
    ready = marker(args.cache)
    print(f"Debian guest: {spec.kernel.parent}, {spec.ram_size >> 20} MiB RAM, "
          f"append {spec.append!r}")

    runs = []
    for i in range(args.repeat):
        runs.append(chrono_boot(spec, ready))
        print(f"  chrono boot {i + 1}: {runs[-1][0]:.2f} s, {runs[-1][1]} instructions, "
              f"{runs[-1][2]:.2f} s of guest time", flush=True)
    seconds, steps, guest_seconds = min(runs)
    if len({r[1] for r in runs}) > 1:
        print(f"  note: instruction counts differ between boots: {sorted({r[1] for r in runs})}")
    print(f"chrono: {seconds:.2f} s to {ready!r}, {steps} instructions "
          f"({steps / seconds / 1e6:.0f} MIPS), {guest_seconds:.2f} s of guest time")

    if shutil.which("qemu-system-riscv64") is None:
        print("QEMU: qemu-system-riscv64 not found (apt-get install qemu-system-misc); no ratio")
        return
    with tempfile.TemporaryDirectory(prefix="bench-debian-") as tmp:
        q_runs = []
        for i in range(args.repeat):
            q_runs.append(qemu_boot(spec, ready, Path(tmp)))
            print(f"  QEMU boot {i + 1}: {q_runs[-1]:.2f} s", flush=True)
    q_seconds = min(q_runs)
    print(f"QEMU:   {q_seconds:.2f} s to {ready!r}")
    print(f"ratio chrono/QEMU boot time: {seconds / q_seconds:.2f} "
          f"(chrono is {'slower' if seconds > q_seconds else 'faster'})")


if __name__ == "__main__":
    main()
