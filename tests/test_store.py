"""The snapshot store library on a real LMDB environment in a temp dir, with
synthetic pages (no emulator): blobs, page tables, manifests, refs, GC, verify,
compact, format checks and full stores."""
import hashlib
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import lmdb
import lz4.block
import numpy as np
import pytest
import zstandard

from chrono.errors import (RefNameError, StoreCorruptError, StoreError, StoreFormatError,
                           StoreFullError, UnknownSnapshotError)
from chrono.store import (LEAF_PAGES, PAGE_SIZE, ZERO_HASH, ZERO_PAGE, Manifest, PageTable, Roots,
                          Store, copy_pages, decode_blob, diff, encode_blob, encode_pages,
                          snapshot_diff, stats)
from chrono.store.blobs import content_size
from chrono.store.gc import gc
from chrono.store.verify import verify
from storehelp import RAM_PAGES, flip_everywhere, page, save


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store", create=True) as s:
        yield s


def blob_count(store):
    with store.reader() as r:
        return r._txn.stat(store._blobs)["entries"]


class CountingSource:
    """A leaf source that records which leaves were read."""

    def __init__(self, store):
        self.store, self.read = store, []

    def get_leaf(self, key):
        self.read.append(key)
        return self.store.get_leaf(key)


# ---- blobs ---------------------------------------------------------------------------------

def test_blob_round_trip_uses_lz4_when_it_helps_and_raw_when_not():
    text = page("text")
    key, value = encode_blob(text)
    assert key == hashlib.sha256(text).digest()
    assert value[0] == 2 and len(value) < PAGE_SIZE * 0.6
    assert value[1:5] == PAGE_SIZE.to_bytes(4, "little")        # the content size, then the block
    assert lz4.block.decompress(value[1:]) == text              # LZ4's own reader agrees
    assert decode_blob(key, value) == text
    noise = page("noise", compressible=False)
    key, value = encode_blob(noise)
    assert value == b"\x00" + noise
    assert decode_blob(key, value) == noise


def test_encode_blob_takes_numpy_rows_and_memoryviews():
    rows = np.frombuffer(page(1) + page(2), dtype=np.uint8).reshape(2, PAGE_SIZE)
    assert encode_blob(rows[1]) == encode_blob(page(2)) == encode_blob(memoryview(page(2)))


def test_zstd_blobs_of_older_stores_still_decode():
    text = page("old")
    frame = zstandard.ZstdCompressor(level=-1, write_content_size=True).compress(text)
    key = hashlib.sha256(text).digest()
    assert decode_blob(key, b"\x01" + frame) == text
    assert content_size(b"\x01" + frame) == PAGE_SIZE


@pytest.mark.parametrize("damage", ["flip", "codec", "truncate", "empty", "size", "bomb",
                                    "zstd"])
def test_decoding_a_damaged_value_raises_store_corrupt_error_naming_the_blob(damage):
    key, value = encode_blob(page("x"))
    bad = {"flip": value[:100] + bytes([value[100] ^ 1]) + value[101:],
           "codec": b"\x07" + value[1:],
           "truncate": value[:len(value) // 2],
           "empty": b"",
           "size": value[:1] + (PAGE_SIZE + 1).to_bytes(4, "little") + value[5:],
           "bomb": value[:1] + (1 << 31).to_bytes(4, "little") + value[5:],
           "zstd": b"\x01" + value[5:]}[damage]
    with pytest.raises(StoreCorruptError) as e:
        decode_blob(key, bad, "/some/store")
    assert key.hex() in e.value.message and "/some/store" in e.value.message
    assert "chrono store verify" in e.value.message


def test_every_read_is_verified_against_the_hash(store):
    key, value = encode_blob(page("y"))
    other_key, _ = encode_blob(page("z"))
    with store.writer() as w:
        w._txn.put(other_key, value, db=store._blobs)    # right format, wrong content
    with pytest.raises(StoreCorruptError, match=other_key.hex()):
        store.get_blob(other_key)


def test_zero_pages_are_never_stored(store):
    assert encode_blob(ZERO_PAGE) == (ZERO_HASH, None)
    assert encode_blob(bytes(100))[0] != ZERO_HASH       # only the 4 KiB page is implicit
    sid, m = save(store, {i: ZERO_PAGE for i in range(0, RAM_PAGES, 3)}, "zeros")
    assert m.ram == PageTable.empty(RAM_PAGES)            # no leaves either
    assert blob_count(store) == 2                         # state and device tree only
    assert store.page(m.ram, 3) == ZERO_PAGE
    assert store.get_blob(ZERO_HASH) == ZERO_PAGE
    with store.writer() as w:
        assert w.put_blobs([(ZERO_HASH, None)]) == 0
        assert w.put_blob(ZERO_PAGE) == ZERO_HASH


def test_identical_pages_are_stored_once_across_snapshots(store):
    shared = {i: page(("shared", i)) for i in range(100)}
    save(store, shared, "a")
    before = blob_count(store)
    # Same contents at other indices plus a duplicate inside the snapshot itself.
    moved = {i + 1000: p for i, p in shared.items()}
    moved[1500] = shared[0]
    save(store, moved, "b", state=b"cpu state")
    new = blob_count(store) - before
    assert new == 2                                       # the two new leaves, no pages
    assert stats(store).dedup_ratio > 1.5                 # leaves count as stored content


def test_changing_one_page_rewrites_one_leaf_and_shares_the_rest(store):
    a_pages = {i: page(("a", i)) for i in range(0, RAM_PAGES, 7)}
    a_id, a = save(store, a_pages, "a")
    before = blob_count(store)
    b_id, b = save(store, {600: page("changed")}, "b", base=a.ram, parent=a_id)
    assert blob_count(store) - before == 2                # one page + one leaf
    changed = [i for i, (x, y) in enumerate(zip(a.ram.leaves, b.ram.leaves)) if x != y]
    assert changed == [600 // LEAF_PAGES]
    assert store.page(b.ram, 600) == page("changed")
    assert store.page(b.ram, 7) == a_pages[7]
    assert store.snapshot("b").parent == a_id


def test_with_changes_only_reads_the_touched_leaves(store):
    _, a = save(store, {i: page(i) for i in range(0, RAM_PAGES, 5)})
    source = CountingSource(store)
    table, leaves = a.ram.with_changes({5: encode_blob(page("new"))[0]}, source)
    assert source.read == [a.ram.leaves[0]] and len(leaves) == 1
    assert table.leaves[1:] == a.ram.leaves[1:]


def test_diff_finds_changed_pages_and_skips_identical_leaves(store):
    a_id, a = save(store, {i: page(i) for i in range(0, RAM_PAGES, 3)})
    change = {10: page("x"), 11: page("y"), 1902: ZERO_PAGE}
    _, b = save(store, change, base=a.ram)
    source = CountingSource(store)
    assert diff(a.ram, b.ram, source).tolist() == [10, 11, 1902]
    assert set(source.read) == {a.ram.leaves[0], b.ram.leaves[0], a.ram.leaves[3], b.ram.leaves[3]}
    assert diff(a.ram, a.ram, source).tolist() == []
    assert diff(PageTable.empty(RAM_PAGES), a.ram, store).tolist() == list(range(0, RAM_PAGES, 3))


def test_snapshot_diff_covers_ram_disks_and_state(store):
    a_id, a = save(store, {1: page(1)}, disk={0: page("d0"), 5: page("d5")})
    _, b = save(store, {2: page(2)}, base=a.ram, disk={5: page("d5'")}, disk_base=a.disks[0].table,
                state=b"other state")
    d = snapshot_diff(store, a, b)
    assert d.ram.tolist() == [2] and d.disks[0].tolist() == [5]
    assert d.state and not d.config and not d.dtb


def test_page_table_lookup_items_and_a_partial_last_leaf(store):
    npages = LEAF_PAGES + 10
    pages = {0: page(0), LEAF_PAGES + 9: page("last")}
    _, m = save(store, pages, npages=npages)
    assert len(m.ram.leaves) == 2
    assert [i for i, _ in m.ram.items(store)] == [0, LEAF_PAGES + 9]
    assert m.ram.lookup_many(store, [0, 1, LEAF_PAGES + 9]) == [
        encode_blob(pages[0])[0], ZERO_HASH, encode_blob(pages[LEAF_PAGES + 9])[0]]
    with pytest.raises(IndexError):
        m.ram.lookup(store, npages)
    with pytest.raises(IndexError):
        m.ram.with_changes({npages: ZERO_HASH}, store)


def test_copy_pages_pads_the_tail_and_encode_pages_threads_agree():
    buffer = np.frombuffer(page(1) + page(2) + b"tail", dtype=np.uint8)
    rows = copy_pages(buffer, [1, 2])
    assert rows[0].tobytes() == page(2)
    assert rows[1].tobytes() == b"tail" + bytes(PAGE_SIZE - 4)
    many = np.array([np.frombuffer(page(i % 50) if i % 4 else ZERO_PAGE, dtype=np.uint8)
                     for i in range(600)])
    serial = encode_pages(many, range(600))
    with ThreadPoolExecutor(2) as pool:
        threaded = encode_pages(many, range(600), pool)
    assert serial == threaded
    changes, blobs = serial
    assert len(changes) == 600 and len(blobs) == 50      # each content once, zero pages none
    assert changes[0] == ZERO_HASH


# ---- manifests and refs --------------------------------------------------------------------

def test_manifest_round_trips_and_its_id_is_the_hash_of_its_encoding(store):
    sid, m = save(store, {3: page(3)}, "m", disk={1: page("disk")}, steps=12345)
    assert sid == hashlib.sha256(m.encode()).hexdigest() == m.id
    back = store.get_snapshot(sid)
    assert back == m and back.steps == 12345 and back.disks[0].size == 64 * PAGE_SIZE
    assert back.config == {"ram": RAM_PAGES * PAGE_SIZE, "isa": "rv64imac"}
    assert abs(back.created - m.created) < 1e-6


def test_parent_is_weak_and_may_name_a_deleted_snapshot(store):
    ghost = "ab" * 32
    sid, _ = save(store, {1: page(1)}, "child", parent=ghost)
    assert store.snapshot("child").parent == ghost


def test_refs_set_get_list_resolve_and_delete(store):
    a, _ = save(store, {1: page(1)}, "booted")
    b, _ = save(store, {2: page(2)})
    store.set_ref("second", b)
    assert store.refs() == {"booted": a, "second": b}
    assert store.resolve("booted") == a and store.resolve(b) == b and store.resolve(b[:6]) == b
    assert store.tag("booted", "copy") == a
    with pytest.raises(StoreError, match="already exists"):
        store.tag("second", "copy")
    store.tag("second", "copy", force=True)
    assert store.resolve("copy") == b
    assert store.delete_ref("copy") == b
    with pytest.raises(UnknownSnapshotError, match="copy"):
        store.resolve("copy")
    with pytest.raises(UnknownSnapshotError):
        store.delete_ref("copy")
    with pytest.raises(UnknownSnapshotError):
        store.set_ref("x", "cd" * 32)


@pytest.mark.parametrize("name", ["", "a/b", "tab\there", "nul\0", " padded", "-dash",
                                  "x" * 129, "line\u2028sep"])
def test_bad_ref_names_are_refused_with_a_reason(store, name):
    sid, _ = save(store, {1: page(1)})
    with pytest.raises(RefNameError, match="cannot name a snapshot"):
        store.set_ref(name, sid)


def test_unicode_and_punctuation_make_fine_names(store):
    sid, _ = save(store, {1: page(1)})
    for name in ("booted", "før-crash", "v1.2_rc:3", "x" * 128):
        store.set_ref(name, sid)
        assert store.resolve(name) == sid


def test_an_ambiguous_id_prefix_is_an_error(store):
    ids = [save(store, {1: page(i)})[0] for i in range(40)]
    firsts = {}
    for sid in ids:
        firsts.setdefault(sid[:1], []).append(sid)
    shared = next(group for group in firsts.values() if len(group) > 1)
    prefix = os.path.commonprefix(shared)
    with pytest.raises(UnknownSnapshotError):
        store.resolve(prefix[:3] if len(prefix) < 4 else prefix)


# ---- transactions ----------------------------------------------------------------------------

def test_a_writer_that_raises_leaves_nothing_behind(store):
    save(store, {1: page(1)}, "kept")
    before = (blob_count(store), store.refs())
    with pytest.raises(RuntimeError):
        with store.writer() as w:
            w.put_blob(page("lost"))
            sid = w.put_snapshot(Manifest({}, w.put_blob(b"s"), PageTable.empty(8)))
            w.set_ref("lost", sid)
            raise RuntimeError("capture failed")
    assert (blob_count(store), store.refs()) == before


def test_a_manifest_naming_an_absent_leaf_is_refused(store):
    with pytest.raises(StoreError, match="not in store"):
        with store.writer() as w:
            w.put_snapshot(Manifest({}, w.put_blob(b"s"), PageTable(8, [b"\x01" * 32])))


def test_building_on_a_snapshot_that_gc_removed_is_refused_not_half_saved(store):
    a_id, a = save(store, {i: page(i) for i in range(10)}, "a")
    store.get_leaf(a.ram.leaves[0])                     # in the leaf cache: must not matter
    store.delete_ref("a")
    gc(store)
    with pytest.raises(StoreError, match="no longer in store"):
        save(store, {3: page("x")}, "b", base=a.ram, parent=a_id)
    assert store.refs() == {} and verify(store).ok


def test_a_table_built_outside_the_writer_on_a_collected_parent_is_refused(store):
    # Capture may compute with_changes before its write transaction; gc runs in between.
    a_id, a = save(store, {i: page(i) for i in range(10)}, "a")
    table, leaves = a.ram.with_changes({3: encode_blob(page("x"))[0]}, store)
    store.delete_ref("a")
    gc(store)
    with pytest.raises(StoreError, match="save a full snapshot"):
        with store.writer() as w:
            w.put_blob(page("x"))
            w.put_blobs(leaves)
            w.put_snapshot(Manifest({}, w.put_blob(b"s"), table, parent=a_id))
    assert verify(store).ok


def test_nested_writers_in_one_thread_are_refused_not_deadlocked(store):
    with store.writer():
        with pytest.raises(StoreError, match="already open"):
            with store.writer():
                pass


def test_a_store_is_not_usable_after_fork(store):
    save(store, {1: page(1)}, "a")
    pid = os.fork()
    if pid == 0:
        try:
            store.refs()
            os._exit(1)
        except StoreError as e:
            os._exit(0 if "fork" in e.message else 2)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.resolve("a")                            # the parent's store still works


# ---- gc --------------------------------------------------------------------------------------

def test_gc_keeps_what_refs_reach_and_frees_the_rest(store):
    a_id, a = save(store, {i: page(("a", i)) for i in range(50)}, "a")
    b_id, b = save(store, {i: page(("b", i)) for i in range(40, 80)}, "b", base=a.ram, parent=a_id)
    unnamed, _ = save(store, {i: page(("u", i)) for i in range(10)})
    store.delete_ref("a")
    report = gc(store)
    assert report.snapshots_removed == 2 and report.snapshots_kept == 1
    with store.reader() as r:
        assert r.snapshot_ids() == [b_id]
        for index, key in b.ram.items(r):           # everything b reaches is readable
            r.get_blob(key)
    assert verify(store).ok
    # b kept a's pages 0..39 (shared) but not 40..49 (overwritten) nor the unnamed ones
    assert report.blobs_removed == 10 + 10 + 1 + 1   # a's 40..49, unnamed pages, leaf, leaf
    assert store.snapshot("b").parent == a_id       # a dangling parent is fine
    assert gc(store).blobs_removed == 0


def test_gc_rechecks_roots_committed_between_mark_and_sweep(store):
    old_id, old = save(store, {i: page(("old", i)) for i in range(20)}, "old")
    store.delete_ref("old")                          # old's pages are garbage now

    def commit_meanwhile():
        # A writer reuses old pages (present, so not rewritten) in a new snapshot.
        save(store, {i: page(("old", i)) for i in range(20)}, "new", state=b"new state")

    report = gc(store, after_mark=commit_meanwhile)
    assert report.late_roots == 1
    new = store.snapshot("new")
    assert [store.page(new.ram, i) for i in range(20)] == [page(("old", i)) for i in range(20)]
    assert verify(store).ok


def test_gc_root_providers_keep_unnamed_snapshots(store):
    sid, _ = save(store, {1: page(1)})
    report = gc(store, extra_providers=[lambda r: Roots(snapshots={sid})])
    assert report.snapshots_removed == 0
    assert gc(store).snapshots_removed == 1


# ---- verify ----------------------------------------------------------------------------------

def test_verify_finds_a_flipped_byte_in_a_stored_value(store, tmp_path):
    noise = page("noise", compressible=False)           # stored raw: findable in the file
    sid, _ = save(store, {5: noise, 6: page(6)}, "s")
    assert verify(store).ok
    store.close()
    assert flip_everywhere(tmp_path / "store" / "data.mdb", noise[1000:1100]) >= 1
    with Store(tmp_path / "store", readonly=True) as damaged:
        report = verify(damaged)
        key = encode_blob(noise)[0].hex()
        assert [p.kind for p in report.problems] == ["blob", "snapshot"]
        assert report.problems[0].name == key
        assert "does not match its hash" in report.problems[0].message
        assert sid == report.problems[1].name and key in report.problems[1].message
        with pytest.raises(StoreCorruptError, match=key):
            damaged.page(damaged.snapshot("s").ram, 5)
        assert damaged.page(damaged.snapshot("s").ram, 6) == page(6)   # the rest still reads


def test_verify_finds_a_damaged_manifest_and_a_dangling_ref(store, tmp_path):
    sid, m = save(store, {1: page(1)}, "s")
    with store.writer() as w:
        w._txn.put(b"ghost", bytes(32), db=store._refs)
    store.close()
    flip_everywhere(tmp_path / "store" / "data.mdb", m.encode()[60:120])
    with Store(tmp_path / "store", readonly=True) as damaged:
        problems = {(p.kind, p.name) for p in verify(damaged).problems}
        assert ("snapshot", sid) in problems and ("ref", "'ghost'") in problems
        with pytest.raises(StoreCorruptError, match=sid):
            damaged.snapshot("s")


# ---- format, opening ---------------------------------------------------------------------------

def _set_meta(path, key, value):
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(key, value, db=env.open_db(b"meta", txn=txn))
    env.close()


def test_a_store_of_a_newer_format_is_refused_with_what_to_do(tmp_path):
    Store(tmp_path / "s", create=True).close()
    _set_meta(tmp_path / "s", b"format", b"99")
    with pytest.raises(StoreFormatError) as e:
        Store(tmp_path / "s")
    assert str(tmp_path / "s") in e.value.message and "format 99" in e.value.message
    assert "--store" in e.value.message


def test_unknown_feature_flags_refuse_the_store_or_its_writes(tmp_path):
    Store(tmp_path / "s", create=True).close()
    _set_meta(tmp_path / "s", b"features.compat", b"shiny")
    Store(tmp_path / "s").close()                         # compat: ignored
    _set_meta(tmp_path / "s", b"features.ro_compat", b"events-v2")
    with Store(tmp_path / "s") as s:
        s.refs()                                          # reading is fine
        with pytest.raises(StoreFormatError, match="events-v2"):
            with s.writer():
                pass
    _set_meta(tmp_path / "s", b"features.incompat", b"blake3")
    with pytest.raises(StoreFormatError, match="blake3"):
        Store(tmp_path / "s")


def test_the_first_lz4_blob_marks_the_store_so_older_chronos_refuse_it(tmp_path, monkeypatch):
    """Chronos before the LZ4 codec read raw and zstd blobs only: a store holding
    an LZ4 blob carries the incompat flag "lz4", so they refuse it instead of
    calling its blobs damaged."""
    import chrono.store.store as store_module
    path = tmp_path / "s"
    with Store(path, create=True) as s:
        with s.writer() as w:
            w.put_blob(page("noise", compressible=False))         # stored raw
        assert s.meta()["features.incompat"] == ""
        for name in ("a", "b"):
            with s.writer() as w:
                w.put_blob(page(name))                             # stored as LZ4
        assert s.meta()["features.incompat"] == "lz4"              # once
    monkeypatch.setattr(store_module, "KNOWN_INCOMPAT", frozenset())   # an older chrono
    with pytest.raises(StoreFormatError, match="lz4"):
        Store(path)


def test_an_lmdb_environment_of_another_program_is_not_a_store(tmp_path):
    env = lmdb.open(str(tmp_path / "other"))
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    with pytest.raises(StoreFormatError, match="not a chrono store"):
        Store(tmp_path / "other", create=True)


def test_a_missing_store_is_a_clear_error_and_is_not_created_by_readers(tmp_path):
    with pytest.raises(StoreError, match="no chrono store"):
        Store(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        Store(tmp_path / "file", create=True)


# ---- compact, full stores ------------------------------------------------------------------------

def test_compact_preserves_everything_and_shrinks_the_file_after_gc(store):
    keep_id, keep = save(store, {i: page(("k", i)) for i in range(100)}, "keep")
    save(store, {i: page(("g", i), compressible=False) for i in range(300)}, "garbage")
    store.delete_ref("garbage")
    gc(store)
    before_file = store.file_size()
    before = {i: store.page(keep.ram, i) for i in range(100)}
    old, new = store.compact()
    assert old == before_file and new < old / 2
    assert store.file_size() == new
    assert verify(store).ok
    assert store.refs() == {"keep": keep_id}
    assert {i: store.page(store.snapshot("keep").ram, i) for i in range(100)} == before
    save(store, {1: page("after")}, "after")             # still writable
    assert not list(store.path.glob("compact-*"))


def test_compact_refuses_while_another_process_has_the_store_open(store):
    child = subprocess.Popen([sys.executable, "-c",
                              "import sys; from chrono.store import Store; s = Store(sys.argv[1]); "
                              "print('open', flush=True); sys.stdin.read()", str(store.path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "open\n"
        with pytest.raises(StoreError, match="open in another process"):
            store.compact()
    finally:
        child.communicate("")
    store.compact()


def test_a_full_map_gives_store_full_error_and_the_store_stays_valid(tmp_path):
    path = tmp_path / "small"
    committed = []
    with Store(path, create=True, map_size=1 << 20) as s:
        base = PageTable.empty(RAM_PAGES)
        with pytest.raises(StoreFullError) as e:
            for n in range(100):
                sid, m = save(s, {i: page((n, i), compressible=False) for i in range(16)},
                              f"s{n}", base=base)
                committed.append(sid)
                base = m.ram
        assert "is full" in e.value.message and "chrono store gc" in e.value.message
        assert str(path) in e.value.message
        assert 5 < len(committed) < 100
        assert verify(s).ok
        assert len(s.refs()) == len(committed)
    with Store(path, map_size=16 << 20) as s:             # a bigger map: writes go on
        save(s, {1: page("more")}, "more")
        assert verify(s).ok and s.resolve(f"s{len(committed) - 1}") == committed[-1]


def test_a_full_disk_gives_store_full_error_and_the_store_stays_valid(tmp_path):
    # A file size limit makes the write come up short, as a full disk does.
    script = f"""
import resource, signal, sys
sys.path.insert(0, {str(os.path.dirname(__file__))!r})
from chrono.errors import StoreFullError
from chrono.store import Store, PageTable
from storehelp import page, save
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
s = Store(sys.argv[1], create=True)
save(s, {{1: page(1)}}, "first")
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    for n in range(100):
        save(s, {{i: page((n, i), compressible=False) for i in range(64)}}, f"s{{n}}")
except StoreFullError as e:
    print(e.message)
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "is full" in proc.stdout and "chrono store gc" in proc.stdout
    with Store(tmp_path / "s") as s:
        assert verify(s).ok and "first" in s.refs()
