"""The capture's encoder (chrono/store/encoder.py): the core flags zero pages
as it copies them, each content is compressed and stored once, and a big
capture spread over the thread pool stores exactly what one encoded in the
calling thread stores, restoring to the same RAM."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import chrono.store.capture as capture
import chrono.store.encoder as encoder
from chrono.core.launch import GuestSpec, launch
from chrono.core.board import RAM_BASE
from chrono.core.machine import PAGE_SIZE
from chrono.store import Store, stats
from chrono.store.verify import verify
from chrono.store.capture import Snapshots, guest_from_snapshot
from snapshot_driver import EPOCH

PAGES = 3000            # over encoder.INLINE_PAGES: a first savevm of this goes to the pool
FIRST = 4096            # page number of the first one (16 MiB into RAM: the demo leaves it alone)
KINDS = 5


def content(i: int) -> bytes:
    """Page i of the pattern: zero, one content shared by many, a single
    non-zero byte at the very end, incompressible, compressible text."""
    kind = i % KINDS
    if kind == 0:
        return bytes(PAGE_SIZE)
    if kind == 1:
        return b"shared page " * (PAGE_SIZE // 12) + b"end!"
    if kind == 2:
        return bytes(PAGE_SIZE - 1) + bytes([i % 255 + 1])
    if kind == 3:
        return b"".join(hashlib.sha256(b"%d/%d" % (i, k)).digest() for k in range(PAGE_SIZE // 32))
    return (b"page %08d: the quick brown fox jumps over the lazy dog. " % i * 80)[:PAGE_SIZE]


def patterned_guest():
    guest = launch(GuestSpec(rtc_epoch_ns=EPOCH))
    m = guest.machine
    m.write_phys(RAM_BASE + FIRST * PAGE_SIZE, b"".join(content(i) for i in range(PAGES)))
    return guest


def test_the_core_flags_zero_pages_as_it_copies_them():
    m = patterned_guest().machine
    pages = np.arange(FIRST, FIRST + PAGES)
    mask = np.zeros(len(m.ram_dirty), dtype=np.uint8)
    mask[pages] = 1
    m.capture_begin(mask, None)
    out = np.empty((PAGES, PAGE_SIZE), dtype=np.uint8)
    nonzero = np.full(PAGES, 7, dtype=np.uint8)
    m.capture_read_into(False, pages, out, nonzero)
    assert nonzero.tolist() == [int(i % KINDS != 0) for i in range(PAGES)]
    assert all(out[i].tobytes() == content(i) for i in range(PAGES))
    assert m.capture_pending() == 0


class CountingPages:
    """chrono._pages's functions, noting the pages each call hashes or compresses."""

    def __init__(self, lib, hashed: list, compressed: list):
        self._lib, self._hashed, self._compressed = lib, hashed, compressed

    def pages_hash(self, pages, n, nonzero, keys):
        flags = bytes(ffi_buffer(nonzero, n))
        self._hashed += [_page(pages, i) for i in range(n) if flags[i]]
        return self._lib.pages_hash(pages, n, nonzero, keys)

    def pages_values(self, pages, which, k, *rest):
        self._compressed += [_page(pages, ffi_cast_u32(which)[j]) for j in range(k)]
        return self._lib.pages_values(pages, which, k, *rest)

    def __getattr__(self, name):
        return getattr(self._lib, name)


def ffi_buffer(pointer, n):
    return encoder.native()[0].buffer(pointer, n)


def ffi_cast_u32(pointer):
    return encoder.native()[0].cast("uint32_t *", pointer)


def _page(pages, i):
    return bytes(ffi_buffer(pages, (i + 1) * PAGE_SIZE)[i * PAGE_SIZE:])


@pytest.mark.parametrize("native", [True, False], ids=["chunk per call", "page per call"])
def test_zero_pages_are_never_hashed_and_each_content_is_compressed_once(tmp_path, monkeypatch,
                                                                         native):
    guest = patterned_guest()
    m = guest.machine
    dirty = m.ram.reshape(-1, PAGE_SIZE)[np.flatnonzero(m.ram_dirty)]
    nonzero = [row.tobytes() for row in dirty if row.any()]
    hashed, compressed = [], []

    class CountingHashlib:
        @staticmethod
        def sha256(data):
            hashed.append(bytes(data))
            return hashlib.sha256(data)

    def counting_compress(data):
        compressed.append(bytes(data))
        return compress(data)

    compress, real = encoder.compress_blob, encoder.native()
    monkeypatch.setattr(encoder, "hashlib", CountingHashlib)
    monkeypatch.setattr(encoder, "compress_blob", counting_compress)
    counting = (real[0], CountingPages(real[1], hashed, compressed))
    monkeypatch.setattr(encoder, "native", (lambda: counting) if native else (lambda: None))
    with Store.open(tmp_path / "store", create=True) as store:
        snaps = Snapshots(store, guest)
        try:
            snaps.save("patterned")
        finally:
            snaps.close()
        assert sorted(hashed) == sorted(nonzero)              # no zero page among them
        assert sorted(compressed) == sorted(set(nonzero))     # each content once
        with store.reader() as r:
            assert all(r.has_blob(hashlib.sha256(page).digest()) for page in set(nonzero))


def test_a_capture_over_the_pool_stores_what_an_inline_one_stores(tmp_path, monkeypatch):
    """The same snapshot (tables, blob keys) whichever way it is encoded: over
    the pool or inline, a chunk per C call (chrono._pages) or a page per call."""
    assert encoder.native_problem() is None, encoder.native_problem()
    saved = {}
    for how in ("pool", "inline", "pool, page by page"):
        monkeypatch.setattr(capture, "INLINE_PAGES", 10**9 if how == "inline" else 2048)
        monkeypatch.setattr(encoder, "native", encoder.native if how != "pool, page by page"
                            else lambda: None)
        guest = patterned_guest()
        ram = guest.machine.ram.copy()
        with Store.open(tmp_path / how, create=True) as store:
            snaps = Snapshots(store, guest)
            try:
                snaps.save("patterned")
                assert snaps.times.pages >= PAGES
            finally:
                snaps.close()
            with store.reader() as r:
                keys = {bytes(k) for k, _ in r._txn.cursor(db=store._blobs)}
            saved[how] = (store.snapshot("patterned").ram, keys)
            restored, restored_snaps = guest_from_snapshot(store, "patterned")
            try:
                restored.machine.materialize()
                assert np.array_equal(restored.machine.ram, ram)
            finally:
                restored_snaps.close()
            assert verify(store).ok
    assert saved["pool"] == saved["inline"] == saved["pool, page by page"]


@pytest.mark.parametrize("bad", ["short", "dtype"])
def test_capture_read_into_refuses_buffers_that_do_not_fit(bad):
    from chrono.errors import UsageError
    m = patterned_guest().machine
    out = np.empty((1 if bad == "short" else 2, PAGE_SIZE), dtype=np.uint8 if bad == "short" else np.int16)
    with pytest.raises(UsageError):
        m.capture_read_into(False, np.array([FIRST, FIRST + 1]), out)


@pytest.mark.parametrize("pool", [True, False], ids=["pool", "inline"])
def test_pages_the_store_holds_are_not_compressed_again(tmp_path, monkeypatch, pool):
    """A first savevm of a second, identical machine into the same store (a
    guest booted again): every page is hashed, none compressed or stored again."""
    monkeypatch.setattr(capture, "INLINE_PAGES", 2048 if pool else 10**9)
    with Store.open(tmp_path / "store", create=True) as store:
        for name in ("first", "again"):
            snaps = Snapshots(store, patterned_guest())
            try:
                snaps.save(name)
            finally:
                snaps.close()
            if name == "first":
                blobs = stats(store).blobs
                monkeypatch.setattr(encoder, "_values", lambda b, f, wanted, lib: pytest.fail(
                    f"{len(wanted)} stored pages compressed again"))
        assert stats(store).blobs - blobs <= 2          # at most a CPU/device state and a leaf that differ
        assert store.snapshot("again").ram == store.snapshot("first").ram
