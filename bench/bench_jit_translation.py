#!/usr/bin/env python3
"""What the JIT costs and holds during a Debian boot: translation time and the code cache.

The Debian guest (`chrono guest fetch debian`) boots to its shell marker in a
child process run under `perf record -e cpu-clock` (sampling the host's clock;
the core itself reads no clock, see tests/test_determinism_guard.py).  Printed:

- the JIT's counters at the marker (Machine.jit_stats): blocks translated, hot
  blocks left to the interpreter, guest instructions covered, host code
  written, the code cache's use and flushes;
- where the boot's host time went, by sample share: generated code (the
  memfd the code cache lives in), the translator (functions of native/jit/),
  the rest of the core (interpreter, MMU, devices), Python, the kernel;
  the translator's share times the boot's wall time is the translation time.

The reference is the same boot on the interpreter (CHRONO_JIT=0), timed in the
same run.  Without perf (Debian's linux-perf) the sample shares are not
measured and the script says so; the counters are printed anyway.

    python bench/bench_jit_translation.py [--cache DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
NATIVE = HERE.parent / "native"

CHILD = r"""
import json, sys, time
sys.path.insert(0, {bench!r})
from debian_guest import ChronoDebian, guest_files, marker
cache = {cache!r}
spec = guest_files(cache)
g = ChronoDebian(spec)
g.expect(marker(cache))
seconds = time.perf_counter() - g.started
print("RESULT " + json.dumps({{"seconds": seconds, "steps": g.machine.steps,
                              "jit": g.machine.jit_stats()}}))
"""


def translator_functions() -> set[str]:
    """Names of the functions defined in native/jit/*.c (the translator and its
    encoder; generated code runs from the memfd, not from these)."""
    names = set()
    for source in NATIVE.glob("jit/*.c"):
        names |= set(re.findall(r"^(?:static\s+)?(?:inline\s+)?[\w\s\*]+?\b(\w+)\(", source.read_text(),
                                re.MULTILINE))
    return names - {"if", "for", "while", "switch", "return", "sizeof"}


def boot(cache: Path | None, jit: bool, perf_data: Path | None) -> dict:
    env = dict(os.environ, CHRONO_JIT="1" if jit else "0")
    code = CHILD.format(bench=str(HERE), cache=str(cache) if cache else None)
    cmd = [sys.executable, "-c", code]
    if perf_data is not None:
        cmd = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", str(perf_data), "--"] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"the boot did not finish:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def sample_shares(perf_data: Path) -> Counter:
    """Sample share by where the time went."""
    report = subprocess.run(["perf", "report", "-i", str(perf_data), "--stdio", "--sort", "dso,sym",
                             "--percent-limit", "0"], capture_output=True, text=True).stdout
    translator = translator_functions()
    shares: Counter = Counter()
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*?)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        percent, dso, symbol = float(m.group(1)), m.group(2), m.group(4)
        if "chrono-jit" in dso:
            shares["generated code"] += percent
        elif dso.startswith("_core"):
            shares["translator" if symbol in translator else "rest of the core"] += percent
        elif "python" in dso or dso.endswith(".so") and "cpython" in dso:
            shares["Python and extensions"] += percent
        elif "kernel" in dso:
            shares["kernel"] += percent
        else:
            shares["other"] += percent
    return shares


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    args = ap.parse_args()
    perf = shutil.which("perf")
    with tempfile.TemporaryDirectory(prefix="bench-jit-translation-") as tmp:
        data = Path(tmp) / "perf.data" if perf else None
        if perf is None:
            print("perf not found (apt-get install linux-perf): time shares NOT measured",
                  file=sys.stderr)
        jit = boot(args.cache, True, data)
        interp = boot(args.cache, False, None)
        s = jit["jit"]
        print(f"Debian boot to the shell marker, {jit['steps']:,} instructions")
        print(f"  JIT:         {jit['seconds']:.2f} s; interpreter (CHRONO_JIT=0): "
              f"{interp['seconds']:.2f} s; ratio {jit['seconds'] / interp['seconds']:.2f}")
        print(f"  translated {s['translated']:,} blocks ({s['guest_ops']:,} guest instructions, "
              f"{s['guest_ops'] / max(s['translated'], 1):.1f} a block), left {s['declined']:,} hot "
              f"blocks to the interpreter; {s['code_bytes'] / 2**20:.2f} MiB of host code written "
              f"({s['code_bytes'] / max(s['guest_ops'], 1):.0f} bytes a guest instruction); cache "
              f"{s['cache_used'] / 2**20:.2f} of {s['cache_size'] / 2**20:.0f} MiB in use, "
              f"{s['flushes']} flushes")
        if data is None:
            return
        shares = sample_shares(data)
        total = sum(shares.values()) or 1
        print("  host time by sample share (perf cpu-clock):")
        for name, percent in shares.most_common():
            print(f"    {name:24} {percent / total * 100:5.1f}%")
        translating = shares["translator"] / total * jit["seconds"]
        print(f"  time translating: {translating * 1000:.0f} ms "
              f"({translating / max(s['translated'], 1) * 1e6:.1f} us a block)")


if __name__ == "__main__":
    main()
