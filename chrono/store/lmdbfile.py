"""Check LMDB's data file before LMDB maps it.

LMDB maps data.mdb and trusts it: a page it reads past the end of a truncated
file is a SIGBUS, which kills the process without a word.  So the store reads
the file's two meta pages itself, with plain reads, and refuses a file that
is not a regular file, is empty, has no valid header, or is shorter than the
pages its newest header says are in use.

The meta page layout (LMDB 0.9, 64-bit; both metas are full pages, meta 0 at
offset 0 and meta 1 at offset page size):

    0    page header: pgno u64, pad u16, flags u16 (P_META = 0x08), lower u16, upper u16
    16   mm_magic u32 = 0xBEEFC0DE, mm_version u32 = 1
    24   mm_address u64, mm_mapsize u64
    40   mm_dbs[0] (the free-page DB; its first u32 is the page size), 48 bytes
    88   mm_dbs[1] (the main DB), 48 bytes; each: pad u32, flags u16, depth u16,
         branch/leaf/overflow page counts u64 x3, entries u64, root u64
    136  mm_last_pg u64 (highest page number in use), mm_txnid u64
"""
from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

_META_FORMAT = "<QHHHH II QQ 48s 48s QQ"
_META_SIZE = struct.calcsize(_META_FORMAT)
_DB_FORMAT = "<IHHQQQQQ"
_P_META = 0x08
_MAGIC = 0xBEEFC0DE
_VERSION = 1
_NO_ROOT = (1 << 64) - 1            # P_INVALID: an empty database has no root page


class DataFileProblem(Exception):
    """Why data.mdb cannot be used; the message completes "data.mdb ..."."""


@dataclass(frozen=True)
class Meta:
    page_size: int
    last_page: int
    txnid: int
    roots: tuple[int, int]          # free-page DB, main DB
    depths: tuple[int, int]

    @property
    def used_bytes(self) -> int:
        return (self.last_page + 1) * self.page_size


def _meta(data: bytes, index: int) -> Meta:
    """Parse one meta page; DataFileProblem if it is not one."""
    if len(data) < _META_SIZE:
        raise DataFileProblem(f"ends inside its LMDB header (meta page {index})")
    (_, _, flags, _, _, magic, version, _, _, free_db, main_db,
     last_page, txnid) = struct.unpack_from(_META_FORMAT, data)
    if not flags & _P_META or magic != _MAGIC:
        raise DataFileProblem(f"has no valid LMDB header (meta page {index} is damaged, "
                              f"or this is not an LMDB file)")
    if version != _VERSION:
        raise DataFileProblem(f"has LMDB data format {version}, not {_VERSION}")
    free, main = struct.unpack(_DB_FORMAT, free_db), struct.unpack(_DB_FORMAT, main_db)
    page_size = free[0]
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise DataFileProblem(f"has a damaged LMDB header (meta page {index} gives a page "
                              f"size of {page_size})")
    return Meta(page_size, last_page, txnid, (free[-1], main[-1]), (free[2], main[2]))


def check_data_file(path: Path, allow_empty: bool) -> Meta | None:
    """Check data.mdb at `path` (see the module docstring); returns its newest
    meta, or None for an empty file when `allow_empty` (LMDB initializes it).
    Raises DataFileProblem saying what is wrong, FileNotFoundError if absent."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise DataFileProblem("is a directory, not LMDB's data file")
    if not stat.S_ISREG(info.st_mode):
        raise DataFileProblem("is not a regular file")
    with open(path, "rb") as f:
        first = f.read(_META_SIZE)
        if not first and allow_empty:
            return None
        if not first:
            raise DataFileProblem("is empty (0 bytes)")
        meta0 = _meta(first, 0)
        f.seek(meta0.page_size)
        meta1 = _meta(f.read(_META_SIZE), 1)
        size = os.fstat(f.fileno()).st_size     # after the metas: a writer grows the file first
    newest = max(meta0, meta1, key=lambda m: m.txnid)
    if meta1.page_size != meta0.page_size:
        raise DataFileProblem("has a damaged LMDB header (its two meta pages disagree on "
                              "the page size)")
    if size < newest.used_bytes:
        raise DataFileProblem(f"is {size} bytes, shorter than the {newest.used_bytes} bytes "
                              f"its LMDB header says are in use (truncated, or its header is "
                              f"damaged)")
    for root in newest.roots:
        if root != _NO_ROOT and root > newest.last_page:
            raise DataFileProblem(f"has a damaged LMDB header (a root page {root} lies past "
                                  f"the last page in use, {newest.last_page})")
    return newest


# ---- the B-trees, checked page by page ------------------------------------------------------
#
# LMDB asserts (abort) or faults when a B-tree page is damaged: it checks
# nothing it reads.  walk() reads the trees of one meta with plain reads and
# checks what LMDB relies on, so that verify and gc can refuse a damaged file
# before LMDB walks it.  Page layouts (LMDB 0.9, 64-bit):
#
#   page header (16 bytes): pgno u64, pad u16, flags u16, then lower u16 and
#     upper u16 (tree pages) or a u32 page count (the first page of an overflow run)
#   tree pages: (lower - 16) / 2 u16 offsets of nodes, each node at offset >= upper:
#     lo u16, hi u16, flags u16, key size u16, key, then in a leaf the value (size
#     lo | hi << 16) or, with F_BIGDATA, the u64 number of its first overflow page;
#     in a branch lo | hi << 16 | flags << 32 is the child page number.
#   a leaf node with F_SUBDATA in the main tree holds a named database's 48-byte record.

_HEADER = struct.Struct("<QHHHH")
_NODE = struct.Struct("<HHHH")
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_LEAF2 = 0x01, 0x02, 0x04, 0x20
_F_BIGDATA, _F_SUBDATA, _F_DUPDATA = 0x01, 0x02, 0x04
_MAX_DEPTH = 32


def read_meta(path: Path, txnid: int) -> Meta | None:
    """The meta with transaction id `txnid` (what a read transaction of that id sees)."""
    with open(path, "rb") as f:
        meta0 = _meta(f.read(_META_SIZE), 0)
        f.seek(meta0.page_size)
        metas = (meta0, _meta(f.read(_META_SIZE), 1))
    return next((m for m in metas if m.txnid == txnid), None)


class _Walker:
    def __init__(self, f, meta: Meta, overflow_headers: bool, skip: frozenset[str]):
        self.f, self.meta, self.psize = f, meta, meta.page_size
        self.overflow_headers, self.skip = overflow_headers, skip
        self.seen: set[int] = set()

    def page(self, pgno: int, what: str) -> bytes:
        if pgno < 2 or pgno > self.meta.last_page:
            raise DataFileProblem(f"{what} names page {pgno}, outside the pages in use "
                                  f"(2..{self.meta.last_page})")
        if pgno in self.seen:
            raise DataFileProblem(f"{what} names page {pgno}, which another part of the "
                                  f"tree uses too")
        self.seen.add(pgno)
        self.f.seek(pgno * self.psize)
        data = self.f.read(self.psize)
        if len(data) < self.psize:
            raise DataFileProblem(f"page {pgno} lies past the end of the file")
        if _HEADER.unpack_from(data)[0] != pgno:
            raise DataFileProblem(f"page {pgno} is damaged (its header gives another page number)")
        return data

    def tree(self, root: int, depth: int, name: str, main: bool = False) -> None:
        if root == _NO_ROOT:
            return
        if not 1 <= depth <= _MAX_DEPTH:
            raise DataFileProblem(f"the record of database {name} is damaged (depth {depth})")
        self.node_page(root, depth, name, main)

    def node_page(self, pgno: int, depth: int, name: str, main: bool) -> None:
        data = self.page(pgno, f"database {name}")
        _, _, flags, lower, upper = _HEADER.unpack_from(data)
        leaf = depth == 1
        want = _P_LEAF if leaf else _P_BRANCH
        where = f"page {pgno} of database {name}"
        if flags & (_P_BRANCH | _P_LEAF | _P_OVERFLOW | _P_LEAF2) != want:
            raise DataFileProblem(f"{where} is damaged (its type is wrong for its place in the tree)")
        if not (_HEADER.size <= lower <= upper <= self.psize) or (lower - _HEADER.size) % 2:
            raise DataFileProblem(f"{where} is damaged (its free-space bounds are impossible)")
        count = (lower - _HEADER.size) // 2
        for i in range(count):
            (offset,) = struct.unpack_from("<H", data, _HEADER.size + 2 * i)
            if offset < upper or offset + _NODE.size > self.psize:
                raise DataFileProblem(f"{where} is damaged (entry {i} lies outside the page)")
            lo, hi, nflags, ksize = _NODE.unpack_from(data, offset)
            body = offset + _NODE.size + ksize
            if body > self.psize:
                raise DataFileProblem(f"{where} is damaged (the key of entry {i} overruns it)")
            if not leaf:
                self.node_page(lo | hi << 16 | nflags << 32, depth - 1, name, main)
                continue
            size = lo | hi << 16
            if nflags & _F_DUPDATA:
                raise DataFileProblem(f"{where} is damaged (entry {i} has flags chrono never writes)")
            if nflags & _F_BIGDATA:
                if body + 8 > self.psize:
                    raise DataFileProblem(f"{where} is damaged (entry {i} overruns it)")
                (first,) = struct.unpack_from("<Q", data, body)
                self.overflow(first, size, f"{where} entry {i}")
            elif body + size > self.psize:
                raise DataFileProblem(f"{where} is damaged (the value of entry {i} overruns it)")
            if nflags & _F_SUBDATA:
                if not main or nflags & _F_BIGDATA or size != 48:
                    raise DataFileProblem(f"{where} is damaged (entry {i} is not a database record)")
                key = data[offset + _NODE.size:body].decode("ascii", "replace")
                record = struct.unpack_from(_DB_FORMAT, data, body)
                if key not in self.skip:
                    self.tree(record[-1], record[2], key)

    def overflow(self, first: int, size: int, what: str) -> None:
        pages = (_HEADER.size - 1 + size) // self.psize + 1
        if first + pages - 1 > self.meta.last_page:
            raise DataFileProblem(f"{what} names overflow pages {first}..{first + pages - 1}, "
                                  f"past the last page in use ({self.meta.last_page})")
        if not self.overflow_headers:
            # LMDB takes a value's size from its node, not from the run's
            # header: a run inside the file is all a read needs.
            if first < 2:
                raise DataFileProblem(f"{what} names overflow page {first}, a meta page")
            self.seen.update(range(first, first + pages))
            return
        data = self.page(first, what)
        _, _, flags, _, _ = _HEADER.unpack_from(data)
        (count,) = struct.unpack_from("<I", data, 12)
        if not flags & _P_OVERFLOW or count < pages:
            raise DataFileProblem(f"overflow page {first} ({what}) is damaged")
        self.seen.update(range(first + 1, first + pages))


def walk(path: Path, meta: Meta, overflow_headers: bool = True,
         skip: frozenset[str] = frozenset()) -> None:
    """Check every page of the trees of `meta` (see above); raises DataFileProblem.

    The quick form for every open: overflow_headers=False checks that runs of
    overflow pages lie inside the file without reading them (LMDB takes a
    value's size from its node), and the databases named in `skip` are left
    out: the blobs are read only by key, and LMDB's lookups check page numbers
    and page types themselves; its cursors, which walk a whole database, do
    not, and whatever walks the blobs (verify, gc) walks them all first."""
    with open(path, "rb") as f:
        walker = _Walker(f, meta, overflow_headers, skip)
        walker.tree(meta.roots[1], meta.depths[1], "main", main=True)
        walker.tree(meta.roots[0], meta.depths[0], "free-page list")
