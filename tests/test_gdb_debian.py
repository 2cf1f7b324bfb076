"""Rewinding a Debian kernel panic in gdb (`echo c > /proc/sysrq-trigger`).

The recording runs past the panic (the kernel spins in panic(); --max-insns
ends it).  gdb-multiarch connects to `chrono debug`, continues to the end,
and goes back: to the last trap into the kernel (the write() system call that
asked for the crash), to the user-mode ecall itself, and, with a watchpoint on
the byte "c" the system call was given, to the user-mode store that put it
there.  No symbols (chrono knows none for Debian): the trap vector comes from stvec, the buffer from a1.

Marked `network` (the guest comes from the shared test cache); about 1-2 minutes.
"""
from __future__ import annotations

import os
import re

import pytest

from test_gdb_replay import GDB, WHEN, gdb
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures
from tracehelp import chrono

pytestmark = [pytest.mark.network,
              pytest.mark.skipif(GDB is None, reason="needs gdb-multiarch")]

CRASH = "\n" * 4 + "echo c > /proc/sysrq-trigger\n"


@pytest.fixture(scope="module")
def panic(debian, xdg_cache, tmp_path_factory):
    work = tmp_path_factory.mktemp("debian-panic")
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(xdg_cache)     # for the chrono it starts, not for later tests
    try:
        proc = chrono(work, "record", "debian", "--store", work / "store", "--name", "g",
                      "--max-insns", 4_500_000_000, script=CRASH, timeout=900)
    finally:
        if before is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = before
    assert proc.returncode == 124, proc.stderr[-2000:]          # --max-insns ended it
    assert "Kernel panic - not syncing: sysrq triggered crash" in proc.stdout
    return work


# From the end back to the trap into the kernel, the user-mode ecall before it, and
# with a watchpoint on the "c" the system call was given, the store that put it there.
REWIND_THE_PANIC = ("continue", "break *$stvec", "reverse-continue", "print $scause",
                    "reverse-stepi", "monitor when", "x/i $pc", "info registers a0 a2 a7 priv",
                    "x/2c $a1", "set $buf = $a1", "delete", "watch *(char *)$buf",
                    "reverse-continue", "monitor when", "x/i $pc", "info registers priv")


def assert_rewound_to_the_system_call_and_the_store(out: str) -> None:
    """What gdb printed for REWIND_THE_PANIC (also tests/test_debian_full.py)."""
    assert "No more reverse-execution history" in out              # reached the end first
    assert re.search(r"\$1 = 8\b", out)                            # ecall from U-mode
    at_ecall, at_store = WHEN.findall(out)
    assert re.search(rf"=> {at_ecall[3]}:\s+ecall", out)
    assert re.search(r"^a7\s+0x40\s", out, re.M)                   # write()
    assert re.search(r"99 'c'\s+10 '\\n'", out)
    assert re.search(r"Hardware watchpoint 2: \*\(char \*\)\$buf", out)
    assert re.search(r"Old value = 99 'c'", out)
    assert re.search(rf"=> {at_store[3]}:\s+sb\s", out)
    assert int(at_store[0]) < int(at_ecall[0])
    assert out.count("prv:0 [User/Application]") == 2


def test_rewinding_the_panic_to_the_system_call_and_the_store_behind_it(panic):
    assert_rewound_to_the_system_call_and_the_store(gdb(panic, *REWIND_THE_PANIC))
