"""A short run of tools/fuzz/fuzz_elf_loader.py: damaged ELFs are refused with one
line or loaded entirely inside RAM, never a traceback.  The mutated ELFs are the
demo guest and one linked the usual way (its headers in a segment below RAM)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from chrono.core.launch import demo_guest_path
from test_loader import build_hello, needs_gcc

FUZZER = Path(__file__).resolve().parents[1] / "tools" / "fuzz" / "fuzz_elf_loader.py"


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_elf_loader", FUZZER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module             # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@needs_gcc
def test_damaged_elves_are_refused_or_loaded_inside_ram(tmp_path):
    fuzzer = load_fuzzer()
    elves = [demo_guest_path(), build_hello(tmp_path, "-Wl,-Ttext=0x80000000")]
    summary = fuzzer.run(seed=20261202, count=150, time_limit=60, elves=elves)
    assert summary.breaks == []
    assert summary.cases == 150 and summary.accepted and summary.refused
