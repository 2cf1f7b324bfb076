"""Synthetic snapshots for the store tests: pages made of seeded random bytes,
saved the way capture will save them (encode, put, with_changes, manifest, ref)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from chrono.store import (PAGE_SIZE, DiskTable, Manifest, PageTable, encode_pages)

RAM_PAGES = 2048            # 8 MiB of guest RAM: four leaves


def page(seed, compressible: bool = True) -> bytes:
    """A deterministic non-zero 4 KiB page; compressible ones are half zeros."""
    data = hashlib.shake_256(repr(seed).encode()).digest(PAGE_SIZE)
    return data[:PAGE_SIZE // 2] + bytes(PAGE_SIZE // 2) if compressible else data


def save(store, pages: dict[int, bytes], name: str | None = None, base: PageTable | None = None,
         parent: str | None = None, npages: int = RAM_PAGES, disk: dict[int, bytes] | None = None,
         disk_base: PageTable | None = None, disk_size: int = 64 * PAGE_SIZE, steps: int = 0,
         state: bytes = b"cpu state"):
    """Save a snapshot whose RAM is `base` with `pages` changed; returns (id, manifest)."""
    base = base or PageTable.empty(npages)
    rows = np.array([np.frombuffer(p, dtype=np.uint8) for p in pages.values()]).reshape(-1, PAGE_SIZE)
    changes, blobs = encode_pages(rows, list(pages))
    with store.writer() as w:
        w.put_blobs(blobs)
        ram, leaves = base.with_changes(changes, w)
        w.put_blobs(leaves)
        disks = ()
        if disk is not None:
            drows = np.array([np.frombuffer(p, dtype=np.uint8) for p in disk.values()]).reshape(-1, PAGE_SIZE)
            dchanges, dblobs = encode_pages(drows, list(disk))
            w.put_blobs(dblobs)
            dtable, dleaves = (disk_base or PageTable.empty(-(-disk_size // PAGE_SIZE))).with_changes(dchanges, w)
            w.put_blobs(dleaves)
            disks = (DiskTable(disk_size, dtable),)
        manifest = Manifest(config={"ram": npages * PAGE_SIZE, "isa": "rv64imac"},
                            state=w.put_blob(state), ram=ram, disks=disks,
                            dtb=w.put_blob(b"\xd0\x0d\xfe\xed device tree"), parent=parent,
                            steps=steps, vclock=steps)
        sid = w.put_snapshot(manifest)
        if name:
            w.set_ref(name, sid)
    return sid, manifest


def flip_everywhere(data_mdb: Path, needle: bytes, at: int | None = None) -> int:
    """Flip one bit of every copy of `needle` in the file (old copies may linger
    in free pages); returns how many copies were changed."""
    data = bytearray(data_mdb.read_bytes())
    at = len(needle) // 2 if at is None else at
    count, start = 0, 0
    while (found := data.find(needle, start)) >= 0:
        data[found + at] ^= 0x10
        count += 1
        start = found + len(needle)
    data_mdb.write_bytes(bytes(data))
    return count


def restore_ram_only(snaps, name: str) -> None:
    """Test-only: what a memory-only saved state does — CPU, devices and RAM
    come back, the disk stays as it is now."""
    manifest = snaps.store.snapshot(name)
    m = snaps.guest.machine
    m.load_state(snaps.store.get_blob(manifest.state))
    for index, key in manifest.ram.items(snaps.store):
        m.fill_page(index, snaps.store.get_blob(key))
    zero = np.setdiff1d(np.arange(m.ram_size // 4096), manifest.ram.nonzero_pages(snaps.store))
    for index in zero:
        m.fill_page(index, None)
    m.invalidate_ram()
