"""Pack files (chrono/store/packs.py): a big capture's pages are appended to a
pack and the blobs database holds pointers; what a user relies on is that
such a snapshot restores exactly, survives an aborted writer, gives its space
back through gc and compact, travels in a bundle, and that a damaged pack is
reported, never a crash."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import chrono.store.capture as capture
from chrono.cli import main
from chrono.errors import StoreCorruptError, StoreFullError
from chrono.store import Store, stats
from chrono.store import packs
from chrono.store.capture import Snapshots, guest_from_snapshot
from chrono.store.gc import gc
from chrono.store.verify import verify
from chronocmd import CHRONO
from test_snapshot_encoder import PAGES, patterned_guest


def pointers(store: Store) -> int:
    with store.reader() as r:
        return sum(packs.is_pointer(v) for _, v in r._txn.cursor(db=store._blobs))


def save(store: Store, guest, name: str) -> None:
    snaps = Snapshots(store, guest)
    try:
        snaps.save(name)
    finally:
        snaps.close()


def restores_exactly(store: Store, name: str, ram: np.ndarray) -> None:
    restored, snaps = guest_from_snapshot(store, name)
    try:
        restored.machine.materialize()
        assert np.array_equal(restored.machine.ram, ram)
    finally:
        snaps.close()


@pytest.fixture
def packed(tmp_path, monkeypatch):
    """A store with one big capture (over encoder.INLINE_PAGES: packed), its guest's RAM."""
    monkeypatch.setattr(capture, "INLINE_PAGES", 2048)
    guest = patterned_guest()
    store = Store.open(tmp_path / "store", create=True)
    save(store, guest, "big")
    yield store, guest.machine.ram.copy()
    store.close()


def test_a_big_capture_is_appended_to_a_pack_and_restores_exactly(packed):
    store, ram = packed
    assert pointers(store) >= PAGES * 2 // 5            # kinds 3 and 4 differ from page to page
    assert "packs" in store.meta()["features.incompat"].split(",")
    info = store.info()
    assert info["pack_bytes"] == info["pack_live_bytes"] > 0
    restores_exactly(store, "big", ram)
    assert verify(store).ok


def test_a_small_capture_stays_in_lmdb(packed):
    """An incremental savevm of a few pages: one fsync at commit, no pack write."""
    store, _ = packed
    before, size = pointers(store), packs.pack_path(store.path, 0).stat().st_size
    snaps = Snapshots(store, patterned_guest())
    try:
        snaps.save("first")
        snaps.guest.machine.write_phys(0x8000_0000 + 9000 * 4096, b"changed" * 1000)
        snaps.save("small")
        assert snaps.times.new_bytes > 0
    finally:
        snaps.close()
    assert pointers(store) == before
    assert packs.pack_path(store.path, 0).stat().st_size == size


def test_bytes_an_aborted_writer_appended_are_cut_off_by_the_next(packed):
    store, ram = packed
    path = packs.pack_path(store.path, 0)
    committed = path.stat().st_size
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.packs().append(b"\x02junk" * 1000, [5000])
            raise RuntimeError("the writer fails before its commit")
    assert path.stat().st_size == committed + 5000       # on disk, named by nothing
    guest = patterned_guest()
    guest.machine.write_phys(0x8000_0000 + 8192 * 4096, b"new" * 4000)
    save(store, guest, "after")
    assert verify(store).ok
    with store.reader() as r:
        sizes = packs.pack_sizes(r._txn, store._meta)
    assert sizes[0][0] == path.stat().st_size            # the junk was cut off, then appended over
    restores_exactly(store, "big", ram)


def test_gc_counts_a_packs_dead_bytes_and_compact_gives_them_back(packed, tmp_path):
    store, ram = packed
    other = patterned_guest()
    other.machine.write_phys(0x8000_0000 + 4096 * 4096, np.random.default_rng(1).bytes(2048 * 4096))
    save(store, other, "other")                           # a second pack's worth of new pages
    before = store.info()
    store.remove("big")
    gc(store)
    after_gc = store.info()
    assert after_gc["pack_bytes"] == before["pack_bytes"]            # gc only drops pointers
    assert after_gc["pack_live_bytes"] < before["pack_live_bytes"]
    size_before, size_after = store.compact()
    assert size_after < size_before
    info = store.info()
    assert info["pack_bytes"] == info["pack_live_bytes"] < before["pack_bytes"]
    assert verify(store).ok
    restores_exactly(store, "other", other.machine.ram.copy())


def test_a_truncated_pack_is_reported_not_a_crash(packed):
    store, _ = packed
    path = packs.pack_path(store.path, 0)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    report = verify(store)
    assert not report.ok
    kinds = {p.kind for p in report.problems}
    assert {"pack", "blob"} <= kinds
    with pytest.raises(StoreCorruptError, match="shorter than its blobs need"):
        with store.reader() as r:
            for _, key in r.get_snapshot(store.resolve("big")).ram.items(r):
                r.get_blob(key)
    store.close()
    result = CliRunner().invoke(main, ["store", "verify", "--store", str(store.path)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "pack" in result.output


def test_a_missing_pack_is_reported(packed):
    store, _ = packed
    path = packs.pack_path(store.path, 0)
    store.close()
    path.unlink()
    with Store.open(store.path) as again:
        report = verify(again)
        assert any(p.kind == "pack" and "missing" in p.message for p in report.problems)
        with pytest.raises(StoreCorruptError, match="cannot be read"):
            again.snapshot("big")
            with again.reader() as r:
                for _, key in r.get_snapshot(r.resolve("big")).ram.items(r):
                    r.get_blob(key)


def test_stats_read_through_pointers(packed):
    store, _ = packed
    s = stats(store)
    assert s.lz4_blobs + s.raw_blobs == s.blobs
    assert s.content_bytes >= pointers(store) * 4096


def test_compact_removes_a_pack_no_commit_named(packed):
    """A compact or first append killed before its commit leaves a pack file
    no record names: compact removes it, and nothing else."""
    store, ram = packed
    orphan = packs.pack_path(store.path, 42)
    orphan.write_bytes(b"\x02" * 10000)
    before, after = store.compact()
    assert not orphan.exists() and after <= before - 10000
    assert verify(store).ok
    restores_exactly(store, "big", ram)


def test_a_full_disk_during_a_pack_write_stores_nothing(tmp_path, monkeypatch):
    """The pack's write fails for want of room: one StoreFullError naming the
    store, no snapshot, and the store still verifies (needs root for a tmpfs)."""
    import os
    import subprocess
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    monkeypatch.setattr(capture, "INLINE_PAGES", 2048)
    try:
        with Store.open(mount / "store", create=True) as store:
            guest = patterned_guest()            # and 8 MiB that do not compress
            guest.machine.write_phys(0x8000_0000 + 4096 * 4096,
                                     np.random.default_rng(2).bytes(2048 * 4096))
            snaps = Snapshots(store, guest)
            try:
                with pytest.raises(StoreFullError, match="free space"):
                    snaps.save("big")
            finally:
                snaps.close()
            assert "big" not in store.refs()
            assert verify(store).ok
    finally:
        subprocess.run(["umount", str(mount)])


# chrono's CLI with every capture's pages sent to a pack (as a big guest's would be).
PACKING_CHRONO = [sys.executable, "-P", "-c",
                  "import sys; import chrono.store.capture as c; c.INLINE_PAGES = 1; "
                  "from chrono.cli import main; sys.argv[0] = 'chrono'; sys.exit(main())"]


def test_a_recording_whose_keyframes_are_packed_exports_imports_and_replays(tmp_path):
    """A bundle carries packed blobs as their stored values: the importing
    store (which packs nothing of its own here) replays the console output."""
    store, other = tmp_path / "store", tmp_path / "other"
    recorded = subprocess.run(PACKING_CHRONO + ["record", "--name", "packed", "--store", str(store),
                                                "--keyframe-interval", "2000000"],
                              input=b"write a hello\nsync\nbench 1\npoweroff\n",
                              capture_output=True, timeout=300)
    assert recorded.returncode == 0, recorded.stderr.decode()
    with Store.open(store) as s:
        assert pointers(s) > 0 and verify(s).ok
    bundle = tmp_path / "packed.chrono"
    for args in (["export", "packed", "-o", str(bundle), "--store", str(store)],
                 ["import", str(bundle), "--store", str(other)]):
        done = subprocess.run(CHRONO + args, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
    replayed = subprocess.run(CHRONO + ["replay", "packed", "--store", str(other)],
                              capture_output=True, timeout=300)
    assert replayed.returncode == 0, replayed.stderr.decode()
    assert replayed.stdout == recorded.stdout and b"console output identical" in replayed.stderr


def test_a_damaged_pointer_is_reported_without_reading_what_it_claims(packed):
    """A pointer whose length bits flipped names 4 GiB: one clear error, no allocation."""
    store, _ = packed
    with store.reader() as r:
        key, value = next((bytes(k), bytes(v)) for k, v in r._txn.cursor(db=store._blobs)
                          if packs.is_pointer(v))
    with store.writer() as w:
        w._txn.put(key, value[:13] + b"\xff\xff\xff\xff", db=store._blobs)
    with pytest.raises(StoreCorruptError, match="pointer .* is damaged"):
        store.get_blob(key)
    assert any(p.kind == "blob" and p.name == key.hex() for p in verify(store).problems)
