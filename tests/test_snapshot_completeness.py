"""The completeness contract of snapshots, on the demo guest with a disk.

A snapshot taken at any instruction (not only at an idle prompt: in the
middle of the benchmark, between posting a virtio request and notifying the
device during `sync`) holds everything the guest's future depends on: CPU,
devices, RAM and disk.  So a machine restored from it and given the same
remaining input reaches, N steps later, exactly the state digest (CPU and
device state, all of RAM, the whole disk) that the uninterrupted machine
reached - whether it is restored in the same process over a machine that has
moved far on (delta restore), after restoring another snapshot first
(A -> B -> A), in a new process with guest_from_snapshot, or from a snapshot
that was itself saved on top of a restore.

Input is fed by a Session over files exactly as `chrono run` feeds it
(tests/snapshot_driver.py); the continuation from a snapshot gets the input
that the original run had not handed to the UART yet.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chrono.core.launch import GuestSpec, launch
from chrono.core.machine import Stop
from chrono.errors import RefNameError, SnapshotMismatchError
from chrono.store.capture import Snapshots, guest_from_snapshot
from chrono.store import Store, stats
from snapshot_driver import EPOCH, Driver, digest_dict
from chronocmd import CHRONO

DISK_SIZE = 4 << 20
CHILD = Path(__file__).parent / "snapshot_driver.py"

SCRIPT = (b"write alpha the first file\n"
          b"write beta " + b"b" * 600 + b"\n"
          b"sync\n"                       # snapshot B: in the middle of its disk writes
          b"bench 1\n"                    # snapshot A: in the middle of the benchmark
          b"write gamma after the bench\n"
          b"ls\n"
          b"cat alpha\n"
          b"fsck\n")

# The machine moves far on after both snapshots: RAM (bench), files and disk change.
MORE = (b"write delta moved on\n"
        b"rm alpha\n"
        b"bench 1\n"
        b"write epsilon " + b"e" * 900 + b"\n"
        b"sync\n")

N_B = 1_000_003             # from B: the rest of the sync, into the benchmark
INTO_BENCH = 2_345_677      # A is this many steps after the end of B's continuation
N_A = 40_000_000            # from A: to the end of the script (the input ends first)
K_C = 1_234_567             # C is saved this far after restoring A


def u16(machine, address):
    return struct.unpack("<H", machine.read_phys(address, 2))[0]


@dataclass
class Continuation:
    """What the uninterrupted machine did after a snapshot."""

    name: str
    position: int
    state: bytes            # save_state() at the snapshot
    remaining: bytes        # input not yet given to the guest at the snapshot
    steps: int              # N
    kind: str
    output: bytes
    digest: dict


@dataclass
class Recording:
    tmp: Path
    image: Path
    guest: object
    snaps: Snapshots
    store: Store
    cont: dict[str, Continuation] = field(default_factory=dict)

    @property
    def machine(self):
        return self.guest.machine

    def close(self):
        self.snaps.close()
        self.store.close()


def run_to_breakpoint(driver, machine, symbol_address, hits=1):
    machine.add_breakpoint(symbol_address)
    for _ in range(hits):
        outcome = driver.run()
        assert outcome.kind == "breakpoint" and machine.pc == symbol_address, outcome
    machine.remove_breakpoint(symbol_address)


def continue_and_record(driver, rec, name, position, steps):
    state, remaining = rec.machine.save_state(), driver.remaining()
    before = len(driver.output)
    outcome = driver.run(steps)
    rec.cont[name] = Continuation(name, position, state, remaining, steps, outcome.kind,
                                  driver.output[before:], digest_dict(rec.machine))
    return outcome


def record(tmp_path: Path) -> Recording:
    """Boot, save B mid-sync and A mid-bench, record N steps after each, then
    move far on."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(DISK_SIZE))
    guest = launch(GuestSpec(disk=image, rtc_epoch_ns=EPOCH))
    m = guest.machine
    sym = guest.boot.symbols
    store = Store.open(tmp_path / "store", create=True)
    rec = Recording(tmp_path, image, guest, Snapshots(store, guest), store)
    driver = Driver(m, SCRIPT, tmp_path, "original")

    # B: inside `sync`, the third block write: the request is in the avail
    # ring (RAM) but the device has not been notified yet.
    run_to_breakpoint(driver, m, sym["cmd_sync"])
    run_to_breakpoint(driver, m, sym["do_request"], hits=3)
    avail_idx, used_idx = sym["avail"] + 2, sym["used"] + 2
    for _ in range(500):
        if u16(m, avail_idx) != u16(m, used_idx):
            break
        assert driver.run(1).kind == "max-steps"
    assert u16(m, avail_idx) == (u16(m, used_idx) + 1) & 0xFFFF, "no request in flight"
    assert b"synced" not in driver.output
    rec.snaps.save("B")
    position_b = m.steps
    outcome = continue_and_record(driver, rec, "B", position_b, N_B)
    assert outcome.kind == "max-steps"
    assert m.steps == position_b + N_B

    # A: an odd number of steps later, inside the benchmark.
    assert driver.run(INTO_BENCH).kind == "max-steps"
    out = driver.output
    assert b"bench: 1 unit" in out and b"checksum" not in out, out[-300:]
    rec.snaps.save("A")
    position_a = m.steps
    outcome = continue_and_record(driver, rec, "A", position_a, N_A)
    assert outcome.kind == "input-ended", outcome
    tail = rec.cont["A"].output
    assert b"checksum 0x293f286cb41ca541" in tail and b"CLEAN" in tail, tail[-500:]
    driver.close()

    more = Driver(m, MORE, tmp_path, "more")
    assert more.run().kind == "input-ended"
    more.close()
    assert b"synced" in more.output
    return rec


@pytest.fixture
def recording(tmp_path):
    rec = record(tmp_path)
    yield rec
    rec.close()


def assert_same_continuation(c: Continuation, tag: str, state: bytes, kind: str, output: bytes,
                             digest: dict):
    assert state == c.state, f"{tag}: save_state() right after the restore differs"
    assert digest["position"] == c.digest["position"], f"{tag}: stopped at another position"
    assert digest["state"] == c.digest["state"], f"{tag}: CPU/device state differs"
    assert digest["ram"] == c.digest["ram"], f"{tag}: RAM differs"
    assert digest["disk"] == c.digest["disk"], f"{tag}: disk differs"
    assert output == c.output, f"{tag}: guest output differs"
    assert kind == c.kind


def assert_replays(rec: Recording, name: str, tag: str):
    """Run the recorded number of steps from the machine's current state with
    the snapshot's remaining input: the same continuation as recorded."""
    c = rec.cont[name]
    assert rec.machine.steps == c.position
    state = rec.machine.save_state()
    driver = Driver(rec.machine, c.remaining, rec.tmp, tag)
    outcome = driver.run(c.steps)
    driver.close()
    assert_same_continuation(c, tag, state, outcome.kind, driver.output, digest_dict(rec.machine))


def test_restore_in_the_same_process_over_a_machine_that_moved_on(recording):
    """Delta restore: the machine ran a benchmark, wrote, removed and synced
    files after both snapshots; loading each gives its exact continuation."""
    rec = recording
    moved_on = digest_dict(rec.machine)
    assert moved_on["disk"] != rec.cont["A"].digest["disk"]

    manifest = rec.snaps.load("A")
    assert manifest.steps == rec.machine.steps == rec.cont["A"].position
    assert_replays(rec, "A", "same-process-A")

    rec.snaps.load("B")
    assert rec.machine.steps == rec.cont["B"].position
    assert_replays(rec, "B", "same-process-B")


def test_restore_chains_a_b_a(recording):
    rec = recording
    rec.snaps.load("A")
    rec.snaps.load("B")             # straight on, without running in between
    rec.snaps.load("A")
    assert_replays(rec, "A", "chain-A-B-A")
    rec.snaps.load("B")
    assert_replays(rec, "B", "chain-then-B")
    rec.snaps.load("A")
    assert_replays(rec, "A", "chain-then-A-again")


def child(rec: Recording, name: str, continuation: Continuation, tag: str) -> dict:
    """Restore `name` in a new process (guest_from_snapshot) and run its continuation."""
    input_path = rec.tmp / f"{tag}.in"
    input_path.write_bytes(continuation.remaining)
    output_path = rec.tmp / f"{tag}.out"
    proc = subprocess.run([sys.executable, str(CHILD), str(rec.store.path), name,
                           str(continuation.steps), str(input_path), str(output_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    result["output"] = output_path.read_bytes()
    return result


def assert_child_replays(result: dict, c: Continuation, tag: str):
    assert_same_continuation(c, tag, bytes.fromhex(result["state_after_restore"]), result["kind"],
                             result["output"], result["digest"])


def test_a_new_process_restores_with_guest_from_snapshot(recording):
    rec = recording
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(child, rec, name, rec.cont[name], f"child-{name}")
                   for name in ("A", "B")}
        results = {name: f.result() for name, f in futures.items()}
    for name, result in results.items():
        assert_child_replays(result, rec.cont[name], f"new process from {name}")


def test_snapshots_saved_after_restores_are_complete(recording):
    rec, m = recording, recording.machine
    a = rec.store.snapshot("A")

    # Saved straight after a (lazy) restore: the very same machine contents.
    rec.snaps.load("A")
    sid_d = rec.snaps.save("D")
    d = rec.store.snapshot("D")
    assert d.parent == a.id
    assert (d.ram, d.disks, d.state, d.steps) == (a.ram, a.disks, a.state, a.steps)
    assert rec.snaps.times.pages == 0 and rec.snaps.times.blocks == 0

    # Saved after running on from a restore (incremental on top of A): C.
    driver = Driver(m, rec.cont["A"].remaining, rec.tmp, "to-C")
    assert driver.run(K_C).kind == "max-steps"
    rec.snaps.save("C")
    c_manifest = rec.store.snapshot("C")
    assert c_manifest.parent == sid_d
    assert 0 < rec.snaps.times.pages < 200          # only what the guest dirtied since A
    continue_and_record(driver, rec, "C", m.steps, 20_000_001)
    driver.close()
    rec.cont["D"] = rec.cont["A"]

    # Load something else, then C, and replay; also from D and C in new processes.
    rec.snaps.load("B")
    rec.snaps.load("C")
    assert_replays(rec, "C", "C-after-B")
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(child, rec, name, rec.cont[name], f"child-{name}")
                   for name in ("C", "D")}
        for name, f in futures.items():
            assert_child_replays(f.result(), rec.cont[name], f"new process from {name}")

    # And a snapshot of a machine restored from an incremental one loads back too.
    rec.snaps.load("C")
    rec.snaps.save("E")
    rec.snaps.load("B")
    rec.snaps.load("E")
    rec.cont["E"] = rec.cont["C"]
    assert_replays(rec, "E", "E-after-B")


# ---- at the prompt ---------------------------------------------------------------------

@pytest.fixture
def idle(tmp_path):
    """A demo guest booted to its prompt (nothing scheduled), with a store."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(DISK_SIZE))
    guest = launch(GuestSpec(disk=image, rtc_epoch_ns=EPOCH))
    driver = Driver(guest.machine, b"write note some text\nsync\n", tmp_path, "boot")
    assert driver.run().kind == "input-ended"
    driver.close()
    assert driver.output.endswith(b"demo> ")
    store = Store.open(tmp_path / "store", create=True)
    rec = Recording(tmp_path, image, guest, Snapshots(store, guest), store)
    yield rec
    rec.close()


def test_a_pending_timer_fires_at_the_same_moment_after_a_restore(idle):
    """Saved while the guest idles with its cache-flush timer 5 s (virtual)
    ahead: the restored guest sleeps until the same deadline and flushes the
    same blocks."""
    rec, m = idle, idle.machine
    pending = b"write later flushed by the timer\r"
    for _ in range(1000):
        pending = pending[m.console_write(pending):]
        m.set_input_waiting(bool(pending))
        r = m.run(100_000)
        m.console_read()
        if r.reason == Stop.IDLE and not pending:
            break
    assert r.reason == Stop.IDLE and r.has_deadline and r.deadline > m.vclock + 4 * 10**9, r
    rec.snaps.save("T")
    position = m.steps
    driver = Driver(m, b"", rec.tmp, "T-original")
    continue_and_record(driver, rec, "T", position, 10_000_000)
    driver.close()
    assert rec.cont["T"].kind == "input-ended" and m.vclock >= r.deadline
    assert b"flushed by the timer" in rec.guest.disk.data.tobytes()

    rec.snaps.load("T")
    assert_replays(rec, "T", "timer-same-process")
    assert_child_replays(child(rec, "T", rec.cont["T"], "timer-child"), rec.cont["T"],
                         "timer-new-process")


def test_a_failed_save_loses_nothing_for_the_next_snapshot(idle):
    """A save that fails (here: a name refused by the store) must leave the
    next save complete: it still has to capture every page and block changed
    since the last snapshot that was actually written."""
    rec = idle
    rec.snaps.save("x")
    driver = Driver(rec.machine, b"write more stuff\nsync\nbench 1\n", rec.tmp, "changes")
    assert driver.run().kind == "input-ended"
    driver.close()
    with pytest.raises(RefNameError):
        rec.snaps.save("bad/name")
    rec.snaps.save("y")
    here = digest_dict(rec.machine)
    guest, snaps = guest_from_snapshot(rec.store, "y")
    try:
        there = digest_dict(guest.machine)
    finally:
        snaps.close()
    assert there["state"] == here["state"]
    assert there["ram"] == here["ram"], "snapshot y lacks RAM pages changed before the failed save"
    assert there["disk"] == here["disk"], "snapshot y lacks disk blocks changed before the failed save"


def stored_bytes(store) -> int:
    return stats(store).stored_bytes


def test_a_second_snapshot_of_an_idle_guest_stores_few_new_bytes(idle, tmp_path):
    guest, snaps = idle.guest, idle.snaps
    before = stored_bytes(snaps.store)
    snaps.save("first")
    first, first_added = snaps.times, stored_bytes(snaps.store) - before
    assert first.pages > 20 and first.blocks > 0, first

    driver = Driver(guest.machine, b"echo still here\n", tmp_path, "echo")
    assert driver.run().kind == "input-ended"
    driver.close()
    assert b"still here" in driver.output
    before = stored_bytes(snaps.store)
    snaps.save("second")
    second, second_added = snaps.times, stored_bytes(snaps.store) - before
    assert second.blocks == 0, second                           # the disk did not change
    assert 0 < second.pages < 16, second
    assert second.new_bytes <= first.new_bytes // 4, (first, second)
    assert second_added <= first_added // 4, (first_added, second_added)

    snaps.save("third")                                         # nothing ran at all
    assert (snaps.times.pages, snaps.times.blocks, snaps.times.new_bytes) == (0, 0, 0), snaps.times


def test_capture_times_new_bytes_is_the_stored_bytes_the_capture_added(idle, tmp_path):
    """CaptureTimes.new_bytes is documented as "stored bytes added" and the
    monitor prints it as "N KiB new in the store"."""
    guest, snaps = idle.guest, idle.snaps
    for name, script in (("first", None), ("second", b"write more text\nsync\n")):
        if script is not None:
            driver = Driver(guest.machine, script, tmp_path, name)
            assert driver.run().kind == "input-ended"
            driver.close()
        before = stats(snaps.store)
        snaps.save(name)
        after = stats(snaps.store)
        added = after.stored_bytes - before.stored_bytes
        assert after.blobs > before.blobs
        assert snaps.times.new_bytes == added, (
            f"snapshot {name!r}: CaptureTimes.new_bytes is {snaps.times.new_bytes}, but the "
            f"store grew by {added} stored bytes in {after.blobs - before.blobs} new blobs")


@pytest.mark.parametrize("other, what, mine, theirs", [
    (dict(ram_size=64 << 20), "RAM size", str(64 << 20), str(128 << 20)),
    (dict(disk_size=8 << 20), "disk size", str(8 << 20), str(DISK_SIZE)),
])
def test_restoring_into_a_machine_of_another_size_is_refused(idle, tmp_path, other, what, mine,
                                                             theirs):
    snaps = idle.snaps
    snaps.save("here")
    image = tmp_path / "other.img"
    image.write_bytes(bytes(other.get("disk_size", DISK_SIZE)))
    guest = launch(GuestSpec(disk=image, ram_size=other.get("ram_size", 128 << 20),
                             rtc_epoch_ns=EPOCH))
    before = digest_dict(guest.machine)
    target = Snapshots(snaps.store, guest)
    try:
        with pytest.raises(SnapshotMismatchError) as info:
            target.load("here")
    finally:
        target.close()
    message = info.value.message
    assert what in message and mine in message and theirs in message, message
    assert "'here'" in message
    assert digest_dict(guest.machine) == before         # refused before touching anything
    assert target.baseline is None


# ---- gc while a guest depends on its snapshot --------------------------------------------
#
# A running guest depends on the snapshot it was last saved as or restored
# from (its baseline): lazily restored pages are read from it on first touch,
# and the next save and restore are computed against its page tables.
# Removing that snapshot's name and collecting garbage in another process
# (`chrono snap rm`/`delvm`, then `chrono store gc`) must not break the guest.

def gc_in_another_process(store: Store) -> str:
    proc = subprocess.run([*CHRONO, "store", "gc", "--store",
                           str(store.path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The guest's lease keeps its baseline snapshot, nameless or not.
    assert proc.stdout.startswith("removed 0 snapshots"), proc.stdout
    return proc.stdout


def record_from_here(rec: Recording, name: str, script: bytes, steps: int) -> None:
    rec.snaps.save(name)
    driver = Driver(rec.machine, script, rec.tmp, f"{name}-original")
    continue_and_record(driver, rec, name, rec.machine.steps, steps)
    driver.close()


def test_a_lazily_restored_guest_survives_gc_of_its_snapshot(idle):
    rec = idle
    record_from_here(rec, "x", b"cat note\nbench 1\nls\nwrite n2 more\nsync\n", 30_000_000)
    assert b"some text" in rec.cont["x"].output
    rec.snaps.load("x")                         # RAM comes back lazily, from the store
    assert (rec.machine.ram_present == 0).any()
    rec.store.remove("x")
    gc_in_another_process(rec.store)
    assert_replays(rec, "x", "after gc of the restored snapshot")


def test_restoring_after_the_current_baseline_was_deleted_and_collected(idle):
    rec = idle
    record_from_here(rec, "x", b"write n2 more\nbench 1\nsync\n", 30_000_000)
    rec.snaps.save("y")                         # the baseline now
    driver = Driver(rec.machine, b"write n3 again\nrm note\nsync\n", rec.tmp, "after-y")
    assert driver.run().kind == "input-ended"
    driver.close()
    rec.store.remove("y")
    gc_in_another_process(rec.store)
    rec.snaps.load("x")
    assert_replays(rec, "x", "restore after gc of the baseline")


def test_the_layout_check_of_a_fast_boot_agrees_with_every_machine(tmp_path):
    """A fast boot checks a snapshot's state size against core_state_size()
    (no machine is built for it): the size every machine's state has."""
    from chrono.core.machine import Machine
    from chrono.store.capture import core_state_size

    plain = Machine(16 << 20)
    with_net = Machine(64 << 20, virtio="pci")
    with_net.attach_net()
    assert {len(plain.save_state()), len(with_net.save_state())} == {core_state_size()}
