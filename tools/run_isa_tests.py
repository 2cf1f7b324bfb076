#!/usr/bin/env python3
"""Run a directory of RISC-V ISA test ELFs (HTIF tohost convention, e.g. the
official riscv-tests, built outside this repository) on chrono.

    python tools/run_isa_tests.py DIR [GLOB ...] [--max-insns N]

Each ELF runs exactly as `chrono run --kernel TEST` would run it (same
loader, same board); a test passes when it exits through tohost with code 0.
Prints PASS/FAIL per test and a summary; the exit status is 0 only if all
passed.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from chrono.core.launch import GuestSpec, launch
from chrono.core.machine import Stop
from chrono.errors import ChronoError


def run_test(path: Path, max_insns: int) -> tuple[bool, str]:
    try:
        guest = launch(GuestSpec(kernel=path, ram_size=64 << 20, rtc_epoch_ns=0))
    except ChronoError as e:
        return False, e.message
    m = guest.machine
    result = m.run(max_insns)
    while result.reason == Stop.OUTPUT:         # -v tests print through tohost
        m.console_read()
        result = m.run(max_insns)
    if result.reason == Stop.HTIF_EXIT:
        return result.code == 0, "" if result.code == 0 else f"failed case {result.code}"
    return False, f"stopped: {result.reason.name.lower()} at pc {m.pc:#x}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", type=Path)
    ap.add_argument("globs", nargs="*", default=["rv64*"], help="test name patterns (default rv64*)")
    ap.add_argument("--max-insns", type=int, default=50_000_000)
    args = ap.parse_args()

    tests = sorted(p for p in args.directory.iterdir()
                   if p.is_file() and not p.suffix and any(fnmatch.fnmatch(p.name, g) for g in args.globs))
    if not tests:
        print(f"no tests matching {' '.join(args.globs)} in {args.directory}", file=sys.stderr)
        return 2
    failed = []
    for test in tests:
        ok, why = run_test(test, args.max_insns)
        print(f"{'PASS' if ok else 'FAIL'} {test.name}{'  ' + why if why else ''}")
        if not ok:
            failed.append(test.name)
    print(f"{len(tests) - len(failed)} passed, {len(failed)} failed")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
