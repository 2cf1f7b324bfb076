"""The snapshot store: LMDB + zstd, content-addressed pages, manifests, refs, GC.

Saving a snapshot (capture copies pages while the guest is paused; the rest
can run in a background thread while the guest runs again):

    pages = copy_pages(machine.ram, np.flatnonzero(machine.ram_dirty))  # guest paused
    changes, blobs = encode_pages(pages, indices, pool)                  # any thread
    with store.writer() as w:                                            # one transaction
        w.put_blobs(blobs)
        ram, leaves = parent_ram.with_changes(changes, w)
        w.put_blobs(leaves)
        state = w.put_blob(machine.save_state())
        sid = w.put_snapshot(Manifest(config, state, ram, disks, dtb, parent, steps, vclock))
        w.set_ref("booted", sid)

Restoring: store.snapshot(name) -> Manifest; diff(current, target, store)
gives the pages that differ; store.page(table, index) reads one page, verified.

docs/store.md describes the on-disk layout, commit ordering and GC invariants.
"""
from chrono.store.blobs import (HASH_SIZE, PAGE_SIZE, ZERO_HASH, ZERO_PAGE, blob_key,
                                copy_pages, decode_blob, encode_blob, encode_pages, stored_size)
from chrono.store.gc import GcReport, Roots, add_root_provider, gc, remove_root_provider
from chrono.store.manifest import DiskTable, Manifest, SnapshotDiff, snapshot_diff
from chrono.store.pagetable import LEAF_PAGES, PageTable, diff, pages_for
from chrono.store.store import (DEFAULT_DIR, DEFAULT_MAP_SIZE, STORE_ENV_VAR, Reader, Store,
                                Writer, check_ref_name, default_store_path)
from chrono.store.verify import Problem, StoreStats, VerifyReport, stats, verify

__all__ = [
    "HASH_SIZE", "PAGE_SIZE", "ZERO_HASH", "ZERO_PAGE", "LEAF_PAGES", "DEFAULT_DIR",
    "DEFAULT_MAP_SIZE", "STORE_ENV_VAR",
    "blob_key", "copy_pages", "decode_blob", "encode_blob", "encode_pages", "stored_size",
    "PageTable", "diff", "pages_for", "DiskTable", "Manifest", "SnapshotDiff", "snapshot_diff",
    "Store", "Reader", "Writer", "check_ref_name", "default_store_path",
    "gc", "GcReport", "Roots", "add_root_provider", "remove_root_provider",
    "verify", "VerifyReport", "Problem", "stats", "StoreStats",
]
