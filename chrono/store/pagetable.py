"""Page tables: which blob holds each 4 KiB page of RAM or of a disk.

A table is a two-level tree.  A leaf lists the keys of 512 consecutive pages
(512 x 32 = 16 KiB, covering 2 MiB) and is itself a blob, content-addressed
like any page; a leaf whose pages are all zero is not stored and appears as
ZERO_HASH.  The root -- the page count and the list of leaf keys -- lives in
the snapshot manifest.  The last leaf of a table is padded with ZERO_HASH
entries past the page count.

A snapshot after its parent rewrites only the leaves its changed pages fall
in; every other leaf key is copied from the parent, so unchanged leaves (and
the pages under them) are shared, and comparing two related tables skips
every leaf whose key is equal without reading it.

Reading leaves needs a *source*: any object with get_leaf(key) -> bytes (a
Store, a Reader or a Writer).  Leaves are immutable (content-addressed), so
sources may cache them.

What a fast boot uses (decode, lookup, items, stored_ranges) needs no numpy;
the whole-table work below imports it where it runs.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Iterator, Mapping, Protocol

from chrono.store.blobs import HASH_SIZE, PAGE_SIZE, ZERO_HASH, blob_key, encode_blob, raw_blob

if TYPE_CHECKING:
    import numpy as np

LEAF_PAGES = 512
LEAF_BYTES = LEAF_PAGES * HASH_SIZE
_ROOT_HEAD = struct.Struct("<QI")      # page count, leaf count
_KEY = struct.Struct(f"{HASH_SIZE}s")


class LeafSource(Protocol):
    def get_leaf(self, key: bytes) -> bytes: ...

    # Optional: sources that cache leaves may also offer
    # remember_leaf(key, leaf) to be handed the leaves with_changes builds.


def pages_for(size: int) -> int:
    """Number of 4 KiB pages that cover `size` bytes."""
    return -(-size // PAGE_SIZE)


def _rows(key: bytes, source: LeafSource | None) -> np.ndarray:
    """A leaf as a read-only (512, 32) uint8 array (zeros for ZERO_HASH)."""
    import numpy as np
    if key == ZERO_HASH:
        return np.zeros((LEAF_PAGES, HASH_SIZE), dtype=np.uint8)
    if source is None:
        raise ValueError("reading a page-table leaf needs a source (a Store, Reader or Writer)")
    return np.frombuffer(source.get_leaf(key), dtype=np.uint8).reshape(LEAF_PAGES, HASH_SIZE)


def _encode_leaf(rows: np.ndarray, zero_entries: int) -> tuple[bytes, bytes]:
    """(key, value) of a leaf with `zero_entries` ZERO_HASH entries.  Page keys
    are SHA-256 digests, which LZ4 cannot shrink: only the zero entries
    compress, so a leaf with fewer than 1/32 of them is stored raw without trying."""
    if zero_entries * 32 < LEAF_PAGES:
        return blob_key(rows), raw_blob(rows)
    return encode_blob(rows)              # 16 KiB: never the zero-page sentinel


class PageTable:
    """An immutable page table root: `npages` and the tuple of leaf keys."""

    __slots__ = ("npages", "leaves")

    def __init__(self, npages: int, leaves):
        leaves = tuple(bytes(k) for k in leaves)
        if npages < 0 or len(leaves) != -(-npages // LEAF_PAGES):
            raise ValueError(f"a table of {npages} pages has {-(-npages // LEAF_PAGES)} leaves, "
                             f"not {len(leaves)}")
        if any(len(k) != HASH_SIZE for k in leaves):
            raise ValueError("leaf keys must be 32 bytes")
        self.npages = npages
        self.leaves = leaves

    @classmethod
    def empty(cls, npages: int) -> "PageTable":
        """A table of `npages` zero pages (no leaves stored)."""
        return cls(npages, (ZERO_HASH,) * (-(-npages // LEAF_PAGES)))

    def __eq__(self, other):
        return isinstance(other, PageTable) and (self.npages, self.leaves) == (other.npages, other.leaves)

    def __hash__(self):
        return hash((self.npages, self.leaves))

    def __repr__(self):
        stored = sum(k != ZERO_HASH for k in self.leaves)
        return f"PageTable(npages={self.npages}, leaves={len(self.leaves)}, stored_leaves={stored})"

    @property
    def leaf_keys(self) -> set[bytes]:
        """Keys of the stored (non-zero) leaves."""
        return {k for k in self.leaves if k != ZERO_HASH}

    # ---- building ------------------------------------------------------------------
    def with_changes(self, changes: Mapping[int, bytes], source: LeafSource | None = None
                     ) -> tuple["PageTable", list[tuple[bytes, bytes]]]:
        """(new table, [(key, value) of new leaves]) with `changes` {page index: key} applied.

        Only the leaves the changed pages fall in are read (from `source`) and
        rewritten; the others are shared.  A leaf that ends up all zero becomes
        ZERO_HASH and is not returned.  The new leaves must be put in the same
        write transaction as the manifest that refers to them.
        """
        if not changes:
            return self, []
        import numpy as np
        index = np.fromiter(changes.keys(), dtype=np.int64, count=len(changes))
        packed = b"".join(changes.values())
        if len(packed) != HASH_SIZE * len(index):
            raise ValueError("page keys must be 32 bytes")
        if index.min() < 0 or index.max() >= self.npages:
            bad = int(index.min()) if index.min() < 0 else int(index.max())
            raise IndexError(f"page {bad} is outside a table of {self.npages} pages")
        keys = np.frombuffer(packed, dtype=np.uint8).reshape(-1, HASH_SIZE)
        order = np.argsort(index, kind="stable")
        index, keys = index[order], keys[order]
        leaf_of = index // LEAF_PAGES
        cuts = np.flatnonzero(np.diff(leaf_of)) + 1
        leaves = list(self.leaves)
        new_blobs = []
        remember = getattr(source, "remember_leaf", None)
        for start, end in zip([0, *cuts], [*cuts, len(index)]):
            li = int(leaf_of[start])
            old = leaves[li]
            rows = _rows(old, source).copy()
            rows[index[start:end] - li * LEAF_PAGES] = keys[start:end]
            used = int(np.count_nonzero(rows.view(np.uint64).any(axis=1)))
            if not used:
                leaves[li] = ZERO_HASH
                continue
            key, value = _encode_leaf(rows, LEAF_PAGES - used)
            if key != old:
                leaves[li] = key
                new_blobs.append((key, value))
                if remember is not None:        # the next capture starts from this leaf
                    remember(key, rows.tobytes())
        return PageTable(self.npages, leaves), new_blobs

    # ---- reading -------------------------------------------------------------------
    def lookup(self, source: LeafSource, index: int) -> bytes:
        """Key of page `index` (ZERO_HASH for a zero page)."""
        if not 0 <= index < self.npages:
            raise IndexError(f"page {index} is outside a table of {self.npages} pages")
        leaf = self.leaves[index // LEAF_PAGES]
        if leaf == ZERO_HASH:
            return ZERO_HASH
        offset = (index % LEAF_PAGES) * HASH_SIZE
        return bytes(source.get_leaf(leaf)[offset:offset + HASH_SIZE])

    def lookup_many(self, source: LeafSource, indices) -> list[bytes]:
        """Keys of several pages (each leaf read once)."""
        leaves: dict[int, bytes] = {}
        keys = []
        for i in indices:
            i = int(i)
            if not 0 <= i < self.npages:
                raise IndexError(f"page {i} is outside a table of {self.npages} pages")
            li, offset = divmod(i, LEAF_PAGES)
            if self.leaves[li] == ZERO_HASH:
                keys.append(ZERO_HASH)
                continue
            leaf = leaves.get(li)
            if leaf is None:
                leaf = leaves[li] = source.get_leaf(self.leaves[li])
            keys.append(bytes(leaf[offset * HASH_SIZE:(offset + 1) * HASH_SIZE]))
        return keys

    def items(self, source: LeafSource) -> Iterator[tuple[int, bytes]]:
        """(index, key) of every non-zero page, in index order."""
        for li, leaf in enumerate(self.leaves):
            if leaf == ZERO_HASH:
                continue
            first = li * LEAF_PAGES
            for offset, (key,) in enumerate(_KEY.iter_unpack(source.get_leaf(leaf))):
                if key != ZERO_HASH:
                    yield first + offset, key

    def stored_ranges(self) -> list[range]:
        """The runs of pages under stored leaves (no leaf is read): every
        non-zero page is in one, and every page outside them is zero."""
        runs: list[range] = []
        for li, leaf in enumerate(self.leaves):
            if leaf == ZERO_HASH:
                continue
            start, stop = li * LEAF_PAGES, min((li + 1) * LEAF_PAGES, self.npages)
            if runs and runs[-1].stop == start:
                runs[-1] = range(runs[-1].start, stop)
            else:
                runs.append(range(start, stop))
        return runs

    def nonzero_pages(self, source: LeafSource) -> np.ndarray:
        """Indices of the non-zero pages (int64 array)."""
        import numpy as np
        parts = [np.flatnonzero(_rows(leaf, source).any(axis=1)) + li * LEAF_PAGES
                 for li, leaf in enumerate(self.leaves) if leaf != ZERO_HASH]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    # ---- serialization (inside manifests) -----------------------------------------
    def encode(self) -> bytes:
        return _ROOT_HEAD.pack(self.npages, len(self.leaves)) + b"".join(self.leaves)

    @classmethod
    def decode(cls, buf: bytes, offset: int = 0) -> tuple["PageTable", int]:
        """(table, offset after it); raises ValueError on malformed input."""
        if offset + _ROOT_HEAD.size > len(buf):
            raise ValueError("truncated page table")
        npages, nleaves = _ROOT_HEAD.unpack_from(buf, offset)
        offset += _ROOT_HEAD.size
        end = offset + nleaves * HASH_SIZE
        if end > len(buf):
            raise ValueError("truncated page table")
        leaves = [buf[o:o + HASH_SIZE] for o in range(offset, end, HASH_SIZE)]
        return cls(npages, leaves), end


def diff(a: PageTable, b: PageTable, source: LeafSource) -> np.ndarray:
    """Sorted indices of the pages whose content differs between `a` and `b`.

    Leaves with equal keys are skipped unread.  Pages past the end of the
    shorter table count as zero.
    """
    import numpy as np
    parts = []
    for li in range(max(len(a.leaves), len(b.leaves))):
        ka = a.leaves[li] if li < len(a.leaves) else ZERO_HASH
        kb = b.leaves[li] if li < len(b.leaves) else ZERO_HASH
        if ka == kb:
            continue
        differ = (_rows(ka, source) != _rows(kb, source)).any(axis=1)
        parts.append(np.flatnonzero(differ) + li * LEAF_PAGES)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts).astype(np.int64)
