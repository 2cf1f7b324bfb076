"""Copy-on-write capture: a savevm stops the guest only to take its state and
the lists of pages and blocks to save; the guest then runs on while another
thread reads them out (native/capture.c).  What the guest, its DMA or the
host writes after the savevm instant must never reach the snapshot.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import pytest

import rvasm
from chrono.core.launch import GuestSpec, launch
from chrono.core.machine import PAGE_SIZE, Stop
from chrono.store import Store
from chrono.store.capture import Snapshots, guest_from_snapshot
from snapshot_driver import EPOCH, Driver, digest_dict

PAGES = 64

# Sweeps PAGES pages of `buf` forever, storing a counter into every word:
# every page changes on every sweep (fast stores through the write TLB).
SWEEPER = f"""
main:
        la s0, buf
        li s1, {PAGES * PAGE_SIZE}
        li s2, 1
sweep:
        li t0, 0
fill:
        add t1, s0, t0
        sd s2, 0(t1)
        addi s2, s2, 1
        addi t0, t0, 8
        blt t0, s1, fill
        j sweep

        .data
        .balign 4096
buf:    .space {PAGES * PAGE_SIZE}
"""


def sweeper(jit: bool):
    g = rvasm.boot(SWEEPER, jit=jit, jit_threshold=1)
    m = g.machine
    assert m.run(300_000).reason == Stop.BUDGET          # every page written, blocks hot
    first = (g.sym("buf") - rvasm.RAM_BASE) // PAGE_SIZE
    return g, m, np.arange(first, first + PAGES)


def mask(m, pages) -> np.ndarray:
    out = np.zeros(len(m.ram_dirty), dtype=np.uint8)
    out[pages] = 1
    return out


def pages_of(m, pages) -> np.ndarray:
    return m.ram.reshape(-1, PAGE_SIZE)[pages].copy()


@pytest.mark.parametrize("jit", [False, True])
def test_guest_writes_after_the_instant_do_not_reach_the_capture(jit):
    g, m, pages = sweeper(jit)
    at_instant = pages_of(m, pages)
    m.capture_begin(mask(m, pages), None)
    assert m.capture_pending() == PAGES
    assert m.run(200_000).reason == Stop.BUDGET          # the guest overwrites them all
    assert not np.array_equal(pages_of(m, pages), at_instant)
    assert np.array_equal(m.capture_read(False, pages), at_instant)
    assert m.capture_pending() == 0
    assert m.ram_dirty[pages].all()                      # the writes count for the next save


@pytest.mark.parametrize("jit", [False, True])
def test_the_capture_is_read_while_the_guest_runs(jit):
    """The reader runs in another thread, concurrently with machine.run (both
    release the GIL); whichever reaches a page first, the reader gets the
    instant's content."""
    g, m, pages = sweeper(jit)
    for _ in range(20):
        at_instant = pages_of(m, pages)
        m.capture_begin(mask(m, pages), None)
        got = {}
        reader = threading.Thread(target=lambda: got.update(
            rows=np.concatenate([m.capture_read(False, pages[i:i + 4]) for i in range(0, PAGES, 4)])))
        reader.start()
        while reader.is_alive():
            m.run(3_000)
        reader.join()
        assert np.array_equal(got["rows"], at_instant)


def test_host_writes_after_the_instant_do_not_reach_the_capture():
    g, m, pages = sweeper(False)
    at_instant = pages_of(m, pages)
    m.capture_begin(mask(m, pages), None)
    m.write_phys(rvasm.RAM_BASE + int(pages[3]) * PAGE_SIZE + 100, b"host" * 1000)
    assert np.array_equal(m.capture_read(False, pages), at_instant)


def test_a_second_capture_waits_for_the_first_to_be_read():
    g, m, pages = sweeper(False)
    m.capture_begin(mask(m, pages), None)
    with pytest.raises(Exception, match="in progress"):
        m.capture_begin(mask(m, pages), None)
    m.capture_read(False, pages)
    m.capture_begin(mask(m, pages[:3]), None)
    m.capture_read(False, pages[:3])


SCRIPT = (b"write alpha the first file\nsync\n"
          b"write beta " + b"b" * 3000 + b"\nwrite gamma moved on\nsync\n"
          b"bench 1\nrm alpha\nwrite delta " + b"d" * 2000 + b"\nsync\nls\n")


def run_to(driver, m, address):
    m.add_breakpoint(address)
    outcome = driver.run()
    m.remove_breakpoint(address)
    assert outcome.kind == "breakpoint" and m.pc == address, outcome


@contextmanager
def saving_demo(tmp_path):
    """The demo guest with a 4 MiB disk, a store and its Snapshots, and a
    Driver feeding SCRIPT: (guest, store, snapshots, driver)."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(4 << 20))
    guest = launch(GuestSpec(disk=image, rtc_epoch_ns=EPOCH))
    store = Store.open(tmp_path / "store", create=True)
    snaps = Snapshots(store, guest)
    driver = Driver(guest.machine, SCRIPT, tmp_path, "run")
    try:
        yield guest, store, snaps, driver
    finally:
        driver.close()
        snaps.close()
        store.close()


def test_a_background_savevm_is_the_machine_at_its_instant(tmp_path):
    """savevm in the background at the start of a `sync`, then the guest
    writes RAM and (by virtio DMA) its disk before the capture is read: the
    snapshot, restored, has the digest (CPU/devices, all of RAM, the whole
    disk) of the savevm instant."""
    go = threading.Event()
    with saving_demo(tmp_path) as (guest, store, snaps, driver):
        m = guest.machine
        try:
            run_to(driver, m, guest.boot.symbols["cmd_sync"])
            snaps.save("first")     # a baseline: the next saves are incremental
            for name in ("busy", "later"):
                run_to(driver, m, guest.boot.symbols["cmd_sync"])
                instant = digest_dict(m)
                # Hold the committer until the guest has moved on, so the reads
                # certainly come after its writes.
                go.clear()
                snaps._committer.submit(go.wait)
                assert snaps.save(name, background=True) is None
                disk_before = guest.disk.data.copy()
                driver.run(3_000_000)   # the sync's DMA, then more commands
                assert not np.array_equal(guest.disk.data, disk_before), "the disk did not move on"
                go.set()
                snaps.wait()
                assert snaps.times.paused < 0.05
                restored, restored_snaps = guest_from_snapshot(store, name)
                assert digest_dict(restored.machine) == instant
                restored_snaps.close()
        finally:
            go.set()


def test_a_loadvm_right_after_a_background_savevm_does_not_reach_it(tmp_path):
    """loadvm of another snapshot rewrites all of RAM and the disk: it waits
    for the pending capture to be read, so the savevm keeps its instant."""
    with saving_demo(tmp_path) as (guest, store, snaps, driver):
        m = guest.machine
        run_to(driver, m, guest.boot.symbols["cmd_sync"])
        snaps.save("early")
        early = digest_dict(m)
        driver.run(3_000_000)                       # the sync's DMA and more commands
        run_to(driver, m, guest.boot.symbols["cmd_sync"])
        instant = digest_dict(m)
        assert instant["ram"] != early["ram"] and instant["disk"] != early["disk"]
        assert snaps.save("late", background=True) is None
        snaps.load("early")                         # at once, while "late" is being read
        assert {k: v for k, v in digest_dict(m).items() if k != "position"} == \
            {k: v for k, v in early.items() if k != "position"}
        restored, restored_snaps = guest_from_snapshot(store, "late")
        assert digest_dict(restored.machine) == instant
        restored_snaps.close()


def test_a_background_savevm_during_a_replay_is_the_replay_at_its_instant(tmp_path):
    """A savevm taken in the background while a recording replays: the replay
    runs on (writing RAM and, by DMA, the disk, and verifying the recording's
    keyframes as it goes), and the snapshot is the replayed machine at the savevm."""
    from chrono.replay.replay import Replayer
    from tracehelp import record_demo

    record_demo(tmp_path, "t", "write a hello\nsync\nbench 2\nwrite b " + "x" * 2000
                + "\nsync\nls\npoweroff\n", 2_000_000)
    store = Store.open(tmp_path / "store")
    replayer = Replayer(store, "t")
    try:
        manifest = replayer.manifest
        at = manifest.keyframes[1].position + 12_345
        events = iter(replayer.events())
        event = next(events)
        while event.position <= at:
            replayer.run_to(event.position)
            replayer.apply(event)
            event = next(events)
        replayer.run_to(at)
        instant = digest_dict(replayer.machine)
        assert replayer.snapshots.save("mid-replay", background=True) is None
        for event in [event, *events]:              # on to the end, keyframes verified
            replayer.run_to(event.position)
            replayer.apply(event)
        replayer.snapshots.wait()
        after = digest_dict(replayer.machine)
        assert after["ram"] != instant["ram"] and after["disk"] != instant["disk"]
        assert replayer.report.keyframes >= 2
        restored, restored_snaps = guest_from_snapshot(store, "mid-replay")
        assert digest_dict(restored.machine) == instant
        restored_snaps.close()
    finally:
        replayer.close()
        store.close()
