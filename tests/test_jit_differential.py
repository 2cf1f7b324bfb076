"""The JIT changes speed, never results: random RV64 programs (ALU ops, loads
and stores to RAM, MMIO and unmapped addresses, misaligned and page-crossing
accesses, branches, counted loops, compressed code, CSR reads, traps, D ops,
self-patching code, timer interrupts) reach the same architectural state, RAM
and console output under the JIT and under the interpreter, at random
positions reached by random run(n) chunks.  The fuzzer is
tools/fuzz/jit_differential.py; this runs a short, seeded part of it."""

import importlib.util
import sys
from pathlib import Path

import pytest

import rvasm
from chrono.core.machine import Machine

FUZZER = Path(__file__).resolve().parents[1] / "tools" / "fuzz" / "jit_differential.py"


def load_fuzzer():
    spec = importlib.util.spec_from_file_location("jit_differential", FUZZER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def require_jit():
    if not Machine(1 << 20, jit=True).jit_enabled:
        pytest.skip("no JIT on this host (x86-64 Linux only): nothing to compare")


@pytest.mark.parametrize("first_seed", range(0, 200, 50))
def test_random_programs_match_the_interpreter(first_seed):
    require_jit()
    fuzzer = load_fuzzer()
    translated = 0
    for seed in range(first_seed, first_seed + 50):
        problems, n = fuzzer.run_case(seed, steps=20000)
        assert not problems, "\n".join(problems)
        translated += n
    assert translated > 0, "the JIT translated nothing: the comparison proved nothing"


def test_interpreter_only_machine_translates_nothing():
    g = rvasm.boot(load_fuzzer().HARNESS, jit=False)
    g.run(10000)
    assert not g.machine.jit_enabled
    assert g.machine.jit_translated == 0


def test_code_memory_is_never_writable_and_executable(tmp_path):
    """W^X: the code cache is written through one mapping and run from another."""
    require_jit()
    g = rvasm.boot(load_fuzzer().HARNESS, jit=True, jit_threshold=1)
    g.run(20000)
    assert g.machine.jit_translated > 0
    views = [line.split()[1] for line in Path("/proc/self/maps").read_text().splitlines()
             if "chrono-jit" in line]
    assert any("x" in perms for perms in views), views          # the one it runs from
    assert any("w" in perms for perms in views), views          # the one it writes through
    assert not any("w" in perms and "x" in perms for perms in views), views


def test_the_counters_and_the_code_cache_say_what_was_translated():
    """jit_stats and jit_code (bench/bench_jit_translation.py reports them)."""
    require_jit()
    g = rvasm.boot(load_fuzzer().HARNESS, jit=True, jit_threshold=1)
    g.run(20000)
    s = g.machine.jit_stats()
    assert s["translated"] == g.machine.jit_translated > 0
    assert s["guest_ops"] >= s["translated"]            # every translation covers an instruction
    assert 0 < s["code_bytes"] <= s["cache_used"] <= s["cache_size"] and s["flushes"] == 0
    code = g.machine.jit_code()
    assert len(code) == s["cache_used"] and code.count(0xc3) > 0    # ret: real x86 code
    plain = rvasm.boot(load_fuzzer().HARNESS, jit=False)
    assert plain.machine.jit_stats()["translated"] == 0 and plain.machine.jit_code() == b""
