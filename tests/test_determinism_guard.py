"""The determinism guard: the guest may learn about the host only through logged inputs.

Three checks, from the outside in:
- the compiled core links no clock, timer or randomness function at all (an
  allow-list of what it may import: memory functions and snprintf);
- its sources use no instruction that reads a host counter or random number;
- a recording replays bit-exactly while every host clock and random source
  Python offers returns something else than while it was recorded.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from chrono import _core as core_module
from chrono.store import Store
from chrono.replay.replay import Replayer
from tracehelp import chrono

NATIVE = Path(__file__).resolve().parents[1] / "native"

# What the core may import from the C library: memory, and formatting of error
# messages.  Anything else (time, clock_gettime, gettimeofday, rand, getrandom,
# getpid, open/read...) would be a way for host state to reach the guest.
ALLOWED_LIBC = {"calloc", "free", "malloc", "realloc", "memcpy", "memmove", "memset", "memcmp",
                "mmap", "munmap", "snprintf", "__cxa_finalize", "__stack_chk_fail",
                "__memcpy_chk", "__memmove_chk", "__memset_chk", "__snprintf_chk",
                # The JIT's code cache: an anonymous memory file mapped twice (W^X);
                # it holds only code chrono writes, nothing read from the host.
                "memfd_create", "ftruncate", "close"}
# Symbols the shared-object machinery and the cffi glue bring along.
TOOLCHAIN = re.compile(r"^(Py|_Py|_ITM_|__gmon_start__)")


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
def test_the_core_links_no_clock_or_randomness():
    library = core_module.__file__
    out = subprocess.run(["nm", "-D", "--undefined-only", library], capture_output=True,
                         text=True, check=True).stdout
    imported = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    assert "malloc" in imported                 # the listing is real
    unexpected = sorted(s for s in imported if s not in ALLOWED_LIBC and not TOOLCHAIN.match(s))
    assert not unexpected, f"the core imports {unexpected}: host state could reach the guest"


def test_the_core_sources_read_no_host_counter():
    forbidden = re.compile(r"\b(rdtscp?|rdrand|rdseed|rdpid|__rdtsc|__builtin_ia32_rd\w+|"
                           r"__builtin_readcyclecounter|clock_gettime|gettimeofday|getrandom|"
                           r"time\s*\(|rand\s*\(|random\s*\()")
    comments = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
    hits = []
    for path in sorted(NATIVE.glob("*.[ch]")):
        code = comments.sub(lambda c: "\n" * c[0].count("\n"), path.read_text())
        hits += [f"{path.name}:{n}: {line.strip()}"
                 for n, line in enumerate(code.splitlines(), 1) if forbidden.search(line)]
    assert not hits, "\n".join(hits)


class _WrongHost:
    """Every host clock and random source Python has, returning other values."""

    def __init__(self, monkeypatch):
        offset = 123_456.789
        real = {name: getattr(time, name) for name in ("time", "monotonic", "perf_counter")}
        real_ns = {name: getattr(time, name) for name in ("time_ns", "monotonic_ns",
                                                          "perf_counter_ns")}
        for name, fn in real.items():
            monkeypatch.setattr(time, name, lambda fn=fn: fn() * 3 + offset)
        for name, fn in real_ns.items():
            monkeypatch.setattr(time, name, lambda fn=fn: fn() * 3 + int(offset * 1e9))
        rng = random.Random(99)
        monkeypatch.setattr(os, "urandom", lambda n: bytes(rng.getrandbits(8) for _ in range(n)))
        random.seed(12345)


def test_a_replay_does_not_depend_on_host_clocks_or_randomness(tmp_path, monkeypatch):
    recorded = chrono(tmp_path, "record", "--store", tmp_path / "store", "--name", "t",
                      "--keyframe-interval", 2_000_000,
                      script="write a hello\nsync\nbench 2\nls\npoweroff\n")
    assert recorded.returncode == 0, recorded.stderr
    _WrongHost(monkeypatch)
    output = []
    with Store(tmp_path / "store") as store:
        replayer = Replayer(store, "t", output=output.append)
        try:
            report = replayer.replay()
        finally:
            replayer.close()
    assert report.output_matches
    assert report.keyframes >= 3 and report.digests >= 5
    assert b"".join(output).replace(b"\r\n", b"\n").decode() == recorded.stdout
