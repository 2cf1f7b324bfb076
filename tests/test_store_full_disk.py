"""A full file system: gc still works (short transactions living on the pages
earlier ones freed, never growing the file), the messages advise what works,
and compact refuses cleanly, leaving the store unchanged.  Needs root for a
small tmpfs (skipped otherwise)."""
import hashlib
import os
import subprocess

import pytest

import storehelp
from chrono.errors import StoreFullError
from chrono.store import Store
from chronocmd import CHRONO


@pytest.fixture
def full_store(tmp_path):
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        path = mount / "store"
        with Store(path, create=True) as store:
            with pytest.raises(StoreFullError) as full:
                for i in range(10_000):     # small snapshots: their pages sit in many B-tree leaves
                    storehelp.save(store, {0: storehelp.page(("x", i))}, name=f"n{i}")
        yield path, full.value.message
    finally:
        subprocess.run(["umount", str(mount)])


def _chrono(store, *args):
    return subprocess.run([*CHRONO, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CHRONO_STORE": str(store)})


def test_gc_frees_space_on_a_full_disk(full_store):
    path, message = full_store
    assert "chrono snap rm" in message and "gc" in message
    with Store(path) as store:
        names = sorted(store.refs())
    removed = _chrono(path, "snap", "rm", *names[1:])
    assert removed.returncode == 0, removed.stderr
    size = (path / "data.mdb").stat().st_size
    done = _chrono(path, "store", "gc")
    assert done.returncode == 0, done.stderr
    assert f"removed {len(names) - 1:,} snapshots" in done.stdout, done.stdout
    assert (path / "data.mdb").stat().st_size == size
    with Store(path) as store:              # the freed pages take new snapshots
        storehelp.save(store, {0: storehelp.page("after gc")}, name="after")
    assert _chrono(path, "store", "verify").returncode == 0


def test_compact_on_a_full_disk_refuses_and_leaves_the_store_unchanged(full_store):
    path, _ = full_store
    before = hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()
    done = _chrono(path, "store", "compact")
    assert done.returncode == 8, done.stderr
    errors = [l for l in done.stderr.splitlines() if l.startswith("chrono: error:")]
    assert len(errors) == 1 and "unchanged" in errors[0] and "free space" in errors[0]
    assert "gc" not in errors[0]
    assert hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in path.iterdir()) == ["data.mdb", "lock.mdb"]
