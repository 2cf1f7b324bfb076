"""The snapshot store: LMDB + LZ4, content-addressed pages, manifests, refs, GC.

Saving a snapshot by hand (chrono.store.capture.Snapshots does it for a running
guest: copy-on-write, encoded by chrono.store.encoder while the guest runs on):

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
import importlib

# Where each name lives.  They are imported on first use (PEP 562), so that
# `from chrono.store import bootset` on a fast boot's path does not also bring
# in gc, verify and the trace tables.  The functions gc and verify are not
# among them: their names are those of their modules, which a submodule import
# would put in their place; import them from chrono.store.gc / .verify.
_HOMES = {
    "blobs": ("HASH_SIZE", "PAGE_SIZE", "ZERO_HASH", "ZERO_PAGE", "blob_key", "copy_pages",
              "decode_blob", "encode_blob", "encode_pages", "stored_size"),
    "gc": ("GcReport", "Roots", "add_root_provider", "remove_root_provider"),
    "manifest": ("DiskTable", "Manifest", "SnapshotDiff", "snapshot_diff"),
    "pagetable": ("LEAF_PAGES", "PageTable", "diff", "pages_for"),
    "store": ("DEFAULT_DIR", "DEFAULT_MAP_SIZE", "STORE_ENV_VAR", "Reader", "Store", "Writer",
              "check_ref_name", "default_store_path"),
    "verify": ("Problem", "StoreStats", "VerifyReport", "stats"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'chrono.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"chrono.store.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "HASH_SIZE", "PAGE_SIZE", "ZERO_HASH", "ZERO_PAGE", "LEAF_PAGES", "DEFAULT_DIR",
    "DEFAULT_MAP_SIZE", "STORE_ENV_VAR",
    "blob_key", "copy_pages", "decode_blob", "encode_blob", "encode_pages", "stored_size",
    "PageTable", "diff", "pages_for", "DiskTable", "Manifest", "SnapshotDiff", "snapshot_diff",
    "Store", "Reader", "Writer", "check_ref_name", "default_store_path",
    "GcReport", "Roots", "add_root_provider", "remove_root_provider",
    "VerifyReport", "Problem", "stats", "StoreStats",
]
