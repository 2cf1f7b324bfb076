#!/usr/bin/env python3
"""Context switches: the Debian guest (`chrono guest fetch debian`) booted, then
workloads that switch between processes all the time, on chrono and on QEMU TCG
in one run; with --baseline, also on another chrono source tree's core (e.g. a
checkout of main built with `python3 native/build_core.py`), for a before/after
of a core change on the same machine in the same run.

Workloads, typed at the shell (host wall time from typing to the end of output):
  pipe   dd if=/dev/zero bs=512 count=200000 | cat >/dev/null
  fork   a shell loop running /bin/true 1000 times (fork + exec + exit + wait)
Also reported: boot time to the shell marker, the instructions each workload
took on chrono, and the kernel's lines about ASIDs and the PMU (dmesg).

    python bench/bench_context_switch.py [--repeat 3] [--baseline DIR] [--no-qemu]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

WORKLOADS = {
    "pipe": "dd if=/dev/zero bs=512 count=200000 2>/dev/null | cat >/dev/null",
    "fork": "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done",
}
DMESG = "dmesg | grep -i -E 'asid|pmu|perf' | sed 's/^\\[[^]]*\\] //'"


def measure(guest, repeat: int, steps=None) -> dict:
    """Boot time, then each workload `repeat` times (best), on a booted guest driver."""
    from debian_guest import marker
    result = {"boot": None, "workloads": {}, "steps": {}}
    guest.expect(marker())
    result["boot"] = time.perf_counter() - guest.started
    n = 0
    for name, command in WORKLOADS.items():
        times, counts = [], []
        for _ in range(repeat):
            n += 1
            before = steps() if steps else 0
            t0 = time.perf_counter()
            guest.run_command(n, command)
            times.append(time.perf_counter() - t0)
            counts.append((steps() - before) if steps else 0)
        result["workloads"][name] = min(times)
        result["steps"][name] = min(counts)
    n += 1
    result["dmesg"] = guest.run_command(n, DMESG).strip().splitlines()
    return result


def chrono_side(repeat: int) -> dict:
    from debian_guest import ChronoDebian, guest_files
    g = ChronoDebian(guest_files())
    return measure(g, repeat, steps=lambda: g.machine.steps)


def qemu_side(repeat: int) -> dict:
    from debian_guest import QemuDebian, copy_disk, guest_files
    spec = guest_files()
    with tempfile.TemporaryDirectory(prefix="bench-cs-") as tmp:
        q = QemuDebian(spec, copy_disk(spec, Path(tmp)))
        try:
            q_expect = q.expect             # TCG is slow at some of these: wait longer
            q.expect = lambda needle, start=0, timeout=0: q_expect(needle, start, timeout=600)
            return measure(q, repeat)
        finally:
            q.close()


def other_core(tree: Path, repeat: int) -> dict:
    """This script's chrono side in a child process importing chrono from `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--repeat",
                          str(repeat)], env=env, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def show(label: str, r: dict) -> None:
    parts = [f"boot {r['boot']:.2f} s"]
    for name, seconds in r["workloads"].items():
        steps = r["steps"].get(name)
        parts.append(f"{name} {seconds:.2f} s" + (f" ({steps / 1e6:.0f} M instructions)" if steps else ""))
    print(f"{label:>9}: " + ", ".join(parts))
    for line in r["dmesg"]:
        print(f"{'':>11}| {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each workload; the best is reported")
    ap.add_argument("--baseline", type=Path, metavar="DIR", help="a chrono source tree with a built core")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(chrono_side(args.repeat)))
        return

    results = {}
    if args.baseline:
        results["baseline"] = other_core(args.baseline, args.repeat)
        show("baseline", results["baseline"])
    results["chrono"] = other_core(HERE.parent, args.repeat)
    show("chrono", results["chrono"])
    if args.no_qemu or shutil.which("qemu-system-riscv64") is None:
        print("QEMU: not measured (--no-qemu, or qemu-system-riscv64 missing)")
    else:
        results["qemu"] = qemu_side(args.repeat)
        show("QEMU", results["qemu"])
    for name in WORKLOADS:
        line = f"{name}: chrono/QEMU {results['chrono']['workloads'][name] / results['qemu']['workloads'][name]:.2f}" \
            if "qemu" in results else f"{name}:"
        if "baseline" in results:
            line += f", chrono/baseline {results['chrono']['workloads'][name] / results['baseline']['workloads'][name]:.2f}"
        print(line)


if __name__ == "__main__":
    main()
