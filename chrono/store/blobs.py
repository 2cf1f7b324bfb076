"""Content-addressed blobs: how a page (or any byte string) becomes a key and a value.

    key   = SHA-256 of the uncompressed content (32 bytes)
    value = codec byte + payload
            0x00 RAW   payload is the content itself
            0x01 ZSTD  payload is one zstd frame with its content size in the
                       frame header (written by chrono before 2026-12-03; read)
            0x02 LZ4   payload is the content size (4 bytes, little-endian)
                       and one LZ4 block: what chrono writes now

LZ4 compresses a 4 KiB page about twice as fast as zstd's fastest level and
inflates it nearly three times as fast, for about a third more bytes: a first
snapshot is tens of thousands of pages, so that is the trade that makes it
quick, and a fast boot inflates every page it touches.

A blob is stored raw when compression does not save at least 1/32 of its
size, so incompressible pages cost no decompression on the way back.

The all-zero 4 KiB page is never stored: its key is the reserved ZERO_HASH
(32 zero bytes, which is not the SHA-256 of anything we know of), and reading
ZERO_HASH gives 4096 zero bytes.  The sentinel stands for exactly that one
content; any other all-zero byte string (of another length) has its real hash.

Everything here is pure and thread-safe: capture threads call encode_blob()
and restore threads call decode_blob() beside the guest (hashlib and lz4
release the GIL for buffers of this size).  Reads are always verified: the
decoded content must hash to its key.
"""
from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import lz4.block

from chrono.errors import StoreCorruptError

if TYPE_CHECKING:
    from concurrent.futures import Executor

    import numpy as np

PAGE_SIZE = 4096
HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
ZERO_PAGE = bytes(PAGE_SIZE)
_ZERO_PAGE_SHA256 = hashlib.sha256(ZERO_PAGE).digest()

CODEC_RAW = 0
CODEC_ZSTD = 1
CODEC_LZ4 = 2
# Largest blob encode_blob accepts and decode_blob will inflate: a bound on the
# memory a damaged or hostile header can make us allocate.
MAX_BLOB_SIZE = 256 << 20

_local = threading.local()


def _zstd_decompressor():
    """This thread's zstd decompressor (zstandard's are not thread-safe); zstd
    is only for blobs older chronos wrote, so it is imported when one is met."""
    dctx = getattr(_local, "zstd", None)
    if dctx is None:
        import zstandard
        dctx = _local.zstd = zstandard.ZstdDecompressor()
    return dctx


def blob_key(data) -> bytes:
    """The key of `data` (bytes-like), with the zero-page sentinel applied."""
    digest = hashlib.sha256(data).digest()
    return ZERO_HASH if digest == _ZERO_PAGE_SHA256 else digest


def encode_blob(data) -> tuple[bytes, bytes | None]:
    """(key, value) for `data` (bytes, memoryview, or a contiguous uint8 numpy row).

    Returns (ZERO_HASH, None) for an all-zero 4 KiB page: nothing to store.
    Pure: safe to run in many threads at once.
    """
    key = blob_key(data)
    return key, (None if key == ZERO_HASH else compress_blob(data))


def compress_blob(data) -> bytes:
    """The stored value of `data`: codec byte + LZ4 payload, or raw when LZ4
    saves less than 1/32.  Pure: safe to run in many threads at once."""
    view = memoryview(data)
    if view.nbytes > MAX_BLOB_SIZE:
        raise ValueError(f"blob of {view.nbytes} bytes exceeds the {MAX_BLOB_SIZE} byte limit")
    return stored_value(view, lz4.block.compress(view, store_size=True))


def stored_value(data, packed) -> bytes:
    """The stored value of `data` given `packed`, its LZ4 payload (size header
    and block): the payload, or `data` raw when it saves less than 1/32."""
    view = memoryview(data)
    if len(packed) < view.nbytes - view.nbytes // 32:
        return b"\x02" + packed
    return raw_blob(view)


def raw_blob(data) -> bytes:
    """The stored value of `data` without compression (codec RAW)."""
    return b"\x00" + memoryview(data).tobytes()


def decode_blob(key: bytes, value, where: str = "") -> bytes:
    """The content of a stored value, verified against its key.

    Raises StoreCorruptError naming the blob (and the store, `where`) when the
    codec is unknown, the payload does not decode, or the content's hash
    differs from the key.
    """
    if key == ZERO_HASH:
        return ZERO_PAGE
    view = memoryview(value)
    if view.nbytes == 0:
        raise _damaged(key, where, "empty value")
    codec = view[0]
    payload = view[1:]
    if codec == CODEC_RAW:
        data = payload.tobytes()
    elif codec in (CODEC_LZ4, CODEC_ZSTD):
        size = content_size(view)
        if size is None or size > MAX_BLOB_SIZE:
            raise _damaged(key, where, "its header gives no plausible size")
        data = _inflate(key, where, codec, payload, size)
    else:
        raise _damaged(key, where, f"unknown codec {codec}")
    if hashlib.sha256(data).digest() != key:
        raise _damaged(key, where, "content does not match its hash")
    return data


def _inflate(key: bytes, where: str, codec: int, payload: memoryview, size: int) -> bytes:
    """The content of a compressed payload declaring `size` bytes."""
    if codec == CODEC_LZ4:
        try:
            data = lz4.block.decompress(payload)
        except lz4.block.LZ4BlockError as e:
            raise _damaged(key, where, f"lz4: {e}") from None
    else:
        import zstandard
        try:
            data = _zstd_decompressor().decompress(payload)
        except zstandard.ZstdError as e:
            raise _damaged(key, where, f"zstd: {e}") from None
    if len(data) != size:
        raise _damaged(key, where, f"it inflates to {len(data)} bytes, not the {size} it declares")
    return data


def content_size(value) -> int | None:
    """The content size a stored value declares in its header (no
    decompression); None when it declares none (an unknown codec, a damaged
    header)."""
    view = memoryview(value)
    if view.nbytes == 0:
        return None
    codec = view[0]
    if codec == CODEC_RAW:
        return view.nbytes - 1
    if codec == CODEC_LZ4:
        return int.from_bytes(view[1:5], "little") if view.nbytes >= 5 else None
    if codec == CODEC_ZSTD:
        import zstandard
        try:
            size = zstandard.frame_content_size(view[1:])
        except zstandard.ZstdError:
            return None
        return size if size >= 0 else None
    return None


def stored_size(value) -> int:
    """Uncompressed size of a stored value, read from its header (0 when it
    declares none)."""
    return content_size(value) or 0


def _damaged(key: bytes, where: str, why: str) -> StoreCorruptError:
    place = f" in store {where}" if where else ""
    error = StoreCorruptError(f"blob {key.hex()}{place} is damaged ({why}); "
                              f"run `chrono store verify` to see what it affects")
    error.reason = why
    return error


# ---- helpers for capture -------------------------------------------------------

def copy_pages(buffer: np.ndarray, indices) -> np.ndarray:
    """Copy 4 KiB pages out of a uint8 buffer (RAM or a disk): an array (len(indices), 4096).

    This is the only step of a capture that must happen while the guest is
    paused.  A buffer whose size is not a multiple of 4 KiB (a disk) has its
    last page zero-padded: page tables always hold full 4 KiB pages.
    """
    import numpy as np      # here, not at the top: reading blobs (a fast boot) needs none
    idx = np.asarray(indices, dtype=np.int64)
    if len(buffer) % PAGE_SIZE == 0:            # RAM, most disks: one gather
        return buffer.reshape(-1, PAGE_SIZE)[idx]
    out = np.zeros((len(idx), PAGE_SIZE), dtype=np.uint8)
    full = len(buffer) // PAGE_SIZE
    whole = idx < full
    if whole.any():
        out[whole] = buffer[:full * PAGE_SIZE].reshape(-1, PAGE_SIZE)[idx[whole]]
    for row in np.flatnonzero(~whole):
        start = int(idx[row]) * PAGE_SIZE
        if start >= len(buffer):
            raise IndexError(f"page {int(idx[row])} is beyond the end of a {len(buffer)}-byte buffer")
        tail = buffer[start:]
        out[row, :len(tail)] = tail
    return out


def in_chunks(fn: Callable[[Any], Any], items: Sequence, pool: Executor | None = None
              ) -> Callable[[], list]:
    """Start fn(item) for every item, in chunks spread over `pool`'s workers (or
    here, later, without one).  Returns a function that waits for the results
    and gives them in order: the caller can do other work in between."""
    if pool is None or len(items) < 2:
        return lambda: [fn(item) for item in items]
    # Small batches (an idle guest's few hundred pages) split evenly over the
    # workers; big ones in chunks large enough to keep the overhead low.
    workers = getattr(pool, "_max_workers", 1)
    chunk = min(256, max(8, -(-len(items) // (2 * workers))))
    futures = [pool.submit(lambda part: [fn(item) for item in part], items[i:i + chunk])
               for i in range(0, len(items), chunk)]
    return lambda: [result for future in futures for result in future.result()]


def hash_pages(pages: Sequence, pool: Executor | None = None) -> list[bytes]:
    """Keys of page buffers (ZERO_HASH for all-zero pages), hashed in `pool`."""
    return in_chunks(blob_key, pages, pool)()


def encode_pages(pages: Sequence, indices: Iterable[int], pool: Executor | None = None
                 ) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Hash and compress pages: ({page_index: key}, [(key, value) to store]).

    `pages` is a sequence of page buffers (e.g. the rows copy_pages returned),
    `indices` their page numbers.  With `pool` (a ThreadPoolExecutor), the
    work is spread over its threads.  Zero pages map to ZERO_HASH and are not
    in the list; duplicate contents appear in it once and are compressed once.
    """
    indices = [int(i) for i in indices]
    if len(indices) != len(pages):
        raise ValueError(f"{len(pages)} pages but {len(indices)} indices")
    keys = hash_pages(pages, pool)
    distinct: dict[bytes, Any] = {}
    for key, page in zip(keys, pages):
        if key != ZERO_HASH:
            distinct.setdefault(key, page)
    values = in_chunks(compress_blob, list(distinct.values()), pool)()
    return dict(zip(indices, keys)), list(zip(distinct, values))
