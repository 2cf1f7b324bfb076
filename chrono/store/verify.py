"""`verify`: check everything in a store, and `stats`: what it holds.

verify reads every blob (decoding it and checking its hash and codec), every
manifest (its id, its format, that every blob it names -- state, device tree,
leaves, and the pages under the leaves -- is present and sound) and every ref
(a valid name pointing at a present snapshot).  It reports each problem with
the name of the damaged object and what depends on it; it changes nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lmdb

from chrono.errors import ChronoError, StoreCorruptError
from chrono.store.blobs import (CODEC_LZ4, CODEC_RAW, CODEC_ZSTD, HASH_SIZE, PAGE_SIZE, ZERO_HASH,
                                decode_blob, stored_size)
from chrono.store import packs
from chrono.store.pagetable import LEAF_PAGES
from chrono.store.store import LEASE_PREFIX, Store, check_ref_name

Progress = Callable[[str, int, int], None]     # (phase, done, total)
_BATCH = 512


@dataclass(frozen=True)
class Problem:
    kind: str           # "store", "blob", "snapshot", "ref" or "recording"
    name: str           # what is damaged: a key, an id, a ref name
    message: str

    def __str__(self):
        return f"{self.kind} {self.name}: {self.message}"


@dataclass
class VerifyReport:
    path: Path
    blobs: int = 0
    snapshots: int = 0
    refs: int = 0
    pages: int = 0              # page references checked (non-zero pages over all snapshots)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_blob(item: tuple[bytes, bytes], deref: Callable[[bytes], bytes]) -> str | None:
    key, value = item
    if len(key) != HASH_SIZE or key == ZERO_HASH:
        return f"a key of {len(key)} bytes is not a blob key" if len(key) != HASH_SIZE \
            else "the zero-page sentinel must never be stored"
    try:
        decode_blob(key, deref(value))
    except StoreCorruptError as e:
        return getattr(e, "reason", e.message)
    return None


def verify(store: Store, progress: Progress | None = None) -> VerifyReport:
    """Check every blob, manifest and ref; see the module docstring."""
    # Imported here: every chrono.store import loads this module (the package
    # names verify), and a fast boot must not pay for numpy or threads.
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    say = progress or (lambda phase, done, total: None)
    report = VerifyReport(store.path)
    problems = report.problems
    present: set[bytes] = set()
    bad: dict[bytes, str] = {}
    with store.reader() as r, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        txn = r._txn
        try:
            store.check_trees(r)        # LMDB would crash on a damaged B-tree page
        except StoreCorruptError as e:
            problems.append(Problem("store", str(store.path), e.message))
            return report
        total = txn.stat(store._blobs)["entries"]

        # 1. every blob decodes and matches its key
        workers = os.cpu_count() or 1
        step = -(-_BATCH // workers)

        def flush(batch):
            # One task per worker and batch: a future per blob would cost more than the check.
            parts = pool.map(lambda i: [_check_blob(item, r.deref) for item in batch[i:i + step]],
                             range(0, len(batch), step))
            for (key, _), why in zip(batch, (why for part in parts for why in part)):
                if why is None:
                    present.add(key)
                else:
                    bad[key] = why
                    problems.append(Problem("blob", key.hex(), why))

        try:
            batch = []
            for key, value in txn.cursor(db=store._blobs):
                batch.append((bytes(key), bytes(value)))
                if len(batch) == _BATCH:
                    flush(batch)
                    report.blobs += len(batch)
                    batch = []
                    say("blobs", report.blobs, total)
            flush(batch)
            report.blobs += len(batch)
            say("blobs", report.blobs, total)
        except lmdb.Error as e:
            problems.append(Problem("store", str(store.path), f"cannot read the blobs ({e})"))
        try:
            for pack, (size, _) in packs.pack_sizes(txn, store._meta).items():
                path = packs.pack_path(store.path, pack)
                have = path.stat().st_size if path.exists() else None
                if have is None or have < size:
                    problems.append(Problem("pack", str(path), "is missing" if have is None else
                                            f"has {have} bytes, fewer than the {size} committed"))
        except StoreCorruptError as e:
            problems.append(Problem("store", str(store.path), e.message))

        # 2. every manifest, and everything it names
        leaf_info: dict[bytes, tuple[list[str], int]] = {}    # findings, non-zero pages

        def blob_state(key: bytes) -> str | None:
            if key == ZERO_HASH or key in present:
                return None
            return "is damaged" if key in bad else "is missing"

        def check_leaf(leaf: bytes) -> tuple[list[str], int]:
            if leaf in leaf_info:
                return leaf_info[leaf]
            findings, pages = [], 0
            try:
                data = r.get_leaf(leaf)
            except ChronoError as e:
                findings.append(f"cannot be read ({e.message})")
            else:
                rows = np.frombuffer(data, dtype=np.uint8).reshape(LEAF_PAGES, HASH_SIZE)
                nonzero = np.flatnonzero(rows.any(axis=1))
                pages = len(nonzero)
                for offset in nonzero:
                    key = rows[offset].tobytes()
                    state = blob_state(key)
                    if state:
                        findings.append(f"page {int(offset)} of the leaf (blob {key.hex()}) {state}")
            leaf_info[leaf] = findings, pages
            return findings, pages

        try:
            nsnap = txn.stat(store._snapshots)["entries"]
            for key, value in txn.cursor(db=store._snapshots):
                key = bytes(key)
                sid = key.hex()
                report.snapshots += 1
                say("snapshots", report.snapshots, nsnap)
                if len(key) != HASH_SIZE:
                    problems.append(Problem("snapshot", sid, "its key is not a snapshot id"))
                    continue
                try:
                    manifest = r._decode_manifest(key, value)
                except ChronoError as e:
                    problems.append(Problem("snapshot", sid, e.message))
                    continue
                named = [("CPU/device state", manifest.state)]
                if manifest.dtb:
                    named.append(("device tree", manifest.dtb))
                for what, blob in named:
                    state = blob_state(blob)
                    if state:
                        problems.append(Problem("snapshot", sid, f"its {what} (blob {blob.hex()}) {state}"))
                for table_name, table in manifest.tables():
                    for li, leaf in enumerate(table.leaves):
                        if leaf == ZERO_HASH:
                            continue
                        where = f"its {table_name} page-table leaf {li} (blob {leaf.hex()})"
                        state = blob_state(leaf)
                        if state:
                            problems.append(Problem("snapshot", sid, f"{where} {state}"))
                            continue
                        findings, pages = check_leaf(leaf)
                        report.pages += pages
                        for finding in findings:
                            problems.append(Problem("snapshot", sid, f"{where}: {finding}"))
        except lmdb.Error as e:
            problems.append(Problem("store", str(store.path), f"cannot read the snapshots ({e})"))

        # 3. every ref
        try:
            for key, value in txn.cursor(db=store._refs):
                name = bytes(key).decode("utf-8", "replace")
                report.refs += not name.startswith(LEASE_PREFIX)     # leases are not names
                try:
                    # A lease (a running guest's hold on its snapshot) has a
                    # name no user ref can have; a dead one is dropped by gc.
                    if not name.startswith(LEASE_PREFIX):
                        check_ref_name(name)
                except ChronoError as e:
                    problems.append(Problem("ref", repr(name), e.message))
                if len(value) != HASH_SIZE:
                    problems.append(Problem("ref", repr(name), "its value is not a snapshot id"))
                elif txn.get(bytes(value), db=store._snapshots) is None:
                    problems.append(Problem("ref", repr(name), f"points at snapshot "
                                            f"{bytes(value).hex()}, which is not in the store"))
        except lmdb.Error as e:
            problems.append(Problem("store", str(store.path), f"cannot read the refs ({e})"))
    return report


# ---- stats ---------------------------------------------------------------------------

@dataclass
class StoreStats:
    path: Path
    file_bytes: int             # size of data.mdb
    used_bytes: int             # pages LMDB has in use (the rest is free space in the file)
    map_size: int
    pack_bytes: int = 0         # pack files on disk (chrono.store.packs)
    pack_live_bytes: int = 0    # of which blobs still name (the rest: compact gives it back)
    snapshots: int = 0
    refs: int = 0
    blobs: int = 0
    raw_blobs: int = 0
    zstd_blobs: int = 0
    lz4_blobs: int = 0
    stored_bytes: int = 0       # blob values as stored (compressed)
    content_bytes: int = 0      # blob contents (uncompressed), each unique blob once
    logical_bytes: int = 0      # what the snapshots represent: non-zero pages, state, dtb
    logical_pages: int = 0      # non-zero pages over all snapshots (counted per snapshot)

    @property
    def compression_ratio(self) -> float:
        return self.content_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.content_bytes if self.content_bytes else 1.0


def stats(store: Store) -> StoreStats:
    """Counts and sizes of everything in the store (reads leaves, not pages)."""
    import numpy as np      # as in verify()
    info = store.info()
    s = StoreStats(store.path, info["file_bytes"], info["used_bytes"], info["map_size"],
                   info["pack_bytes"], info["pack_live_bytes"])
    with store.reader() as r:
        store.check_trees(r)            # the cursor below walks every blob page
        txn = r._txn
        for _, value in txn.cursor(db=store._blobs):
            value = r.deref(value)
            s.blobs += 1
            s.stored_bytes += len(value)
            s.content_bytes += stored_size(value)
            if len(value) and value[0] == CODEC_LZ4:
                s.lz4_blobs += 1
            elif len(value) and value[0] == CODEC_ZSTD:
                s.zstd_blobs += 1
            elif len(value) and value[0] == CODEC_RAW:
                s.raw_blobs += 1
        s.refs = txn.stat(store._refs)["entries"]
        counts: dict[bytes, int] = {}
        for _, manifest in r.snapshots():
            s.snapshots += 1
            for blob in (manifest.state, manifest.dtb):
                if blob:
                    raw = r.get_raw(blob)
                    s.logical_bytes += stored_size(raw) if raw is not None else 0
            for _, table in manifest.tables():
                for leaf in table.leaves:
                    if leaf == ZERO_HASH:
                        continue
                    if leaf not in counts:
                        data = r.get_leaf(leaf)
                        counts[leaf] = int(np.frombuffer(data, np.uint8)
                                           .reshape(LEAF_PAGES, HASH_SIZE).any(axis=1).sum())
                    s.logical_pages += counts[leaf]
        s.logical_bytes += s.logical_pages * PAGE_SIZE
    return s

