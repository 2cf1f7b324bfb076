"""Pack files: the blobs of big captures, appended to plain files beside
data.mdb; the blobs database holds a 17-byte pointer for each.

Why: a first savevm stores some 15,000 page blobs of 0.1-4 KiB.  Put in
LMDB's B-tree one by one, each is an insert at a random key that moves
kilobytes around leaf pages or takes overflow pages of its own, and the
commit writes 40 MB of pages for 27 MB of blobs (most of it memory LMDB has
just allocated): together over half of the savevm.  Appended to a pack, a
chunk of 256 values is one write from the encoder's own buffer, and the
B-tree holds only pointers.

    DIR/packs/NNNNNNNN.pack   stored values (codec byte + payload), back to back
    blobs  key -> 0x03, pack number (u32), offset (u64), length (u32), little-endian
    meta   "pack.NNNNNNNN" -> "SIZE LIVE": committed size, bytes still named (ASCII)

Atomicity: a writer appends only inside its write transaction (LMDB admits
one writer at a time, across processes) and only past the committed size.
Before the transaction commits, the pack is fdatasync'ed and its new size
goes into meta in that same transaction, so a pointer is never durable
before the bytes it names.  A writer killed before its commit leaves bytes
no pointer names; the next writer cuts them off.  Readers use pread, never
mmap: a truncated or damaged pack is an error naming it, not a SIGBUS.

Space: gc deletes pointers and counts their bytes as dead; `store compact`,
which has the store to itself, rewrites the packs that have dead bytes.
"""
from __future__ import annotations

import errno
import os
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from chrono.errors import StoreCorruptError, StoreError, StoreFullError

if TYPE_CHECKING:
    from chrono.store.store import Writer

POINTER = 3                     # a pointer's first byte (blobs.py's codecs are 0-2)
FEATURE = "packs"               # the store's incompat flag once a pack exists
ROLL_SIZE = 1 << 30             # a pack this big is not appended to any more
MAX_VALUE = 1 << 16             # packs hold page values (~4 KiB): a longer pointer is damaged
_POINTER = struct.Struct("<BIQI")
_META_PREFIX = b"pack."


def is_pointer(value) -> bool:
    return len(value) == _POINTER.size and value[0] == POINTER


def unpack_pointer(value) -> tuple[int, int, int]:
    """(pack, offset, length) of a pointer value."""
    _, pack, offset, length = _POINTER.unpack(value)
    return pack, offset, length


def meta_key(pack: int) -> bytes:
    return _META_PREFIX + b"%08d" % pack


def _sizes(size: int, live: int) -> bytes:
    return b"%d %d" % (size, max(0, live))


def pack_path(store_dir: Path, pack: int) -> Path:
    return store_dir / "packs" / f"{pack:08d}.pack"


def pack_sizes(txn, meta_db) -> dict[int, tuple[int, int]]:
    """{pack: (committed size, live bytes)} as transaction `txn` sees them."""
    out = {}
    cursor = txn.cursor(db=meta_db)
    if cursor.set_range(_META_PREFIX):
        for key, value in cursor:
            key = bytes(key)
            if not key.startswith(_META_PREFIX):
                break
            try:
                size, live = (int(n) for n in bytes(value).split())
                out[int(key[len(_META_PREFIX):])] = (size, live)
            except ValueError:
                raise StoreCorruptError(f"store record {key.decode('ascii', 'replace')} is damaged "
                                        f"({bytes(value)[:40]!r}); run `chrono store verify`") from None
    return out


class PackReader:
    """A store's read side of its packs: one file descriptor per pack, opened
    on first use and kept (a pack compact removes stays readable by a process
    that already has it open)."""

    def __init__(self, store_dir: Path):
        self._dir = store_dir
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def read(self, pointer, where: str) -> bytes:
        """The stored value a pointer names."""
        pack, offset, length = unpack_pointer(pointer)
        if length > MAX_VALUE:          # never allocate what a flipped bit asks for
            raise StoreCorruptError(f"a blob pointer into pack {pack_path(self._dir, pack)} of "
                                    f"store {where} is damaged (length {length}); run `chrono "
                                    f"store verify` to see what it affects")
        try:
            data = os.pread(self._fd(pack), length, offset)
        except OSError as e:
            raise StoreCorruptError(f"pack {pack_path(self._dir, pack)} of store {where} cannot "
                                    f"be read ({e.strerror}); run `chrono store verify`") from None
        if len(data) != length:
            raise StoreCorruptError(f"pack {pack_path(self._dir, pack)} of store {where} is "
                                    f"shorter than its blobs need (truncated?); run `chrono "
                                    f"store verify` to see what it affects")
        return data

    def _fd(self, pack: int) -> int:
        fd = self._fds.get(pack)
        if fd is None:
            with self._lock:
                fd = self._fds.get(pack)
                if fd is None:
                    fd = self._fds[pack] = os.open(pack_path(self._dir, pack),
                                                   os.O_RDONLY | os.O_CLOEXEC)
        return fd

    def forget(self, pack: int) -> None:
        fd = self._fds.pop(pack, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for pack in list(self._fds):
            self.forget(pack)


class PackAppender:
    """Appends stored values to the store's current pack for one write
    transaction (`fresh`: to a new pack).  Made and finished on the
    transaction's thread (they read and write it); append() may be called
    from any thread, several at once, and touches only the file."""

    def __init__(self, writer: Writer, fresh: bool = False):
        self._writer = writer
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._new_file = False
        self._added = 0
        self._dead: dict[int, int] = {}
        self._syncing: tuple[threading.Thread, int] | None = None
        self._sync_error: OSError | None = None
        sizes = pack_sizes(writer._txn, writer.store._meta)
        pack = max(sizes, default=0)
        end, live = sizes.get(pack, (0, 0))
        if end >= ROLL_SIZE or (fresh and pack in sizes):
            pack, end, live = pack + 1, 0, 0
        self._pack, self._end, self._live = pack, end, live

    def append(self, data, ends: list[int]) -> list[bytes]:
        """Write `data` (values back to back; value j ends at ends[j]) and
        return a pointer for each value."""
        size = ends[-1] if ends else 0
        with self._lock:
            if self._fd is None:
                self._open()
            offset, pack = self._end, self._pack
            self._end += size
            self._added += size
        view = memoryview(data)[:size]
        done = 0
        try:
            while done < size:
                done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as e:
            raise _write_error(self._writer.store.path, pack, e) from None
        start = 0
        pointers = []
        for end in ends:
            pointers.append(_POINTER.pack(POINTER, pack, offset + start, end - start))
            start = end
        return pointers

    def sync_soon(self) -> None:
        """Start making what was appended so far durable, in a thread, while
        the caller builds the rest of its transaction (finish() waits)."""
        if self._fd is not None and self._syncing is None:
            thread = threading.Thread(target=self._sync, name="chrono-pack-sync", daemon=True)
            thread.start()
            self._syncing = (thread, self._end)

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            self._sync_error = e

    @property
    def written(self) -> int:
        return self._added

    def dead(self, pointer) -> None:
        """A pointer was deleted: its bytes no longer count as live."""
        pack, _, length = unpack_pointer(pointer)
        self._dead[pack] = self._dead.get(pack, 0) + length

    def finish(self) -> None:
        """Make the appended bytes durable and record the packs' sizes in
        the transaction; called just before it commits."""
        w = self._writer
        sizes = pack_sizes(w._txn, w.store._meta) if self._dead else {}
        for pack, gone in self._dead.items():
            if pack in sizes and not (self._fd is not None and pack == self._pack):
                committed, live = sizes[pack]
                w._txn.put(meta_key(pack), _sizes(committed, live - gone),
                           db=w.store._meta)
        if self._fd is None:
            return
        w.require_feature(FEATURE)
        synced = 0
        if self._syncing is not None:
            thread, synced = self._syncing
            thread.join()
        try:
            if self._sync_error is not None:
                raise self._sync_error
            if synced != self._end:         # appended since (or never synced): sync here
                os.fdatasync(self._fd)
        except OSError as e:
            raise _write_error(w.store.path, self._pack, e) from None
        if self._new_file:
            fsync_path(pack_path(w.store.path, self._pack).parent)
        live = self._live + self._added - self._dead.get(self._pack, 0)
        w._txn.put(meta_key(self._pack), _sizes(self._end, live), db=w.store._meta)

    def close(self) -> None:
        if self._syncing is not None:
            self._syncing[0].join()         # never close the file under its sync
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> None:
        store_dir, end = self._writer.store.path, self._end
        path = pack_path(store_dir, self._pack)
        try:
            if not path.parent.exists():
                path.parent.mkdir(exist_ok=True)
                fsync_path(store_dir)
            self._new_file = not path.exists()
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if os.fstat(self._fd).st_size > end:     # a killed writer's uncommitted bytes
                os.ftruncate(self._fd, end)
        except OSError as e:
            raise _write_error(store_dir, self._pack, e) from None


def _write_error(store_dir: Path, pack: int, e: OSError) -> StoreError:
    where = f"store {store_dir}: cannot write pack {pack_path(store_dir, pack)} ({e.strerror})"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFullError(f"{where}; free space there, or remove snapshots you do not need "
                              f"(`chrono snap rm NAME`, then `chrono store gc`)")
    return StoreError(f"{where}; nothing was saved")


def fsync_path(path: Path) -> None:
    """fsync a file or directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite(store) -> int:
    """Copy the live blobs of every pack with dead bytes into a new pack and
    remove the old ones; returns the bytes given back.  Only for a store no
    other process has open (Store.compact holds it exclusively)."""
    with store.reader() as r:
        sizes = pack_sizes(r._txn, store._meta)
    orphans = _orphans(store.path, sizes)
    stale = {p for p, (size, live) in sizes.items() if live < size}
    if not stale:
        return orphans
    with store.writer() as w:
        appender = w.packs(fresh=True)
        moving = [(bytes(key), bytes(value)) for key, value in w._txn.cursor(db=store._blobs)
                  if is_pointer(value) and unpack_pointer(value)[0] in stale]
        for start in range(0, len(moving), 256):
            part = moving[start:start + 256]
            values = [store._packs.read(pointer, str(store.path)) for _, pointer in part]
            ends, total = [], 0
            for value in values:
                total += len(value)
                ends.append(total)
            pointers = appender.append(b"".join(values), ends)
            w._txn.cursor(db=store._blobs).putmulti(
                [(key, pointer) for (key, _), pointer in zip(part, pointers)])
        for pack in stale:
            w._txn.delete(meta_key(pack), db=store._meta)
        written = appender.written
    for pack in stale:
        store._packs.forget(pack)
        pack_path(store.path, pack).unlink(missing_ok=True)
    return orphans + sum(sizes[p][0] for p in stale) - written


def _orphans(store_dir: Path, sizes: dict[int, tuple[int, int]]) -> int:
    """Remove pack files no meta record names (a compact or a first append
    killed before its commit); returns their bytes."""
    freed = 0
    for path in (store_dir / "packs").glob("*.pack"):
        if path.stem.isdigit() and int(path.stem) not in sizes:
            freed += path.stat().st_size
            path.unlink()
    return freed


def total_size(store_dir: Path, packs: Iterable[int]) -> int:
    """Bytes of the named packs on disk (a missing one counts 0)."""
    total = 0
    for pack in packs:
        try:
            total += pack_path(store_dir, pack).stat().st_size
        except OSError:
            pass
    return total
