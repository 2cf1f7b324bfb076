"""Snapshots of a running guest: capture into the store, restore from it.

A snapshot is one atomic unit: CPU + device state, all of RAM, every disk
block, and the machine configuration, committed in one write transaction.
RAM and disk are always saved and restored together, so a restored guest's
page cache always matches its disk.

The machine keeps a *baseline*: the snapshot it was last saved as or
restored from, with its page tables.  Only pages and blocks dirtied since
then can differ from it, which makes both directions incremental:

- capture takes the CPU/device state and the lists of dirty pages and blocks
  (the only part that needs the guest stopped, well under a millisecond);
  the core then keeps their content copy-on-write (native/capture.c) while
  the guest runs on and another thread reads, hashes, compresses and
  commits them against the baseline's tables (unchanged leaves are shared);
- restore rewrites only the pages that differ between the baseline and the
  target (plus those dirtied since the baseline).  RAM pages are not even
  written then: they are marked absent and materialized from the store on
  first touch, so the guest resumes at once.  Disk blocks are written
  eagerly (virtio DMA reads the disk buffer directly).

Without a baseline (a fresh boot), the first capture takes every page ever
written (untouched RAM is zero) and every non-zero disk block.

A fast boot (guest_from_snapshot: a new machine, then a restore) runs no
numpy and starts no thread: numpy and the capture's thread pools are
brought in by the first save or by a restore into a running machine.
Importing numpy alone would cost more than half of the fast boot.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from chrono.core.machine import PAGE_SIZE
from chrono.errors import ChronoError, SnapshotMismatchError
from chrono.store import bootset
from chrono.store.blobs import ZERO_HASH, ZERO_PAGE, blob_key, copy_pages, encode_blob
from chrono.store.encoder import INLINE_PAGES, CaptureEncoder
from chrono.store.manifest import DiskTable, Manifest
from chrono.store.pagetable import PageTable, diff, pages_for
from chrono.store.store import Store, Writer, lease_holder

if TYPE_CHECKING:
    import numpy as np

CONFIG_VERSION = 1


@dataclass
class Baseline:
    """The snapshot the machine's contents were last equal to."""

    snapshot_id: str | None
    ram: PageTable
    disks: list[PageTable]


@dataclass
class CaptureTimes:
    """Seconds spent in each phase of the last capture (for benchmarks and the monitor)."""

    paused: float = 0.0         # the state and the page lists: the guest is stopped for this
    encode: float = 0.0         # reading, hashing and compressing the captured pages, storing the new ones
    commit: float = 0.0         # the tables, the manifest, the transaction's commit
    pages: int = 0              # RAM pages captured
    blocks: int = 0             # disk blocks captured
    new_bytes: int = 0          # bytes this capture added to the store (compressed)


def machine_config(guest) -> dict:
    """The configuration a snapshot can only be restored into."""
    disk_size = guest.disk.size if guest.disk is not None else None
    return _config(guest.config, disk_size, [guest.boot.tohost, guest.boot.fromhost],
                   len(guest.machine.save_state()))


def _virtio_devices(board, has_disk: bool) -> list[str]:
    """The virtio devices' names in a configuration: their transport, then what
    they are (an mmio board lists its empty disk slot as plain "virtio-mmio")."""
    t = board.virtio
    blk = [f"virtio-{t}-blk"] if has_disk else ["virtio-mmio"] if t == "mmio" else []
    return [*blk, f"virtio-{t}-rng", *([f"virtio-{t}-net"] if board.has_net else [])]


def _config(board, disk_size: int | None, htif: list, state_size: int) -> dict:
    return {
        "version": CONFIG_VERSION,
        "ram_size": board.ram_size,
        "disk_size": disk_size,
        "isa": board.riscv_isa,
        "isa_extensions": list(board.isa_extensions),
        "mmu": board.mmu_type,
        "virtio": board.virtio,
        "devices": ["sifive,test0", "goldfish-rtc", "clint", "plic", "ns16550a",
                    "pci-host-ecam-generic", *_virtio_devices(board, disk_size is not None)],
        "state_size": state_size,
        "htif": htif,
        "bootargs": board.bootargs,
        "initrd": list(board.initrd) if board.initrd else None,
    }


# What a snapshot's machine must share with the machine it is restored into.
_COMPATIBLE = (("version", "configuration format"), ("state_size", "CPU/device state layout"),
               ("ram_size", "RAM size"), ("disk_size", "disk size"),
               ("virtio", "virtio transport (--virtio)"), ("devices", "devices"),
               ("isa", "ISA"))


def incompatibility(mine: dict, theirs: dict) -> tuple[str, str] | None:
    """(key, what it is) of the first setting in which a snapshot of configuration
    `theirs` cannot be restored into a machine of configuration `mine`, or None."""
    for key, what in _COMPATIBLE:
        if mine.get(key) != theirs.get(key):
            return key, what
    return None


@functools.cache
def _scratch_machine():
    """A small machine for checking states (never run)."""
    from chrono.core.board import RAM_MIN
    from chrono.core.machine import Machine
    return Machine(RAM_MIN)


def core_state_size() -> int:
    """Bytes of this core's CPU/device state (fixed by the build)."""
    from chrono._core import lib
    return lib.core_state_size()


def state_problem(state: bytes) -> str | None:
    """Why this core cannot load CPU/device state `state` (None: it can).  The
    core's own check: its size, format version and the size of every part."""
    try:
        _scratch_machine().load_state(state)
    except ChronoError as e:
        return e.message
    return None


def config_problem(cfg) -> str | None:
    """Why `cfg` is not a machine configuration this chrono would write, and
    so one guest_from_snapshot cannot build a machine from (None: it is one).

    A configuration may come from a bundle: it is checked the way it is used,
    by building the board it describes (its own checks) and the configuration
    that board has, which must be `cfg` exactly, types included.
    """
    if not isinstance(cfg, dict):
        return "its machine configuration is not a mapping"
    version, size = cfg.get("version"), cfg.get("state_size")
    if type(version) is not int or version != CONFIG_VERSION:
        return (f"its machine configuration has format {version!r}; this chrono reads "
                f"format {CONFIG_VERSION}")
    if type(size) is not int or size != core_state_size():
        return (f"its CPU/device state layout differs ({size!r} bytes; this chrono's has "
                f"{core_state_size()}): it was saved by another version of chrono; restore it "
                f"with the chrono that saved it")
    try:
        board = _board(cfg)
        disk_size, htif = cfg["disk_size"], cfg["htif"]
    except KeyError as e:
        return f"its machine configuration has no {e.args[0]!r}"
    except ChronoError as e:
        return f"its machine configuration is unusable ({e.message})"
    except (TypeError, ValueError, AttributeError):
        return "its machine configuration has a value of the wrong type"
    if disk_size is not None and (type(disk_size) is not int or disk_size <= 0
                                  or disk_size % 512):
        return f"its disk size {disk_size!r} is not a positive multiple of 512 bytes"
    if not (isinstance(htif, list) and len(htif) == 2 and all(
            a is None or (type(a) is int and 0 < a < 1 << 64) for a in htif)):
        return f"its HTIF addresses {htif!r} are not two addresses"
    rebuilt = _config(board, disk_size, htif, size)
    for key in sorted(set(cfg) | set(rebuilt)):
        if json.dumps(cfg.get(key), sort_keys=True) != json.dumps(rebuilt.get(key), sort_keys=True):
            return (f"its machine configuration is not one this chrono writes ({key} is "
                    f"{str(cfg.get(key))[:60]!r})")
    return None


def _board(cfg: dict):
    """The BoardConfig a configuration describes (UsageError if it describes none)."""
    from chrono.core.board import BoardConfig
    return BoardConfig(cfg["ram_size"], isa_extensions=tuple(cfg["isa_extensions"]),
                       mmu_type=cfg["mmu"], bootargs=cfg["bootargs"],
                       initrd=tuple(cfg["initrd"]) if cfg["initrd"] else None,
                       has_disk=cfg["disk_size"] is not None, has_net=has_net(cfg),
                       virtio=cfg["virtio"])


def has_net(cfg: dict) -> bool:
    """Whether a snapshot's machine has a network device."""
    return any(d in ("virtio-mmio-net", "virtio-pci-net") for d in (cfg.get("devices") or []))


def warm_up() -> None:
    """Load what a first save needs beyond this module (numpy, the thread
    pools, the native page encoder and its libraries), so that it need not."""
    import concurrent.futures  # noqa: F401
    import numpy  # noqa: F401

    from chrono.store.encoder import native
    native()


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The distinct page numbers in a or b, sorted (np.union1d's answer:
    its first call imports numpy.ma, which made a process's first loadvm
    8-15 ms instead of under 1 ms)."""
    import numpy as np
    both = np.concatenate((a, b)).astype(np.int64)
    both.sort()
    if len(both) < 2:
        return both
    keep = np.empty(len(both), dtype=bool)
    keep[0] = True
    np.not_equal(both[1:], both[:-1], out=keep[1:])
    return both[keep]


def _nonzero_pages(buffer: np.ndarray) -> np.ndarray:
    """Indices of the 4 KiB pages of `buffer` holding any non-zero byte."""
    import numpy as np
    full = len(buffer) // PAGE_SIZE
    words = buffer[:full * PAGE_SIZE].view(np.uint64).reshape(full, PAGE_SIZE // 8)
    pages = np.flatnonzero(words.any(axis=1))
    if len(buffer) % PAGE_SIZE and buffer[full * PAGE_SIZE:].any():
        pages = np.append(pages, full)
    return pages


class Snapshots:
    """Save and restore one guest (a chrono.core.launch.Guest) in a store."""

    def __init__(self, store: Store, guest, workers: int = 2):
        self.store = store
        self.guest = guest
        self.baseline: Baseline | None = None
        self._lease = lease_holder(f"{id(self):x}")
        self._released = False
        self.config = machine_config(guest)     # fixed for the machine's life
        self.times = CaptureTimes()
        self._workers = workers
        self._pending = None
        self._boot_set_for: Manifest | None = None      # a fast boot noting its boot set

    @functools.cached_property
    def _pool(self):
        """Threads that hash and compress (made by the first save that uses them)."""
        from concurrent.futures import ThreadPoolExecutor
        return ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="chrono-encode")

    @functools.cached_property
    def _committer(self):
        """One commit at a time, in its own thread (an LMDB write transaction
        stays on the thread that began it)."""
        from concurrent.futures import ThreadPoolExecutor
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="chrono-commit")

    def close(self) -> None:
        """Finish a pending save and release the lease (may be called again)."""
        try:
            self.wait()
        finally:
            for pool in ("_committer", "_pool"):        # only those that were made
                if pool in self.__dict__:
                    self.__dict__[pool].shutdown(wait=True)
            if self._boot_set_for is not None:
                manifest, self._boot_set_for = self._boot_set_for, None
                bootset.write(self.store, manifest, self.guest.machine.faults)
            if self.baseline is not None and not self._released:
                self._released = True
                try:
                    with self.store.writer() as w:
                        w.release_lease(self._lease)
                except ChronoError:
                    pass                # gc drops the lease of a process that is gone

    # ---- capture --------------------------------------------------------------
    def save(self, name: str | None = None, background: bool = False,
             also: Callable[[Writer, str], None] | None = None) -> str | None:
        """Capture the guest now and name the snapshot `name`.

        The guest only has to be stopped while its dirty pages are copied.
        With background=True the hashing, compression and commit then run in
        a worker thread while the caller lets the guest run on; save returns
        None at once, and wait() (which every later save, load and close
        calls first) returns the id or raises what went wrong.  Otherwise
        save returns the id when the snapshot is committed.
        """
        import numpy as np
        self.wait()
        m, disk = self.guest.machine, self.guest.disk
        m.note_faults(0)                # a fast boot's boot set ends here
        base = self.baseline
        t0 = time.perf_counter()
        # The only part that needs the guest stopped: the state and the lists
        # of what to save.  From capture_begin on the core keeps those pages'
        # and blocks' content for capture_read (copy on write), so the guest
        # may run on while the copy, hashing and commit go on (capture.c).
        state = m.save_state()
        position = (m.steps, m.vclock)
        ram_mask = m.ram_dirty.copy()
        if disk is None:
            disk_mask = None
        elif base is None:
            disk_mask = disk.maybe_nonzero()
        else:
            disk_mask = disk.dirty.copy()
        m.capture_begin(ram_mask, disk_mask)
        paused = time.perf_counter() - t0

        def finish() -> str:
            t1 = time.perf_counter()
            ram_pages = np.flatnonzero(ram_mask)
            disk_blocks = np.flatnonzero(disk_mask) if disk is not None else None
            try:
                sid, added, ram_table, disks, t2 = self._commit(
                    base, state, position, ram_pages, disk_blocks, name, also)
            except BaseException:
                # Nothing was saved: what was dirty still is, for the next save.
                m.capture_abandon()
                m.ram_dirty[ram_pages] = 1
                if disk is not None and base is not None:
                    disk.dirty[disk_blocks] = 1
                raise
            t3 = time.perf_counter()
            self.baseline = Baseline(sid, ram_table, [d.table for d in disks])
            self.times = CaptureTimes(paused, t2 - t1, t3 - t2, len(ram_pages),
                                      0 if disk_blocks is None else len(disk_blocks), added)
            return sid

        if background:
            self._pending = self._committer.submit(finish)
            return None
        return finish()

    def wait(self) -> str | None:
        """Finish a background save; returns its id (None if none was pending)."""
        pending, self._pending = self._pending, None
        return pending.result() if pending is not None else None

    def _commit(self, base, state, position, ram_pages, disk_blocks, name, also):
        """Encode and commit what save() captured; returns (id, bytes added,
        tables, time the pages were all encoded).

        Everything happens inside the write transaction: the captured pages
        are read out of the core, hashed and, where the store lacks them,
        compressed (chrono.store.encoder, over the pool for a big capture),
        and stored; then the tables are built from the
        baseline's leaves as this transaction sees them, so a concurrent gc
        cannot pull a leaf from under a snapshot being written.
        """
        m, disk = self.guest.machine, self.guest.disk
        units = len(ram_pages) + (len(disk_blocks) if disk is not None else 0)
        pool = self._pool if units >= INLINE_PAGES else None
        state_key, state_value = encode_blob(state)
        dtb_key, dtb_value = encode_blob(self.guest.dtb)
        with self.store.writer() as w:
            encoder = CaptureEncoder(self.store, w, pool)
            ram = encoder.add(functools.partial(m.capture_read_into, False), ram_pages)
            if disk is not None:
                blocks = encoder.add(functools.partial(m.capture_read_into, True), disk_blocks)
            added = encoder.put()
            t2 = time.perf_counter()

            ram_base = base.ram if base else PageTable.empty(pages_for(m.ram_size))
            ram_table, leaves = ram_base.with_changes(dict(zip(ram_pages.tolist(), ram.keys())), w)
            disks = []
            if disk is not None:
                disk_base = base.disks[0] if base else PageTable.empty(pages_for(disk.size))
                disk_table, disk_leaves = disk_base.with_changes(
                    dict(zip(disk_blocks.tolist(), blocks.keys())), w)
                leaves += disk_leaves
                disks.append(DiskTable(disk.size, disk_table))
            manifest = Manifest(config=self.config, state=state_key, ram=ram_table,
                                disks=tuple(disks), dtb=dtb_key,
                                parent=base.snapshot_id if base else None,
                                steps=position[0], vclock=position[1])
            blobs = leaves + [(k, v) for k, v in ((state_key, state_value), (dtb_key, dtb_value))
                              if v is not None]
            new = {k: v for k, v in blobs if not w.has_blob(k)}
            w.put_blobs(new.items())
            added += sum(len(v) for v in new.values())
            sid = w.put_snapshot(manifest)
            if name is not None:
                w.set_ref(name, sid)
            if also is not None:
                also(w, sid)
            w.set_lease(self._lease, sid)
        return sid, added, ram_table, disks, t2

    # ---- restore --------------------------------------------------------------
    def check_compatible(self, manifest: Manifest, name: str) -> None:
        mine, theirs = self.config, manifest.config
        found = incompatibility(mine, theirs)
        if found is None:
            return
        key, what = found
        if key in ("version", "state_size"):
            raise SnapshotMismatchError(
                f"snapshot {name!r} was saved by another version of chrono (its CPU/device "
                f"state layout differs: {theirs.get(key)!r}, this one {mine.get(key)!r}); "
                f"restore it with the chrono that saved it")
        raise SnapshotMismatchError(
            f"snapshot {name!r} was taken on a machine with another {what} "
            f"({theirs.get(key)!r}, this one has {mine.get(key)!r}); "
            f"start it with `chrono run --from {name}` instead")

    def load(self, name: str, fresh: bool = False) -> Manifest:
        """Restore the snapshot `name` into the guest (delta + lazy).  `fresh`
        says the guest's RAM and disk are still all zero (a new machine)."""
        self.wait()
        manifest = self.store.snapshot(name)
        sid = manifest.id
        self.check_compatible(manifest, name)
        m, disk = self.guest.machine, self.guest.disk
        state = self.store.get_blob(manifest.state)
        base = self.baseline

        m.note_faults(0)                # a fast boot's boot set ends here
        if base is None and fresh:
            # A new machine is all zeros: only what the snapshot holds is
            # restored, and without reading the RAM leaves: every page under
            # a stored leaf is marked absent (its zero pages load as zeros).
            self._use_boot_set(manifest)
            if disk is not None:
                self._write_disk(manifest.disks[0].table.items(self.store))
            m.load_state(state)
            self._lazy_ram(manifest.ram)
            m.mark_absent_ranges(manifest.ram.stored_ranges())
        else:
            import numpy as np
            # Pages that may differ from the target: what differs between the
            # baseline and the target, plus what changed since the baseline.
            if base is not None:
                ram_pages = _union(diff(base.ram, manifest.ram, self.store),
                                       np.flatnonzero(m.ram_dirty))
            else:
                ram_pages = _union(manifest.ram.nonzero_pages(self.store),
                                       _nonzero_pages(m.ram))
            if disk is not None:
                target = manifest.disks[0].table
                if base is not None:
                    blocks = _union(diff(base.disks[0], target, self.store),
                                        np.flatnonzero(disk.dirty))
                else:
                    blocks = _union(target.nonzero_pages(self.store),
                                        _nonzero_pages(disk.data))
                self._write_disk(zip(blocks.tolist(), target.lookup_many(self.store, blocks)))
            m.load_state(state)
            self._lazy_ram(manifest.ram)
            if len(ram_pages):
                m.mark_absent(ram_pages)
        m.clear_ram_dirty()
        if disk is not None:
            m.clear_disk_dirty()
        self.baseline = Baseline(sid, manifest.ram, [d.table for d in manifest.disks])
        with self.store.writer() as w:
            w.set_lease(self._lease, sid)
        return manifest

    # ---- comparing (replay verifies keyframes) -----------------------------------
    def differences(self, manifest: Manifest) -> "Differences":
        """How the machine now differs from snapshot `manifest`.

        Only pages that can differ are hashed: those that differ between the
        baseline and the target, and those written since the baseline.
        """
        import numpy as np
        m, disk = self.guest.machine, self.guest.disk
        base = self.baseline
        if base is None:
            raise ValueError("comparing needs a baseline (save or restore first)")
        ram = _union(diff(base.ram, manifest.ram, self.store), np.flatnonzero(m.ram_dirty))
        m.materialize(ram)
        out = Differences(state=m.save_state() != self.store.get_blob(manifest.state),
                          ram=_differing(m.ram, ram, manifest.ram, self.store))
        if disk is not None and manifest.disks:
            blocks = _union(diff(base.disks[0], manifest.disks[0].table, self.store),
                                np.flatnonzero(disk.dirty))
            out.disk = _differing(disk.data, blocks, manifest.disks[0].table, self.store)
        return out

    def adopt(self, manifest: Manifest) -> None:
        """The machine equals snapshot `manifest` (checked with differences()):
        make it the baseline, so later saves and compares start from it."""
        m, disk = self.guest.machine, self.guest.disk
        m.clear_ram_dirty()
        if disk is not None:
            m.clear_disk_dirty()
        self.baseline = Baseline(manifest.id, manifest.ram, [d.table for d in manifest.disks])

    def _use_boot_set(self, manifest: Manifest) -> None:
        """Read the blobs a fast boot of `manifest` needs first from its boot
        set, or note them for one (chrono.store.bootset)."""
        blobs = bootset.read(self.store.path, manifest.id)
        if blobs is not None:
            self.store.preload(blobs)
        else:
            self._boot_set_for = manifest
            self.guest.machine.note_faults(bootset.BOOT_SET_PAGES)

    def _lazy_ram(self, table: PageTable) -> None:
        """Absent pages (the caller marks them) come from `table` on first touch."""
        m, store = self.guest.machine, self.store

        def provide(page: int) -> None:
            m.fill_page(page, store.page(table, page))

        m.set_page_provider(provide)

    def _write_disk(self, blocks) -> None:
        """Write (block, key) pairs into the disk (the overlay now differs from
        the image there)."""
        disk = self.guest.disk
        for block, key in blocks:
            disk.fill_block(block, ZERO_PAGE if key == ZERO_HASH else self.store.get_blob(key))


@dataclass
class Differences:
    """What differs between a machine and a snapshot."""

    state: bool                                  # CPU/device state bytes
    ram: list[int]                               # RAM page numbers
    disk: list[int] = field(default_factory=list)  # disk block numbers

    def __bool__(self) -> bool:
        return self.state or bool(self.ram) or bool(self.disk)


def _differing(buffer: np.ndarray, pages: np.ndarray, table: PageTable, source) -> list[int]:
    if not len(pages):
        return []
    rows = copy_pages(buffer, pages)
    wanted = table.lookup_many(source, pages)
    return [int(p) for p, row, key in zip(pages, rows, wanted) if blob_key(row) != key]


def guest_from_snapshot(store: Store, name: str):
    """A new guest whose whole machine comes from snapshot `name` (fast boot).

    Returns (guest, snapshots): the machine is built from the snapshot's own
    configuration, its disk is in memory (there is no image behind it), and
    its RAM is restored lazily, so it can run at once.
    """
    from chrono.core.disk import Disk
    from chrono.core.guest import BootImage, Guest
    from chrono.core.machine import Machine

    manifest = store.snapshot(name)
    cfg = manifest.config
    problem = config_problem(cfg)
    if problem:
        raise SnapshotMismatchError(f"snapshot {name!r} cannot be restored: {problem}")
    tohost, fromhost = cfg["htif"]
    board = _board(cfg)
    machine = Machine(cfg["ram_size"], tohost=tohost, fromhost=fromhost, virtio=board.virtio)
    disk = None
    if cfg["disk_size"] is not None:
        disk = Disk.blank(cfg["disk_size"])
        machine.attach_disk(disk)
    if board.has_net:
        machine.attach_net()
    boot = BootImage(segments=[], entry=0, tohost=tohost, fromhost=fromhost,
                     description=f"snapshot {name}")
    dtb = store.get_blob(manifest.dtb) if manifest.dtb else None
    guest = Guest(machine, boot, board, disk, saved_dtb=dtb)
    snapshots = Snapshots(store, guest)
    snapshots.load(name, fresh=True)
    return guest, snapshots
