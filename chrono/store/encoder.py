"""Turning a capture into blobs: the captured pages read out of the core chunk
by chunk, zero pages skipped, the rest hashed, and only contents the store
lacks compressed.

A first snapshot of a booted guest is tens of thousands of pages, so this is
where a savevm spends its time.  The work is split into chunks of CHUNK pages
spread over a thread pool; each chunk is read into buffers its thread keeps
(no fresh memory per capture: on a VM first-touch page faults cost more than
the copy), and the core flags its zero pages as it copies them, so they are
never hashed.  A chunk is hashed in one call and its missing pages are
made into stored values, back to back, in another (chrono._pages: libcrypto's SHA-256 and liblz4, the
GIL released once per call): with a call per page, two threads spent their
time handing the GIL to each other, and two workers hashed slower than one.
Without chrono._pages's libraries, hashlib and lz4.block do the same work a
page at a time; the keys are the same either way.

A capture big enough for the pool writes its values to a pack (each pool
thread appends its chunk's values with one write: chrono.store.packs) and
puts only pointers into LMDB; a small one puts its values into LMDB itself.

The encoder works inside the snapshot's write transaction: a blob is "in the
store" as that transaction sees it.  Pool threads check that with read
transactions of their own, begun after the write transaction (LMDB admits one
writer, so nothing commits in between and both see the same blobs); a
content met twice in one capture is compressed once (`_claimed`).
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import threading
from typing import TYPE_CHECKING, Callable

from chrono.errors import ChronoError
from chrono.store.blobs import HASH_SIZE, PAGE_SIZE, ZERO_HASH, compress_blob

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    import numpy as np

    from chrono.store.store import Reader, Store, Writer

CHUNK = 256                 # pages per task: a 1 MiB buffer, warm in the cache
INLINE_PAGES = 2048         # a capture of fewer units is encoded without the pool

# read(units, out, nonzero): the captured content of `units` into `out`, a
# byte per unit into `nonzero` (Machine.capture_read_into for RAM or the disk).
Read = Callable[["np.ndarray", "np.ndarray", "np.ndarray"], None]

_local = threading.local()


@functools.cache
def native():
    """chrono._pages (a chunk of pages hashed or compressed per call, the GIL
    released once) if it loaded its libraries, else None: then pages are
    hashed and compressed one call each, which keeps a second thread mostly
    waiting for the GIL."""
    try:
        from chrono._pages import ffi, lib
    except ImportError:
        return None
    return (ffi, lib) if lib.pages_init(ffi.NULL, 0) == 0 else None


def native_problem() -> str | None:
    """Why the native page encoder is not used (None: it is)."""
    try:
        from chrono._pages import ffi, lib
    except ImportError as e:
        return f"chrono._pages did not load ({e})"
    why = ffi.new("char[200]")
    return None if lib.pages_init(why, len(why)) == 0 else ffi.string(why).decode()


class _Buffers:
    """One thread's buffers for a chunk of up to CHUNK pages (kept for reuse)."""

    def __init__(self, bound: int):
        import numpy as np
        self.pages = np.empty((CHUNK, PAGE_SIZE), dtype=np.uint8)
        self.nonzero = np.empty(CHUNK, dtype=np.uint8)
        self.keys = np.empty(CHUNK * HASH_SIZE, dtype=np.uint8)
        self.which = np.empty(CHUNK, dtype=np.uint32)
        self.ends = np.empty(CHUNK, dtype=np.uint32)
        self.arena = np.empty(CHUNK * (1 + bound), dtype=np.uint8)
        self.bound = bound


def _buffers() -> _Buffers:
    bufs = getattr(_local, "buffers", None)
    if bufs is None:
        lib = native()
        bufs = _local.buffers = _Buffers(lib[1].pages_bound() if lib else 0)
    return bufs


class Part:
    """The keys of one run of units (RAM pages or disk blocks), in order."""

    def __init__(self, chunks: list):
        self._chunks = chunks           # futures (or done results) of (keys, new blobs)

    def keys(self) -> list[bytes]:
        return [key for chunk in self._chunks for key in _result(chunk)[0]]


class CaptureEncoder:
    """Encodes a capture's units for one write transaction `writer`."""

    def __init__(self, store: Store, writer: Writer, pool: Executor | None):
        self._store, self._writer, self._pool = store, writer, pool
        # A capture big enough for the pool goes to a pack (chrono.store.packs),
        # a small one into LMDB itself: one fsync at commit instead of two.
        self._packs = writer.packs() if pool is not None else None
        self._claimed: set[bytes] = set()
        self._claim = threading.Lock()
        self._chunks: list = []

    def add(self, read: Read, units: np.ndarray) -> Part:
        """Start encoding `units` (page or block numbers) read with `read`:
        over the pool, or here and now without one."""
        chunks = []
        for start in range(0, len(units), CHUNK):
            part = units[start:start + CHUNK]
            if self._pool is None:
                chunks.append(self._encode(read, part))
            else:
                chunks.append(self._pool.submit(self._encode_reading, read, part))
        self._chunks += chunks
        return Part(chunks)

    def put(self) -> int:
        """Store the chunks' new blobs (or, for a pack, their pointers), each
        chunk as it is done (in order); returns the bytes added.  If one
        fails, the others are waited for (they read the capture) before its
        error is raised.  A chunk's values are let go once stored: on a VM,
        the page faults of fresh memory cost more than the copy."""
        added = 0
        try:
            for chunk in self._chunks:
                _, new, size = _result(chunk)
                self._writer.put_blobs(new)
                added += size
                new.clear()
            if self._packs is not None:
                self._packs.sync_soon()         # beside the tables, before the commit
            return added
        except BaseException:
            for chunk in self._chunks:
                if not isinstance(chunk, tuple) and not chunk.cancel():
                    chunk.exception()
            raise

    def _encode_reading(self, read: Read, units: np.ndarray):
        with self._store.reader() as r:
            return self._encode(read, units, r)

    def _encode(self, read: Read, units: np.ndarray, r: Reader | None = None):
        """(keys, [(key, value or its pointer in a pack) the store lacks],
        bytes of those values) of one chunk (at most CHUNK units); `r` sees
        the store as the writer does (None: the writer)."""
        import numpy as np
        n = len(units)
        b = _buffers()
        read(units, b.pages, b.nonzero)
        present = np.flatnonzero(b.nonzero[:n]).tolist()
        flat = memoryview(b.pages).cast("B")
        lib = native()
        keys = [ZERO_HASH] * n
        if lib:
            ffi, c = lib
            c.pages_hash(ffi.from_buffer("uint8_t[]", b.pages), n,
                         ffi.from_buffer("uint8_t[]", b.nonzero), ffi.from_buffer("uint8_t[]", b.keys))
            digests = b.keys[:n * HASH_SIZE].tobytes()
            for i in present:
                keys[i] = digests[i * HASH_SIZE:(i + 1) * HASH_SIZE]
        else:
            for i in present:
                keys[i] = hashlib.sha256(flat[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]).digest()
        stored = (r or self._writer).stored_among([keys[i] for i in present])
        wanted = []
        with self._claim:               # a content met twice is compressed once
            for i in present:
                key = keys[i]
                if key not in stored and key not in self._claimed:
                    self._claimed.add(key)
                    wanted.append(i)
        if not wanted:
            return keys, [], 0
        data, ends = _values(b, flat, wanted, lib)
        wanted_keys = [keys[i] for i in wanted]
        if self._packs is not None:         # written here, in the pool thread
            return keys, list(zip(wanted_keys, self._packs.append(data, ends))), ends[-1]
        view = memoryview(bytes(data[:ends[-1]]))
        return keys, [(key, view[start:end]) for key, start, end
                      in zip(wanted_keys, [0, *ends[:-1]], ends)], ends[-1]


def _values(b: _Buffers, flat: memoryview, wanted: list[int], lib):
    """(data, ends): the stored values of the chunk's pages `wanted` back to
    back in `data`, value j ending at ends[j].  With chrono._pages they are
    made in one call, in this thread's arena."""
    if not lib:
        values = [compress_blob(flat[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]) for i in wanted]
        return b"".join(values), list(itertools.accumulate(map(len, values)))
    ffi, c = lib
    k = len(wanted)
    b.which[:k] = wanted
    if c.pages_values(ffi.from_buffer("uint8_t[]", b.pages), ffi.from_buffer("uint32_t[]", b.which),
                      k, ffi.from_buffer("uint8_t[]", b.arena), ffi.from_buffer("uint32_t[]", b.ends)) != 0:
        raise ChronoError("LZ4 could not compress a captured page")
    return b.arena, b.ends[:k].tolist()


def _result(chunk):
    return chunk if isinstance(chunk, tuple) else chunk.result()
