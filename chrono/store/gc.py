"""Garbage collection: mark and sweep from the roots.

Roots are the refs (name -> snapshot), every recording's snapshots (its
keyframes and what its log loads), plus whatever registered root providers
return.  Event chunks live as long as their recording.  Marking a snapshot
marks its manifest, its state and device-tree blobs, its leaves, and the pages
those leaves name.  A parent id is weak: it keeps nothing alive.  Everything
unmarked -- manifests and blobs -- is deleted.  There are no reference counts
to drift after a crash: reachability is recomputed every time.

Phases and the invariant that makes them safe beside running writers:

1. mark, in a read transaction (writers keep committing meanwhile);
2. sweep, in one write transaction (so no writer runs during it): re-read the
   roots, mark whatever root was not marked in phase 1 (a snapshot committed or
   a ref moved meanwhile), then delete what is still unmarked.

Manifests and blobs are immutable and content-addressed, so what a snapshot
reaches never changes: a snapshot marked in phase 1 needs no second look, and
a blob a later writer reused (skipped because present) is reached from that
writer's snapshot, which phase 2 marks.  Hence: every blob reachable from a
root when the sweep commits is kept.

Writers must keep two rules for this to hold: a snapshot gets its root (ref)
in the same transaction that writes it, and "already present" is only trusted
within the transaction that relies on it (Writer.put_blobs checks inside it).
The store's blob set is closed under "leaf -> its pages": writers put pages
with (or before) their leaves, and the sweep deletes a leaf's pages only with
the leaf itself.  Writer.put_snapshot relies on it to check a manifest cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from chrono.errors import StoreCorruptError, StoreError, StoreFullError, UnknownSnapshotError
from chrono.store import bootset, packs
from chrono.store.blobs import HASH_SIZE, PAGE_SIZE, ZERO_HASH, stored_size
from chrono.store.pagetable import LEAF_PAGES
from chrono.store.store import Reader, Store, Writer
from chrono.store.traces import TRACE_ID_BYTES, TraceManifest, all_traces


@dataclass
class Roots:
    """What a root provider keeps alive: snapshot ids and individual blob keys."""

    snapshots: set[str] = field(default_factory=set)
    blobs: set[bytes] = field(default_factory=set)


RootProvider = Callable[[Reader], Roots]
_providers: list[RootProvider] = []


def add_root_provider(provider: RootProvider) -> None:
    """Register provider(reader) -> Roots, consulted by every gc in both phases."""
    if provider not in _providers:
        _providers.append(provider)


def remove_root_provider(provider: RootProvider) -> None:
    if provider in _providers:
        _providers.remove(provider)


@dataclass
class GcReport:
    snapshots_kept: int = 0
    snapshots_removed: int = 0
    blobs_kept: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0            # stored (compressed) bytes of the removed blobs
    chunks_removed: int = 0         # event chunks of recordings that are gone
    late_roots: int = 0             # roots found only when re-checked in the sweep
    dangling_refs: list[str] = field(default_factory=list)


def _roots(r: Reader, providers: Iterable[RootProvider]) -> Roots:
    roots = Roots()
    for name, sid in r.refs(strict=False, leases=True).items():
        roots.snapshots.add(sid)
    for trace in _traces(r):
        roots.snapshots |= trace.snapshot_ids()
    for provider in providers:
        extra = provider(r)
        roots.snapshots |= set(extra.snapshots)
        roots.blobs |= set(extra.blobs)
    return roots


def _traces(r: Reader) -> list[TraceManifest]:
    # A recording that cannot be read would hide which snapshots it keeps.
    try:
        return all_traces(r, strict=True)
    except StoreError as e:
        raise StoreCorruptError(f"gc stopped, nothing was removed: {e.message}") from None


class _Marker:
    def __init__(self):
        self.snapshots: set[str] = set()
        self.blobs: set[bytes] = set()
        self.dangling: set[str] = set()

    def mark(self, r: Reader, snapshot_ids: Iterable[str]) -> None:
        for sid in snapshot_ids:
            if sid in self.snapshots:
                continue
            if not r.has_snapshot(sid):
                self.dangling.add(sid)
                continue
            manifest = r.get_snapshot(sid)
            self.snapshots.add(sid)
            self.blobs.add(manifest.state)
            if manifest.dtb:
                self.blobs.add(manifest.dtb)
            for _, table in manifest.tables():
                for leaf in table.leaves:
                    if leaf == ZERO_HASH or leaf in self.blobs:
                        continue
                    self._mark_leaf(r, leaf)

    def _mark_leaf(self, r: Reader, leaf: bytes) -> None:
        # A leaf that cannot be read would hide which pages it keeps: stop
        # rather than sweep with an incomplete mark.
        import numpy as np      # here: every chrono.store import loads this module
        try:
            rows = np.frombuffer(r.get_leaf(leaf), dtype=np.uint8).reshape(LEAF_PAGES, HASH_SIZE)
        except StoreCorruptError as e:
            raise StoreCorruptError(f"gc stopped, nothing was removed: {e.message}") from None
        self.blobs.add(leaf)
        self.blobs.update(row.tobytes() for row in rows[rows.any(axis=1)])


def _recheck(w: Writer, marker: _Marker, providers, report: GcReport) -> None:
    """Mark the roots committed since the mark phase (or the last batch)."""
    roots = _roots(w, providers)
    late = roots.snapshots - marker.snapshots
    marker.dangling.clear()
    marker.mark(w, late)
    report.late_roots += len(late - marker.dangling)
    marker.blobs |= roots.blobs


_FIRST_BATCH, _MAX_BATCH = 16, 4096


def _delete_in_batches(store: Store, doomed, marker: _Marker, providers, report: GcReport) -> None:
    """Delete `doomed` in short write transactions, each re-checking the roots.

    LMDB is copy-on-write: a transaction needs new pages for every page it
    changes, and reuses only pages freed by transactions committed before it.
    One transaction deleting everything would need free room in proportion to
    what it deletes -- on a full disk, room the file cannot grow into.  Short
    batches live on the pages earlier ones freed: they start small and double
    while they fit, and halve when a batch finds no room.
    """
    done, size = 0, _FIRST_BATCH
    while done < len(doomed):
        batch = doomed[done:done + size]
        try:
            with store.writer() as w:
                _recheck(w, marker, providers, report)
                live = None
                for kind, key in batch:
                    if kind == "snapshot" and key not in marker.snapshots:
                        report.snapshots_removed += w.delete_snapshot(key)
                    elif kind == "blob" and key not in marker.blobs:
                        report.blobs_removed += w.delete_blob(key)
                    elif kind == "chunk":
                        live = live if live is not None else {t.id_bytes for t in _traces(w)}
                        if key[:TRACE_ID_BYTES] not in live:
                            report.chunks_removed += w.delete_chunk(key)
        except StoreFullError:
            if size == 1:
                raise StoreFullError(
                    f"store {store.path}: gc found no free page to work with (the file system "
                    f"is full); free some space there and run gc again (what it removed so far "
                    f"stays removed, nothing else changed)") from None
            size //= 2
            continue
        done += len(batch)
        size = min(size * 2, _MAX_BATCH)
    report.snapshots_kept += sum(1 for kind, key in doomed if kind == "snapshot") - report.snapshots_removed
    report.blobs_kept += sum(1 for kind, key in doomed if kind == "blob") - report.blobs_removed


def reachable(r: Reader, snapshot_ids: Iterable[str]) -> set[bytes]:
    """Every blob the snapshots need (state, device tree, leaves, pages).
    UnknownSnapshotError names a snapshot that is not in the store."""
    marker = _Marker()
    marker.mark(r, snapshot_ids)
    if marker.dangling:
        raise UnknownSnapshotError(f"snapshot {sorted(marker.dangling)[0]} is not in store "
                                   f"{r.store.path}; run `chrono store verify`")
    return marker.blobs


def gc(store: Store, progress: Callable[[str], None] | None = None,
       extra_providers: Iterable[RootProvider] = (), after_mark: Callable[[], None] | None = None
       ) -> GcReport:
    """Delete every snapshot and blob no root reaches.  See the module docstring.

    `after_mark` runs between the two phases (tests use it to commit a snapshot
    there); `progress` gets a short message per phase.
    """
    providers = [*_providers, *extra_providers]
    say = progress or (lambda message: None)
    marker = _Marker()
    with store.reader() as r:
        store.check_trees(r)            # gc walks every record: LMDB must not meet a damaged page
    try:
        with store.writer() as w:
            w.drop_dead_leases()        # guests that ended without releasing theirs
    except StoreFullError:
        pass                            # a full disk: they keep their snapshots until next time
    say("marking")
    with store.reader() as r:
        marker.mark(r, _roots(r, providers).snapshots)
    if after_mark is not None:
        after_mark()
    say("sweeping")
    report = GcReport()
    with store.writer() as w:           # plans only: a transaction that changes nothing is free
        _recheck(w, marker, providers, report)
        doomed: list[tuple[str, bytes | str]] = []
        for sid in w.snapshot_ids():
            if sid in marker.snapshots:
                report.snapshots_kept += 1
            else:
                doomed.append(("snapshot", sid))
        pages = []
        for key, value in w._txn.cursor(db=store._blobs):
            key = bytes(key)
            if key in marker.blobs:
                report.blobs_kept += 1
            else:
                # Leaves (and state) go before pages: while a leaf is stored, so are its pages.
                # A pack holds only captured pages and blocks (chrono.store.packs).
                pointer = packs.is_pointer(value)
                page = pointer or stored_size(value) == PAGE_SIZE
                (pages if page else doomed).append(("blob", key))
                report.bytes_freed += packs.unpack_pointer(value)[2] if pointer else len(value)
        doomed += pages
        live = {t.id_bytes for t in _traces(w)}
        doomed += [("chunk", k) for k in w.chunk_keys() if k[:TRACE_ID_BYTES] not in live]
        report.dangling_refs = sorted(n for n, sid in w.refs(strict=False).items()
                                      if sid in marker.dangling)
    _delete_in_batches(store, doomed, marker, providers, report)
    with store.reader() as r:
        bootset.remove_stale(store.path, set(r.snapshot_ids()))
    return report
