"""`chrono query REC last-write ADDR`: who wrote an address last.

Checked against a brute-force answer: a forward replay of the whole recording
with a write watchpoint on the range, keeping every hit.  Also: device DMA is
named as such, --before limits the search, and the write index is stored
beside the recording so a later query does not rebuild it.
"""
from __future__ import annotations

import re

import pytest

from chrono.core.machine import Watch
from chrono.store import Store
from chrono.replay import writes
from chrono.replay.timeline import Timeline
from tracehelp import chrono, symbol

LINK_OFFSET = 0x210             # offsetof(struct cblock, next) in the demo guest


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    work = tmp_path_factory.mktemp("last-write")
    proc = chrono(work, "record", "--store", work / "store", "--name", "c",
                  "--keyframe-interval", 2_000_000, script="write a hello\nsync\nbench 1\ncrash\n")
    assert proc.returncode == 1, proc.stderr
    (work / "console.txt").write_text(proc.stdout)
    return work


def all_writes(t: Timeline, address: int, size: int) -> list[int]:
    """Brute force: every position whose instruction wrote the range."""
    t.seek(t.start)
    t.add_watchpoint(address, size, Watch.WRITE, physical=True)
    found = []
    while (halt := t.cont()).reason == "watch":
        found.append(halt.position - 1)
    t.remove_watchpoint(address, size, Watch.WRITE)
    return found


def test_last_write_finds_the_corrupting_store(crash):
    with Store(crash / "store") as store:
        t = Timeline(store, "c")
        t.seek(t.end)
        link = int.from_bytes(t.machine.read_phys(symbol("head"), 8), "little") + LINK_OFFSET
        assert int.from_bytes(t.machine.read_phys(link, 8), "little") == 0xdeadbeef00
        hit = writes.last_write(t, link, 8)
        brute = all_writes(t, link, 8)
        assert hit.position == brute[-1] and not hit.device and hit.priv == 3
        assert hit.instruction & 0x7F == 0x23 and (hit.instruction >> 12) & 7 == 3   # sd
        t.seek(hit.position)
        assert t.pc == hit.pc
        before = int.from_bytes(t.machine.read_phys(link, 8), "little")
        t.step()
        assert before != 0xdeadbeef00
        assert int.from_bytes(t.machine.read_phys(link, 8), "little") == 0xdeadbeef00
        # --before: the write before that one.
        earlier = writes.last_write(t, link, 8, before=hit.position)
        assert earlier.position == brute[-2]
        assert writes.last_write(t, link, 8, before=brute[0]) is None
        t.close()


def test_the_crash_prints_the_link_it_overwrites_with_its_old_and_new_values(crash):
    line = re.search(r"crash: overwriting the block cache's LRU link at (0x[0-9a-f]+): "
                     r"(0x[0-9a-f]+) -> (0x[0-9a-f]+), then walking the list",
                     (crash / "console.txt").read_text())
    assert line, "the crash line names the link's address, then its old and new values"
    link, old, new = (int(x, 16) for x in line.groups())
    with Store(crash / "store") as store:
        t = Timeline(store, "c")
        hit = writes.last_write(t, link, 8)          # the store that corrupted it
        t.seek(hit.position)
        assert int.from_bytes(t.machine.read_phys(link, 8), "little") == old
        t.step()
        assert int.from_bytes(t.machine.read_phys(link, 8), "little") == new == 0xdeadbeef00
        t.close()


def test_the_index_is_kept_beside_the_recording(crash, monkeypatch):
    cli = chrono(crash, "query", "c", "last-write", hex(symbol("head")), "--size", "8",
                 "--store", crash / "store")
    assert cli.returncode == 0, cli.stderr
    assert re.match(r"position \d+: the instruction at pc 0x[0-9a-f]+ \([0-9a-f]+, M-mode\) "
                    r"wrote 0x[0-9a-f]+", cli.stdout)

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the stored index was not used")
    monkeypatch.setattr(writes, "build_index", no_rebuild)
    with Store(crash / "store") as store:
        t = Timeline(store, "c")
        position = int(cli.stdout.split()[1].rstrip(":"))
        assert writes.last_write(t, symbol("head"), 8).position == position
        t.close()


def test_device_dma_is_named(tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    made = chrono(tmp_path, "run", "--disk", disk, "--commit", script="write a hello\nsync\npoweroff\n")
    assert made.returncode == 0, made.stderr
    rec = chrono(tmp_path, "record", "--disk", disk, "--store", tmp_path / "store", "--name", "d",
                 script="cat a\npoweroff\n")
    assert rec.returncode == 0, rec.stderr
    blocks = symbol("blocks")           # the block cache's buffers: filled by virtio reads
    out = chrono(tmp_path, "query", "d", "last-write", hex(blocks), "--size", "512",
                 "--store", tmp_path / "store")
    assert out.returncode == 0, out.stderr
    assert "device DMA, during the instruction at pc" in out.stdout


def test_an_address_nothing_wrote(crash):
    out = chrono(crash, "query", "c", "last-write", "0x87f00000", "--store", crash / "store")
    assert out.returncode == 0 and "nothing wrote" in out.stdout
    bad = chrono(crash, "query", "c", "last-write", "0x1000", "--store", crash / "store")
    assert bad.returncode == 2 and "not in guest RAM" in bad.stderr
