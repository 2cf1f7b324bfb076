"""A short run of tools/fuzz/fuzz_elf_loader.py: damaged ELFs are refused with one
line or loaded entirely inside RAM, never a traceback.  The mutated ELFs are the
demo guest and one linked the usual way (its headers in a segment below RAM)."""
from __future__ import annotations

from chrono.core.launch import demo_guest_path
from fuzzers import load_fuzzer
from test_loader import build_hello, needs_gcc


@needs_gcc
def test_damaged_elves_are_refused_or_loaded_inside_ram(tmp_path):
    fuzzer = load_fuzzer("fuzz_elf_loader")
    elves = [demo_guest_path(), build_hello(tmp_path, "-Wl,-Ttext=0x80000000")]
    summary = fuzzer.run(seed=20261202, count=150, time_limit=60, elves=elves)
    assert summary.breaks == []
    assert summary.cases == 150 and summary.accepted and summary.refused
