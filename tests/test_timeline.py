"""Time travel over a demo-guest recording (chrono.replay.timeline).

The reference for "the state at position P" is a plain forward replay from
the recording's start to P; every move of the timeline — seeks back and
forth, reverse steps, reverse-continue to a breakpoint — must land on exactly
that state (full digest: CPU/devices, RAM, disk).
"""
from __future__ import annotations

import re

import pytest

from chrono.core.digest import state_digest
from chrono.store import Store
from chrono.replay import timeline as timeline_module
from chrono.replay.timeline import Timeline
from tracehelp import chrono, record_demo, symbol

SESSION = "write a hello\nsync\nbench 2\ncat a\nls\npoweroff\n"


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    work = tmp_path_factory.mktemp("timeline")
    record_demo(work, "t", SESSION, 8_000_000)
    return work / "store"


@pytest.fixture
def timeline(recording, monkeypatch):
    # Small checkpoint spacings, so a short recording exercises them.
    monkeypatch.setattr(timeline_module, "COARSE", 1 << 21)
    monkeypatch.setattr(timeline_module, "FINE", 1 << 17)
    store = Store(recording)
    t = Timeline(store, "t")
    yield t
    t.close()
    store.close()


def reference(store, position: int) -> str:
    """The state at `position` by plain forward replay."""
    t = Timeline(store, "t")
    try:
        t._forward(position)
        assert t.position == position
        return state_digest(t.machine).combined
    finally:
        t.close()


def test_seeking_back_and_forth_lands_on_the_recorded_state(timeline, recording):
    end = timeline.end
    targets = [end // 2, end // 5, end - 3, 12_345, end // 2 + 1, end // 2]
    for target in targets:
        timeline.seek(target)
        assert timeline.position == target
    assert state_digest(timeline.machine).combined == reference(timeline.store, end // 2)
    assert any(c.temporary for c in timeline.checkpoints)


def test_reverse_steps_are_exact(timeline, recording):
    middle = timeline.end // 3
    timeline.seek(middle)
    for _ in range(5):
        halt = timeline.step_back()
        assert halt.reason == "step"
    assert timeline.position == middle - 5
    assert state_digest(timeline.machine).combined == reference(timeline.store, middle - 5)
    timeline.step(2)
    assert timeline.position == middle - 3
    assert state_digest(timeline.machine).combined == reference(timeline.store, middle - 3)


def test_the_ends_are_reported(timeline):
    timeline.seek(timeline.start + 1)
    assert timeline.step_back().reason == "begin"
    assert timeline.step_back().reason == "begin"
    timeline.seek(timeline.end)
    assert timeline.step().reason == "end"
    assert timeline.cont().reason == "end"


def test_continue_and_reverse_continue_stop_at_breakpoints(timeline):
    kputc = symbol("kputc")
    timeline.add_breakpoint(kputc)
    hits = []
    halt = timeline.cont()
    while halt.reason == "breakpoint":
        assert halt.pc == kputc
        hits.append(halt.position)
        halt = timeline.cont()
    assert halt.reason == "end" and len(hits) >= 10     # every kputc call
    # From the end, reverse-continue finds the same hits, last first.
    back = []
    for _ in range(3):
        halt = timeline.reverse_cont()
        assert halt.reason == "breakpoint" and halt.pc == kputc
        back.append(halt.position)
    assert back == hits[-1:-4:-1]
    # And from the middle, across a checkpoint interval boundary.
    timeline.seek(hits[len(hits) // 2] + 1)
    assert timeline.reverse_cont().position == hits[len(hits) // 2]
    timeline.remove_breakpoint(kputc)
    timeline.seek(hits[0] + 10)
    assert timeline.reverse_cont().reason == "begin"
    assert timeline.position == timeline.start


def test_query_hits_and_diff_through_the_command_line(recording, timeline):
    kputc = symbol("kputc")
    store = recording
    proc = chrono(store.parent, "query", "t", "hits", "--store", store, "--pc", hex(kputc))
    assert proc.returncode == 0, proc.stderr
    listed = [int(line) for line in proc.stdout.split()]
    timeline.add_breakpoint(kputc)
    expected = []
    while (halt := timeline.cont()).reason == "breakpoint":
        expected.append(halt.position)
    assert listed == expected and f"{len(expected)} hits" in proc.stderr
    window = chrono(store.parent, "query", "t", "hits", "--store", store, "--pc", hex(kputc),
                    "--from", expected[2], "--to", expected[5])
    assert [int(line) for line in window.stdout.split()] == expected[2:5]
    # Between the first and the last hit, the console's output buffer page changed.
    d = chrono(store.parent, "query", "--store", store, "t", "diff", expected[0], expected[-1])
    assert d.returncode == 0, d.stderr
    assert re.search(r"^RAM\t[\d,]+ of [\d,]+ pages", d.stdout, re.M) and "differs" in d.stdout
    same = chrono(store.parent, "query", "--store", store, "t", "diff", expected[1], expected[1])
    assert "0 of" in same.stdout or "same" in same.stdout


def test_query_output_names_the_instruction_that_printed_it(recording, timeline):
    proc = chrono(recording.parent, "query", "t", "output", "checksum", "--store", recording)
    assert proc.returncode == 0, proc.stderr
    found = re.findall(r"^position (\d+) \(from (\d+)\): (.*)$", proc.stdout, re.M)
    assert len(found) == 1 and "checksum 0x" in found[0][2]
    last, first = int(found[0][0]), int(found[0][1])
    assert first < last
    # At `last`, the guest has printed "checksu" and is about to print "m".
    seen = []
    timeline.replayer.output_steps = lambda data, where: seen.append(data)
    timeline.seek(timeline.start)
    timeline._forward(last)
    timeline.replayer._drain()
    before = b"".join(seen)
    assert before.endswith(b"checksu")
    timeline.step()
    timeline.replayer._drain()
    assert b"".join(seen).endswith(b"checksum")
