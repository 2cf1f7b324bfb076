"""A damaged data.mdb (truncated, empty, a directory, a zeroed B-tree page) is
refused by every store command with one line naming the file, never a crash
(LMDB maps the file: a read past its end is a SIGBUS, a damaged page an abort)."""
import os
import struct
import subprocess

import pytest

from chrono.store import Store
from chronocmd import CHRONO
from storehelp import page, save

COMMANDS = [("store", "verify"), ("snap", "list"), ("store", "gc"), ("store", "compact"),
            ("snap", "info", "booted"), ("run", "--from", "booted", "--max-insns", "1000")]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    with Store(path, create=True) as s:
        booted = save(s, {i: page(("boot", i), compressible=False) for i in range(40)}, "booted")
        save(s, {3: page("edit")}, "work", base=booted[1].ram, parent=booted[0])
    return path


def chrono(store, *args):
    return subprocess.run(CHRONO + list(args), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CHRONO_STORE": str(store)}, input="")


def assert_refused(proc, *words):
    assert 0 < proc.returncode < 128, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("chrono: error: ")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_truncated_data_file_is_refused_by_every_command(store, command):
    data = store / "data.mdb"
    size = data.stat().st_size
    data.write_bytes(data.read_bytes()[:size // 2 // 4096 * 4096])
    line = assert_refused(chrono(store, *command), "damaged", str(data), "backup")
    assert "shorter than" in line


@pytest.mark.parametrize("command", [("store", "verify"), ("snap", "list"), ("store", "gc")],
                         ids=" ".join)
def test_an_empty_data_file_is_refused_not_reinitialized(store, command):
    data = store / "data.mdb"
    data.write_bytes(b"")
    assert_refused(chrono(store, *command), "damaged", str(data), "empty")
    assert data.stat().st_size == 0


def test_a_directory_in_place_of_the_data_file_is_refused(store):
    data = store / "data.mdb"
    data.unlink()
    data.mkdir()
    for command in [("store", "verify"), ("snap", "list")]:
        assert_refused(chrono(store, *command), "damaged", str(data), "is a directory")


def _database_roots(data: bytes) -> dict[str, int]:
    """Root page of each named database, read from a small store's main tree (one leaf)."""
    psize = struct.unpack_from("<I", data, 40)[0]
    metas = [struct.unpack_from("<QQ", data, i * psize + 136) for i in (0, 1)]   # last_pg, txnid
    newest = max((0, 1), key=lambda i: metas[i][1])
    main_root = struct.unpack_from("<Q", data, newest * psize + 88 + 40)[0]
    leaf = data[main_root * psize:(main_root + 1) * psize]
    lower = struct.unpack_from("<H", data, main_root * psize + 12)[0]
    roots = {}
    for i in range((lower - 16) // 2):
        offset = struct.unpack_from("<H", leaf, 16 + 2 * i)[0]
        _, _, _, ksize = struct.unpack_from("<HHHH", leaf, offset)
        name = leaf[offset + 8:offset + 8 + ksize].decode()
        roots[name] = struct.unpack_from("<Q", leaf, offset + 8 + ksize + 40)[0]
    return roots


def _zero_root_page(store, database: str) -> int:
    """Zero the root page of one named database in data.mdb; returns its number."""
    data = store / "data.mdb"
    content = bytearray(data.read_bytes())
    root = _database_roots(bytes(content))[database]
    content[root * 4096:(root + 1) * 4096] = bytes(4096)
    data.write_bytes(content)
    return root


def test_verify_reports_a_zeroed_tree_page_instead_of_aborting(store):
    root = _zero_root_page(store, "blobs")
    for command in [("store", "verify"), ("store", "gc")]:
        assert_refused(chrono(store, *command), "damaged", f"page {root}")


def test_a_sound_store_still_verifies(store):
    proc = chrono(store, "store", "verify")
    assert proc.returncode == 0, proc.stderr
    assert "is sound" in proc.stdout


@pytest.mark.parametrize("database", ["snapshots", "refs"])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_zeroed_page_of_what_cursors_walk_is_refused_by_every_command(store, database,
                                                                        command):
    """snap list walks refs and snapshots with cursors, which LMDB does not
    check: the store's open checks those trees (and stats, compact walk all)."""
    root = _zero_root_page(store, database)
    assert_refused(chrono(store, *command), "damaged", f"page {root}")


def test_store_stats_and_compact_refuse_a_zeroed_blob_page(store):
    root = _zero_root_page(store, "blobs")
    for command in [("store", "stats"), ("store", "compact")]:
        assert_refused(chrono(store, *command), "damaged", f"page {root}")
