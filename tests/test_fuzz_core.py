"""A short run of the core fuzzer (tools/fuzz/core_vs_qemu.py): random RV64GC
instruction streams on chrono and on QEMU 7.2 must leave the same registers,
fcsr, pc, trap record and scratch RAM.  The long runs and their figures are in
bench/README.md ("Fuzzing and sanitizers").

QEMU and the cross compiler are required outside references (CI installs
them): the run fails, it does not skip, when they are missing.
"""
import struct

from fuzzers import load_fuzzer

fuzz = load_fuzzer("core_vs_qemu")


def test_random_streams_leave_the_same_state_on_chrono_and_qemu():
    summary = fuzz.fuzz(seed=11, count=40, time_limit=300, per_image=20)
    assert not summary.errors, summary.errors
    assert not summary.differences, "\n".join(d.report() for d in summary.differences[:3])
    assert summary.streams == summary.agreed == 40
    assert summary.traps > 0                    # ecall/ebreak/illegal rounding modes were taken


def test_streams_are_reproducible_from_their_seed():
    a, b = fuzz.make_stream("5:17", 100), fuzz.make_stream("5:17", 100)
    assert a == b
    assert fuzz.make_stream("5:18", 100).body != a.body


def region_with(x5=0, f3=0, fcsr=0, traps=(0, 0, 0, 0), scratch=b""):
    region = bytearray(fuzz.REGION)
    region[:len(scratch)] = scratch
    struct.pack_into("<Q", region, fuzz.DUMP_X + 8 * 5, x5)
    struct.pack_into("<Q", region, fuzz.DUMP_F + 8 * 3, f3)
    struct.pack_into("<Q", region, fuzz.DUMP_FCSR, fcsr)
    struct.pack_into("<4Q", region, fuzz.DUMP_TRAPS, *traps)
    return fuzz.State.from_region(bytes(region))


def test_each_differing_part_of_the_state_is_named():
    qemu = region_with(x5=1, f3=2, fcsr=0x10, scratch=b"\x01")
    ours = region_with(x5=9, f3=2 | 1 << 63, fcsr=0x11, scratch=b"\x02")
    lines = qemu.differences(ours)
    assert [line.split(":")[0] for line in lines] == ["x5", "f3", "fcsr", "scratch digest"]
    assert "qemu 0x0000000000000001 chrono 0x0000000000000009" in lines[0]
    assert qemu.differences(qemu) == []


def test_mtval_zero_or_information_agrees_only_where_the_spec_allows_both():
    pc = 0x8000_1234
    ebreak_qemu = region_with(traps=(1, fuzz.CAUSE_BREAKPOINT, pc, 0))
    ebreak_ours = region_with(traps=(1, fuzz.CAUSE_BREAKPOINT, pc, pc))
    assert ebreak_qemu.differences(ebreak_ours) == []
    ecall_qemu = region_with(traps=(1, 11, pc, 0))
    ecall_ours = region_with(traps=(1, 11, pc, pc))     # ecall's mtval must be zero
    assert [line.split(":")[0] for line in ecall_qemu.differences(ecall_ours)] == ["mtval"]
