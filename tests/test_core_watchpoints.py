"""Data watchpoints: run() stops right after the instruction that reads or
writes a watched physical range, and machine.watch_hit() names it.

Writes, reads and both; aligned, misaligned across the range's edge, AMOs;
accesses next to the range (same page) do not count; removal; a watched run
computes exactly what an unwatched one does.
"""
import rvasm
from chrono.core.digest import state_digest
from chrono.core.machine import Stop, Watch

PROGRAM = """
main:
        la t0, target
        li t1, 0x1122334455667788
        sd t1, 8(t0)             # next to the watched word: no hit
store_here:
        sd t1, 0(t0)             # the watched word
        ld t2, 8(t0)             # no hit
load_here:
        ld t3, 0(t0)
        addi t4, t0, 5
misaligned_here:
        sw t1, 0(t4)             # bytes 5..8: touches the watched word's last bytes
        li t5, 1
amo_here:
        amoadd.d t6, t5, (t0)
        EXIT 0
        .data
        .align 4
target: .dword 0
        .dword 0
        .dword 0                 # never accessed
"""


def watched(kind, length=8, offset=0):
    g = rvasm.boot(PROGRAM)
    g.machine.add_watchpoint(g.sym("target") + offset, length, kind)
    return g


def hits(g) -> list[tuple[int, str, int]]:
    """(pc of the accessing instruction, access, steps after it) until exit."""
    m, out = g.machine, []
    while True:
        r = m.run(10_000)
        if r.reason != Stop.WATCHPOINT:
            assert r.reason == Stop.HTIF_EXIT
            return out
        hit = m.watch_hit()
        assert r.code == hit.address
        out.append((hit.pc, hit.access.name, m.steps))


def test_a_write_watchpoint_stops_after_each_store_and_amo_to_the_range():
    g = watched(Watch.WRITE)
    found = hits(g)
    assert [(pc, access) for pc, access, _ in found] == [
        (g.sym("store_here"), "WRITE"), (g.sym("misaligned_here"), "WRITE"),
        (g.sym("amo_here"), "WRITE")]
    # Stopped after the instruction: the next one is the pc, steps counted it.
    first = watched(Watch.WRITE)
    r = first.machine.run(10_000)
    assert r.reason == Stop.WATCHPOINT and first.machine.pc == first.sym("store_here") + 4
    assert first.machine.read_phys(first.sym("target"), 8) == (0x1122334455667788).to_bytes(8, "little")


def test_read_and_access_watchpoints():
    g = watched(Watch.READ)
    assert [(pc, access) for pc, access, _ in hits(g)] == [
        (g.sym("load_here"), "READ"), (g.sym("amo_here"), "READ")]
    g = watched(Watch.ACCESS)
    assert [pc for pc, _, _ in hits(g)] == [g.sym("store_here"), g.sym("load_here"),
                                            g.sym("misaligned_here"), g.sym("amo_here")]


def test_only_the_watched_bytes_count():
    g = watched(Watch.ACCESS, length=8, offset=16)     # same page, never accessed
    assert [pc for pc, _, _ in hits(g)] == []
    g = watched(Watch.WRITE, length=1, offset=8)
    found = [pc for pc, _, _ in hits(g)]
    assert found[0] < g.sym("store_here") and g.sym("misaligned_here") in found


def test_removed_watchpoints_stop_nothing_and_watching_changes_nothing():
    g = watched(Watch.ACCESS)
    assert g.machine.remove_watchpoint(g.sym("target"), 8, Watch.ACCESS)
    assert not g.machine.remove_watchpoint(g.sym("target"), 8, Watch.ACCESS)
    assert hits(g) == []
    plain = rvasm.boot(PROGRAM)
    assert hits(plain) == []
    w = watched(Watch.ACCESS)
    hits(w)
    assert state_digest(w.machine).combined == state_digest(g.machine).combined \
        == state_digest(plain.machine).combined
