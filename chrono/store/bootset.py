"""Boot sets: the blobs a fast boot of a snapshot reads first, in one file.

A fast boot (`chrono run --from`) loads RAM pages from the store as the guest
touches them: some hundreds before it answers its first command, each a
random read of the store file (plus the B-tree page above it).  Warm in the
page cache such a read costs microseconds; cold, it is a read from the disk
(~70 us on the 2-core VM, two per page), which doubled the whole fast boot.

So the first fast boot of a snapshot notes which pages the guest touched
first (up to BOOT_SET_PAGES) and, when it ends, writes their blobs and the
page-table leaves above them, with everything the restore itself read (the
CPU/device state, the device tree, the disk's leaves and blocks), as the
store holds them, into one file: DIR/bootsets/<snapshot id>.  The next fast boot of that snapshot reads the
file in one go and the store serves those blobs from memory (Store.preload),
so cold or warm, it costs about the same.

A boot set is a cache beside the store, not part of it: every blob read from
it is verified against the key it is asked for (its SHA-256, as every blob
read from the store is), and the keys asked for come from the snapshot's own
manifest and leaves, so a damaged, stale or foreign file can change nothing
the guest sees -- at worst its blobs are not used.  A file that cannot be
read is ignored and written anew.  gc removes the boot sets of the snapshots
it removes; verify, bundles and compact leave them alone.

Format (little-endian): magic b"CHBS", version u16 = 1, reserved u16 = 0,
the snapshot id (32 bytes), a count u32, then per blob: its key (32 bytes),
the length of its stored value u32, the stored value (codec byte + payload,
as in the blobs database).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

from chrono.errors import ChronoError
from chrono.store.blobs import HASH_SIZE, ZERO_HASH
from chrono.store.manifest import Manifest
from chrono.store.pagetable import LEAF_PAGES

BOOT_SET_PAGES = 1024           # the first pages touched (~1.5 MiB): a shell and its first answers
FOLDER = "bootsets"
_MAGIC = b"CHBS"
_HEAD = struct.Struct(f"<4sHH{HASH_SIZE}sI")
_ENTRY = struct.Struct(f"<{HASH_SIZE}sI")


def path_of(store_path: Path, sid: str) -> Path:
    return Path(store_path) / FOLDER / sid


def read(store_path: Path, sid: str) -> dict[bytes, memoryview] | None:
    """{key: stored value} of snapshot `sid`'s boot set, or None if it has none
    that can be read (missing, truncated, another format or snapshot)."""
    try:
        data = path_of(store_path, sid).read_bytes()
    except OSError:
        return None
    if len(data) < _HEAD.size:
        return None
    magic, version, _, owner, count = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != 1 or owner.hex() != sid:
        return None
    view, offset, blobs = memoryview(data), _HEAD.size, {}
    for _ in range(count):
        if offset + _ENTRY.size > len(data):
            return None
        key, length = _ENTRY.unpack_from(data, offset)
        offset += _ENTRY.size
        if offset + length > len(data):
            return None
        blobs[key] = view[offset:offset + length]
        offset += length
    return blobs


def write(store, manifest: Manifest, pages: list[int]) -> None:
    """Write the boot set of snapshot `manifest`: what its restore reads (the
    CPU/device state, the device tree, the disk's leaves and blocks) and the
    blobs of its RAM `pages` (in the order the guest touched them) with the
    leaves above them.  A cache: if it cannot be written, nothing is, and
    nothing is said."""
    try:
        _write(store, manifest, pages)
    except (ChronoError, OSError):
        pass


def _write(store, manifest: Manifest, pages: list[int]) -> None:
    keys: dict[bytes, None] = dict.fromkeys(k for k in (manifest.state, manifest.dtb)
                                            if k and k != ZERO_HASH)
    for disk in manifest.disks:
        keys.update(dict.fromkeys(disk.table.leaf_keys))
        keys.update(dict.fromkeys(key for _, key in disk.table.items(store)))
    table = manifest.ram
    for page in pages:
        leaf = table.leaves[page // LEAF_PAGES]
        if leaf != ZERO_HASH:
            keys[leaf] = None
            key = table.lookup(store, page)
            if key != ZERO_HASH:
                keys[key] = None
    sid = manifest.id
    with store.reader() as r:
        values = [(key, value) for key in keys if (value := r.get_raw(key)) is not None]
    parts = [_HEAD.pack(_MAGIC, 1, 0, bytes.fromhex(sid), len(values))]
    for key, value in values:
        parts += [_ENTRY.pack(key, len(value)), value]
    target = path_of(store.path, sid)
    tmp = target.with_name(f".{sid}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(exist_ok=True)
        tmp.write_bytes(b"".join(parts))
        os.replace(tmp, target)         # whole or not at all; no fsync: a lost one is rebuilt
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale(store_path: Path, snapshot_ids: set[str]) -> None:
    """Remove the boot sets (and left-over temporary files) of snapshots not in
    `snapshot_ids` (gc, after its sweep)."""
    folder = Path(store_path) / FOLDER
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name not in snapshot_ids:
            try:
                os.unlink(folder / name)
            except OSError:
                pass
