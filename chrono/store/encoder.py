"""Turning a capture into blobs: the captured pages read out of the core chunk
by chunk, zero pages skipped, the rest hashed, and only contents the store
lacks compressed.

A first snapshot of a booted guest is tens of thousands of pages, so this is
where a savevm spends its time.  The work is split into chunks of CHUNK pages
spread over a thread pool; each chunk is read into a buffer its thread keeps
(no fresh memory per capture: on a VM first-touch page faults cost more than
the copy), and the core flags its zero pages as it copies them, so they are
never hashed.  hashlib and zstandard release the GIL, so the threads really
run side by side.

The encoder works inside the snapshot's write transaction: a blob is "in the
store" as that transaction sees it.  Pool threads check that with read
transactions of their own, begun after the write transaction (LMDB admits one
writer, so nothing commits in between and both see the same blobs); a
content met twice in one capture is compressed once (`_claimed`).
"""
from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Callable

from chrono.store.blobs import PAGE_SIZE, ZERO_HASH, compress_blob

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    import numpy as np

    from chrono.store.store import Store, Writer

CHUNK = 256                 # pages per task: a 1 MiB buffer, warm in the cache
INLINE_PAGES = 2048         # fewer pages than this: encoded in the calling thread

# read(units, out, nonzero): the captured content of `units` into `out`, a
# byte per unit into `nonzero` (Machine.capture_read_into for RAM or the disk).
Read = Callable[["np.ndarray", "np.ndarray", "np.ndarray"], None]

_local = threading.local()


def _buffers(n: int):
    """This thread's page buffer and flags, for up to n pages (kept for reuse)."""
    import numpy as np
    bufs = getattr(_local, "buffers", None)
    if bufs is None or len(bufs[1]) < n:
        bufs = _local.buffers = (np.empty((max(n, CHUNK), PAGE_SIZE), dtype=np.uint8),
                                 np.empty(max(n, CHUNK), dtype=np.uint8))
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
        self._claimed: dict[bytes, object] = {}
        self._chunks: list = []

    def add(self, read: Read, units: np.ndarray) -> Part:
        """Start encoding `units` (page or block numbers) read with `read`."""
        inline = self._pool is None or len(units) < INLINE_PAGES
        chunks = []
        for start in range(0, len(units), CHUNK):
            part = units[start:start + CHUNK]
            if inline:
                chunks.append(self._encode(read, part, self._writer.has_blob))
            else:
                chunks.append(self._pool.submit(self._encode_reading, read, part))
        self._chunks += chunks
        return Part(chunks)

    def put(self) -> int:
        """Wait for every chunk, then store their new blobs; returns the bytes
        added.  If one fails, the others are waited for (they read the
        capture) before its error is raised.

        One sorted put of everything, not one per chunk as it comes: LMDB
        then fills each B-tree page in order, which took a third of the time
        of per-chunk puts for a first snapshot (and CPU is what the pool
        is short of)."""
        try:
            new = [item for chunk in self._chunks for item in _result(chunk)[1]]
            self._writer.put_blobs(new)
            return sum(len(value) for _, value in new)
        except BaseException:
            for chunk in self._chunks:
                if not isinstance(chunk, tuple) and not chunk.cancel():
                    chunk.exception()
            raise
        return added

    def _encode_reading(self, read: Read, units: np.ndarray):
        with self._store.reader() as r:
            return self._encode(read, units, r.has_blob)

    def _encode(self, read: Read, units: np.ndarray, known: Callable[[bytes], bool]):
        """(keys, [(key, value) the store lacks]) of one chunk."""
        import numpy as np
        n = len(units)
        out, nonzero = _buffers(n)
        read(units, out, nonzero)
        keys = [ZERO_HASH] * n
        new = []
        claimed = self._claimed
        flat = memoryview(out).cast("B")
        for i in np.flatnonzero(nonzero[:n]).tolist():
            page = flat[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
            key = keys[i] = hashlib.sha256(page).digest()
            if not known(key):
                mine = object()     # setdefault is atomic: one claimant per content
                if claimed.setdefault(key, mine) is mine:
                    new.append((key, compress_blob(page)))
        return keys, new


def _result(chunk):
    return chunk if isinstance(chunk, tuple) else chunk.result()
