"""Snapshot manifests: everything a snapshot is, except the blobs it names.

A manifest is stored in the `snapshots` database under its id, the SHA-256 of
its encoding (shown to users as 64 hex digits), so it is verified on every
read like a blob.  Encoding, version 1, little-endian:

    magic       4  b"CHSN"
    version     2  manifest format (1)
    flags       2  bit 0: has parent, bit 1: has device tree; others must be 0
    parent     32  parent snapshot id (zeros without one).  Weak: the parent
                   may have been deleted since; nothing is read through it.
    steps       8  position: instructions executed or trapped since reset
    vclock      8  position: virtual clock (steps plus skipped idle time)
    created     8  host wall-clock time, ns since the epoch (metadata only:
                   never visible to the guest)
    state      32  blob key: CPU + device state (Machine.save_state())
    dtb        32  blob key: the device tree handed to the guest (zeros without one)
    config_len  4  then config_len bytes: the machine configuration, UTF-8
                   JSON with sorted keys and no spaces
    ram            page table root: u64 page count, u32 leaf count, leaf keys
    ndisks      2  then per disk: u64 size in bytes, page table root
                   (ceil(size / 4096) pages, the last one zero-padded)

Nothing may follow the last disk.  A later format adds fields by bumping the
version; a version this code does not know is refused, not guessed at.
"""
from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from chrono.store.blobs import HASH_SIZE
from chrono.store.pagetable import PageTable, diff, pages_for

MAGIC = b"CHSN"
VERSION = 1
FLAG_PARENT = 1
FLAG_DTB = 2
_HEAD = struct.Struct("<4sHH32sQQQ32s32sI")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_NONE = bytes(HASH_SIZE)


class ManifestFormatError(ValueError):
    """A manifest in a format version this code does not read."""


def _check_key(name: str, key: bytes | None) -> None:
    if key is not None and (not isinstance(key, bytes) or len(key) != HASH_SIZE):
        raise ValueError(f"{name} must be a 32-byte blob key")


@dataclass(frozen=True)
class DiskTable:
    """One disk of a snapshot: its size in bytes and its block table."""

    size: int
    table: PageTable

    def __post_init__(self):
        if self.table.npages != pages_for(self.size):
            raise ValueError(f"a {self.size}-byte disk has {pages_for(self.size)} blocks, "
                             f"its table {self.table.npages}")


@dataclass(frozen=True, eq=True)
class Manifest:
    """A snapshot.  `config` is the caller's JSON-able machine configuration."""

    config: dict[str, Any]
    state: bytes
    ram: PageTable
    disks: tuple[DiskTable, ...] = ()
    dtb: bytes | None = None
    parent: str | None = None
    steps: int = 0
    vclock: int = 0
    created_ns: int = field(default_factory=time.time_ns)

    def __post_init__(self):
        _check_key("state", self.state)
        _check_key("dtb", self.dtb)
        if self.parent is not None and (len(self.parent) != 2 * HASH_SIZE
                                        or not _is_hex(self.parent)):
            raise ValueError(f"parent {self.parent!r} is not a snapshot id")
        object.__setattr__(self, "disks", tuple(self.disks))

    @property
    def created(self) -> float:
        """Host wall-clock time of the capture, seconds since the epoch."""
        return self.created_ns / 1e9

    def encode(self) -> bytes:
        flags = (FLAG_PARENT if self.parent else 0) | (FLAG_DTB if self.dtb else 0)
        config = json.dumps(self.config, sort_keys=True, separators=(",", ":"),
                            ensure_ascii=False, allow_nan=False).encode()
        parts = [
            _HEAD.pack(MAGIC, VERSION, flags,
                       bytes.fromhex(self.parent) if self.parent else _NONE,
                       self.steps, self.vclock, self.created_ns,
                       self.state, self.dtb or _NONE, len(config)),
            config,
            self.ram.encode(),
            _U16.pack(len(self.disks)),
        ]
        for disk in self.disks:
            parts += [_U64.pack(disk.size), disk.table.encode()]
        return b"".join(parts)

    @property
    def id(self) -> str:
        return snapshot_id(self.encode())

    @classmethod
    def decode(cls, buf: bytes) -> "Manifest":
        """Parse an encoding; ValueError if malformed, ManifestFormatError if from a newer format."""
        buf = bytes(buf)
        if len(buf) < _HEAD.size or buf[:4] != MAGIC:
            raise ValueError("not a snapshot manifest")
        (_, version, flags, parent, steps, vclock, created,
         state, dtb, config_len) = _HEAD.unpack_from(buf)
        if version != VERSION:
            raise ManifestFormatError(f"manifest format {version} (this chrono reads {VERSION})")
        if flags & ~(FLAG_PARENT | FLAG_DTB):
            raise ManifestFormatError(f"manifest flags {flags:#x}")
        offset = _HEAD.size
        if offset + config_len > len(buf):
            raise ValueError("truncated configuration")
        try:
            config = json.loads(buf[offset:offset + config_len].decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"configuration is not JSON ({e})") from None
        offset += config_len
        ram, offset = PageTable.decode(buf, offset)
        if offset + _U16.size > len(buf):
            raise ValueError("truncated disk list")
        (ndisks,) = _U16.unpack_from(buf, offset)
        offset += _U16.size
        disks = []
        for _ in range(ndisks):
            if offset + _U64.size > len(buf):
                raise ValueError("truncated disk list")
            (size,) = _U64.unpack_from(buf, offset)
            table, offset = PageTable.decode(buf, offset + _U64.size)
            disks.append(DiskTable(size, table))
        if offset != len(buf):
            raise ValueError(f"{len(buf) - offset} stray bytes after the manifest")
        return cls(config=config, state=state, ram=ram, disks=tuple(disks),
                   dtb=dtb if flags & FLAG_DTB else None,
                   parent=parent.hex() if flags & FLAG_PARENT else None,
                   steps=steps, vclock=vclock, created_ns=created)

    def blob_keys(self) -> set[bytes]:
        """Keys this manifest names directly: state, device tree and stored leaves."""
        keys = {self.state}
        if self.dtb:
            keys.add(self.dtb)
        keys |= self.ram.leaf_keys
        for disk in self.disks:
            keys |= disk.table.leaf_keys
        return keys

    def tables(self) -> list[tuple[str, PageTable]]:
        """("ram", table), ("disk 0", table), ...: every page table, named for messages."""
        return [("ram", self.ram)] + [(f"disk {i}", d.table) for i, d in enumerate(self.disks)]


def snapshot_id(encoded: bytes) -> str:
    return hashlib.sha256(encoded).hexdigest()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


@dataclass(frozen=True)
class SnapshotDiff:
    """What differs between two snapshots (pages as sorted index arrays)."""

    ram: Any                            # numpy int64 array of RAM page indices
    disks: tuple[Any, ...]              # per disk index present in either snapshot
    state: bool                         # CPU/device state differs
    config: bool                        # machine configuration differs
    dtb: bool                           # device tree differs


def snapshot_diff(source, a: Manifest, b: Manifest) -> SnapshotDiff:
    """Compare two manifests; identical leaves are skipped without reading them."""
    disks = []
    for i in range(max(len(a.disks), len(b.disks))):
        ta = a.disks[i].table if i < len(a.disks) else PageTable.empty(0)
        tb = b.disks[i].table if i < len(b.disks) else PageTable.empty(0)
        disks.append(diff(ta, tb, source))
    return SnapshotDiff(ram=diff(a.ram, b.ram, source), disks=tuple(disks),
                        state=a.state != b.state, config=a.config != b.config, dtb=a.dtb != b.dtb)
