"""Boot sets: the first fast boot of a snapshot keeps, in one file beside the
store, the blobs it read first, and later fast boots read them from there
(chrono.store.bootset).  A cache: whatever the file holds, a fast boot restores
exactly the snapshot, and gc removes the boot sets of what it removes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from chrono.store import Store
from tracehelp import MON, chrono

SAVE = "write keep kept in the snapshot\nwrite other 2\n" + MON + "savevm booted\n" + MON + \
       "write later not in it\npoweroff\n"
CHECK = "cat keep\nls\nfsck\npoweroff\n"


def saved_store(tmp_path) -> tuple[Path, str]:
    proc = chrono(tmp_path, "run", "--store", tmp_path / "store", script=SAVE)
    assert proc.returncode == 0, proc.stderr
    with Store.open(tmp_path / "store") as store:
        return tmp_path / "store", store.resolve("booted")


def fast_boot(tmp_path, store: Path):
    proc = chrono(tmp_path, "run", "--from", "booted", "--store", store, script=CHECK)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_restored_exactly(out: str) -> None:
    lines = out.split("\n")
    assert lines[0] == "cat keep" and lines[1] == "kept in the snapshot", lines[:3]
    assert " keep\n" in out and " other\n" in out and " later\n" not in out
    assert "CLEAN" in out and "Powering off." in out


def test_the_first_fast_boot_writes_a_boot_set_the_next_ones_use(tmp_path):
    store, sid = saved_store(tmp_path)
    boot_set = store / "bootsets" / sid
    assert not boot_set.exists()                # savevm writes none: only a fast boot knows its pages
    first = fast_boot(tmp_path, store)
    assert_restored_exactly(first)
    assert boot_set.stat().st_size > 4096
    written = boot_set.stat().st_mtime_ns
    second = fast_boot(tmp_path, store)
    assert second == first
    assert boot_set.stat().st_mtime_ns == written   # used, not written again


@pytest.mark.parametrize("damage", ["flip", "truncate", "zeros", "another snapshot's"])
def test_a_damaged_boot_set_changes_nothing_the_guest_sees(tmp_path, damage):
    store, sid = saved_store(tmp_path)
    reference = fast_boot(tmp_path, store)
    boot_set = store / "bootsets" / sid
    data = bytearray(boot_set.read_bytes())
    if damage == "flip":
        for offset in range(100, len(data), 997):       # header, keys, lengths and values
            data[offset] ^= 0x20
    elif damage == "truncate":
        del data[len(data) // 2:]
    elif damage == "zeros":
        data[40:] = bytes(len(data) - 40)
    else:
        data[8:40] = bytes.fromhex("11" * 32)           # it claims to be another snapshot's
    boot_set.write_bytes(bytes(data))
    assert fast_boot(tmp_path, store) == reference


def test_gc_removes_the_boot_sets_of_the_snapshots_it_removes(tmp_path):
    store, sid = saved_store(tmp_path)
    fast_boot(tmp_path, store)
    assert (store / "bootsets" / sid).exists()
    assert chrono(tmp_path, "store", "gc", "--store", store).returncode == 0
    assert (store / "bootsets" / sid).exists()          # named: kept
    assert chrono(tmp_path, "snap", "rm", "booted", "--store", store).returncode == 0
    assert chrono(tmp_path, "store", "gc", "--store", store).returncode == 0
    assert not (store / "bootsets" / sid).exists()
