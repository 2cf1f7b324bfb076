"""qcow2 images (QEMU's disk format), read natively as the base of a disk.

What is read: versions 2 and 3, clusters of 512 B to 2 MiB, data and all-zero
clusters, and a chain of backing files (qcow2 or raw; a relative name is
taken from the image's folder).  What is refused, with one line naming the
file, the reason and what to do: compressed clusters, encryption, external
data files, extended L2 entries (subclusters), the dirty and corrupt bits,
unknown incompatible features, backing chains that loop or name a missing
file, and damage (tables outside the file, misaligned or reserved bits set).

Nothing here writes an image.  ``open_chain`` checks the headers of the whole
chain (cheap: a few reads per file); ``Chain.extents`` then walks the L1/L2
tables and says where each guest byte comes from.  chrono.core.diskcache
copies those extents once into a raw file that the disk maps.

Layout (QEMU's docs/interop/qcow2.txt; every number is big-endian):

    header   magic "QFI\\xfb" @0, version u32 @4, backing_file_offset u64 @8,
             backing_file_size u32 @16, cluster_bits u32 @20, size u64 @24
             (the virtual disk), crypt_method u32 @32, l1_size u32 @36,
             l1_table_offset u64 @40; @48-71 refcounts and internal snapshots
             (not needed to read the active disk).  Version 2 ends at 72;
             version 3 adds incompatible_features u64 @72, compatible u64 @80,
             autoclear u64 @88, refcount_order u32 @96, header_length u32 @100.
    header extensions, after the header up to the end of the first cluster:
             type u32, length u32, data padded to 8 bytes; type 0 ends them.
             0xe2792aca: the backing file's format; 0x6803f857: feature names.
    mapping  guest cluster n -> L1[n >> (cluster_bits - 3)]: an L2 table (one
             cluster) -> L2[n % (cluster_size / 8)].
             L1 entry: bits 9-55 the L2 table's offset (0: none: the whole range
             is unallocated), bit 63 "refcount is one"; bits 0-8, 56-62 reserved.
             L2 entry: bit 62 compressed, bit 63 "refcount is one"; a standard
             cluster has bit 0 "reads as zeros" (version 3 only), bits 9-55 the
             host cluster's offset (0: unallocated: read the backing file, or
             zeros without one), bits 1-8 and 56-61 reserved.
"""
from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from chrono.core.guestfiles import open_guest_file
from chrono.errors import DiskError, os_error_message

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"QFI\xfb"
SUFFIXES = (".qcow2", ".qcow")

_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")            # version 2: 72 bytes
_HEADER_V3 = struct.Struct(">QQQII")                  # version 3: 72..104
_EXTENSION = struct.Struct(">II")
EXT_END, EXT_BACKING_FORMAT, EXT_FEATURE_NAMES = 0, 0xE2792ACA, 0x6803F857

MIN_CLUSTER_BITS, MAX_CLUSTER_BITS = 9, 21            # QEMU's limits: 512 B .. 2 MiB
MAX_BACKING_NAME = 1023

# Incompatible feature bits, and why each is refused (bit 3, the compression
# type, only matters for compressed clusters, which are refused where met).
INCOMPAT_DIRTY, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_COMPRESSION, INCOMPAT_EXTL2 = (
    1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4)
_KNOWN_INCOMPAT = (INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION
                   | INCOMPAT_EXTL2)

OFFSET_MASK = 0x00FF_FFFF_FFFF_FE00                   # bits 9-55 of L1 and L2 entries
L1_RESERVED = 0x7F00_0000_0000_01FF
L2_COMPRESSED = 1 << 62
L2_RESERVED = 0x3F00_0000_0000_01FE
L2_ZERO = 1

# What a cluster map holds for each guest cluster besides a host offset.
UNALLOCATED = 0             # read the backing file (zeros without one)
ZERO = -1                   # reads as zeros


def looks_like_qcow2(head: bytes) -> bool:
    return head[:4] == MAGIC


def raw_name(path: Path) -> Path:
    """A name for a raw copy of qcow2 image ``path``: x.qcow2 -> x.img."""
    if path.suffix.lower() in SUFFIXES:
        return path.with_suffix(".img")
    return path.with_name(path.name + ".raw")


def convert_hint(path: Path) -> str:
    """How to turn ``path`` into a raw image chrono can use any way it likes."""
    return f"qemu-img convert -O raw {path} {raw_name(path)}"


@dataclass(frozen=True)
class Extent:
    """Guest bytes [guest, guest + length) are layer ``layer``'s bytes at ``host``."""

    guest: int
    length: int
    layer: int
    host: int


class Layer:
    """One file of a backing chain, open for reading."""

    format = "raw"

    def __init__(self, path: Path, label: str, file: BinaryIO):
        self.path = path
        self.label = label              # how messages name it
        self.file = file
        self.stat = os.fstat(file.fileno())
        self.file_size = self.stat.st_size
        self.size = self.file_size      # the guest-visible size (qcow2: its virtual size)
        self.backing: str | None = None
        self.backing_format: str | None = None

    @property
    def fd(self) -> int:
        return self.file.fileno()

    def identity(self) -> list:
        """What changes when the file does (for cache keys)."""
        s = self.stat
        return [self.format, os.path.realpath(self.path), s.st_dev, s.st_ino, s.st_size,
                s.st_mtime_ns, s.st_ctime_ns]

    def changed(self) -> bool:
        """Whether the file was written since it was opened."""
        now = os.fstat(self.fd)
        return ((now.st_size, now.st_mtime_ns, now.st_ctime_ns)
                != (self.stat.st_size, self.stat.st_mtime_ns, self.stat.st_ctime_ns))

    def close(self) -> None:
        self.file.close()


class Qcow2Layer(Layer):
    """A qcow2 file: its header checked, its active L1 table read."""

    format = "qcow2"

    def __init__(self, path: Path, label: str, file: BinaryIO):
        super().__init__(path, label, file)
        self._map: mmap.mmap | None = None
        self._words: np.ndarray | None = None
        try:
            if self.file_size < _HEADER.size:
                self._damaged(f"truncated: {self.file_size} bytes, shorter than a qcow2 header")
            self._map = mmap.mmap(self.fd, self.file_size, access=mmap.ACCESS_READ)
            self._read_header()
        except BaseException:
            self.close()
            raise

    # ---- header -------------------------------------------------------------------
    def _read_header(self) -> None:
        m = self._map
        (_, version, backing_offset, backing_size, cluster_bits, size, crypt, l1_size,
         l1_offset, _, _, _, _) = _HEADER.unpack_from(m, 0)
        if version == 1:
            self._refuse("is a qcow version 1 image (chrono reads qcow2 versions 2 and 3); "
                         f"convert it: {convert_hint(self.path)}")
        if version not in (2, 3):
            self._refuse(f"qcow2 version {version} is not supported (chrono reads versions 2 and "
                         f"3); convert it: {convert_hint(self.path)}")
        if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
            self._damaged(f"cluster_bits {cluster_bits} is outside {MIN_CLUSTER_BITS}.."
                          f"{MAX_CLUSTER_BITS}")
        self.version, self.cluster_bits = version, cluster_bits
        self.cluster_size = c = 1 << cluster_bits
        header_length, incompatible = _HEADER.size, 0
        if version == 3:
            if self.file_size < _HEADER.size + _HEADER_V3.size:
                self._damaged(f"truncated: {self.file_size} bytes, shorter than a version 3 header")
            incompatible, _, _, _, header_length = _HEADER_V3.unpack_from(m, _HEADER.size)
            if header_length < 104 or header_length % 8 or header_length > c:
                self._damaged(f"header_length {header_length} is not a multiple of 8 "
                              f"between 104 and the cluster size {c}")
        names = self._read_extensions(header_length)
        self._check_features(incompatible, names)
        if crypt:
            method = {1: "AES", 2: "LUKS"}.get(crypt, f"method {crypt}")
            self._refuse(f"is encrypted ({method}), which chrono does not read; decrypt it: "
                         f"qemu-img convert --object secret,id=k,file=PASSWORD-FILE --image-opts "
                         f"driver=qcow2,file.filename={self.path},encrypt.key-secret=k -O raw "
                         f"{raw_name(self.path)}")
        self.size = size
        if backing_offset and backing_size:
            if backing_size > MAX_BACKING_NAME or backing_offset + backing_size > self.file_size:
                self._damaged(f"its backing file name ({backing_size} bytes at {backing_offset}) "
                              f"is longer than {MAX_BACKING_NAME} bytes or outside the file")
            self.backing = os.fsdecode(bytes(m[backing_offset:backing_offset + backing_size]))
        self._read_l1(l1_size, l1_offset)

    def _read_extensions(self, start: int) -> dict[int, str]:
        """Walk the header extensions; the backing format is kept, the feature
        name table returned (incompatible bit -> name) for messages."""
        end = min(self.cluster_size, self.file_size)
        at, names = start, {}
        while True:
            if at + _EXTENSION.size > end:
                self._damaged("its header extensions run past the first cluster (no end marker)")
            kind, length = _EXTENSION.unpack_from(self._map, at)
            if kind == EXT_END:
                return names
            data_at = at + _EXTENSION.size
            if data_at + length > end:
                self._damaged(f"header extension {kind:#010x} ({length} bytes) runs past the "
                              f"first cluster")
            data = bytes(self._map[data_at:data_at + length])
            if kind == EXT_BACKING_FORMAT:
                self.backing_format = data.decode("ascii", "replace")
            elif kind == EXT_FEATURE_NAMES:
                for i in range(0, len(data) - 47, 48):
                    if data[i] == 0 and data[i + 1] < 64:           # type 0: incompatible
                        names[data[i + 1]] = data[i + 2:i + 48].rstrip(b"\0").decode(
                            "ascii", "replace")
            at = data_at + (length + 7) // 8 * 8

    def _check_features(self, incompatible: int, names: dict[int, str]) -> None:
        repair = f"qemu-img check -r all {self.path}"
        if incompatible & INCOMPAT_CORRUPT:
            self._refuse(f"is marked corrupt by QEMU; check and repair it first ({repair}), or "
                         f"convert what is readable: {convert_hint(self.path)}")
        if incompatible & INCOMPAT_DIRTY:
            self._refuse(f"was not closed cleanly (its dirty bit is set, refcounts may be "
                         f"inconsistent); repair it first: {repair}")
        if incompatible & INCOMPAT_DATA_FILE:
            self._refuse("keeps its data in an external data file, which chrono does not read; "
                         f"convert it: {convert_hint(self.path)}")
        if incompatible & INCOMPAT_EXTL2:
            self._refuse("uses extended L2 entries (subclusters), which chrono does not read; "
                         f"convert it: qemu-img convert -O qcow2 {self.path} NEW.qcow2, or "
                         f"{convert_hint(self.path)}")
        unknown = incompatible & ~_KNOWN_INCOMPAT
        if unknown:
            bits = [b for b in range(64) if unknown >> b & 1]
            shown = ", ".join(f"bit {b}" + (f" ({names[b]!r})" if b in names else "")
                              for b in bits)
            self._refuse(f"uses incompatible features this chrono does not know ({shown}); "
                         f"convert it with the qemu-img that made it: {convert_hint(self.path)}")

    def _read_l1(self, l1_size: int, l1_offset: int) -> None:
        import numpy as np  # only once a qcow2 image is read (fast boot needs none)
        c = self.cluster_size
        self.l2_bits = self.cluster_bits - 3
        span = c << self.l2_bits                            # guest bytes one L2 table maps
        needed = -(-self.size // span)
        if l1_size < needed:
            self._damaged(f"its L1 table has {l1_size} entries, too few for its virtual size "
                          f"of {self.size} bytes ({needed} needed)")
        if needed and l1_offset % c:
            self._damaged(f"its L1 table offset {l1_offset:#x} is not cluster-aligned")
        if l1_offset + 8 * needed > self.file_size:
            self._truncated(f"its L1 table ends at {l1_offset + 8 * needed}")
        self._words = np.frombuffer(self._map, dtype=">u8", count=self.file_size // 8)
        l1 = self._words[l1_offset // 8:l1_offset // 8 + needed].astype(np.uint64)
        bad = np.flatnonzero(l1 & np.uint64(L1_RESERVED))
        if len(bad):
            self._damaged(f"L1 entry {bad[0]} has reserved bits set ({int(l1[bad[0]]):#018x})")
        l2 = (l1 & np.uint64(OFFSET_MASK)).astype(np.int64)
        bad = np.flatnonzero(l2 % c)
        if len(bad):
            self._damaged(f"L1 entry {bad[0]} points to an L2 table at {int(l2[bad[0]]):#x}, "
                          f"not cluster-aligned")
        bad = np.flatnonzero(l2 + c > self.file_size)
        bad = bad[l2[bad] != 0]
        if len(bad):
            self._truncated(f"L1 entry {bad[0]} points to an L2 table at {int(l2[bad[0]]):#x}")
        self.l2_tables = l2                                 # byte offsets, 0: none

    # ---- mapping ----------------------------------------------------------------------
    def clusters(self, first: int, count: int) -> np.ndarray:
        """Where guest clusters first..first+count-1 are: a host offset, or
        UNALLOCATED, or ZERO (clusters past the virtual size read as zeros).
        DiskError at the first entry that is compressed or damaged."""
        import numpy as np  # only once a qcow2 image is read (fast boot needs none)
        c = self.cluster_size
        index = np.arange(first, first + count, dtype=np.int64)
        inside = index < -(-self.size // c)
        out = np.full(count, ZERO, dtype=np.int64)
        index = index[inside]
        tables = self.l2_tables[index >> self.l2_bits]
        present = tables != 0
        where = (tables[present] >> 3) + (index[present] & ((1 << self.l2_bits) - 1))
        entries = self._words[where].astype(np.uint64)
        result = np.full(len(index), UNALLOCATED, dtype=np.int64)
        result[present] = self._classify(entries, index[present])
        out[inside] = result
        return out

    def _classify(self, entries: np.ndarray, index: np.ndarray) -> np.ndarray:
        import numpy as np  # only once a qcow2 image is read (fast boot needs none)
        c = self.cluster_size
        reserved = L2_RESERVED | (L2_ZERO if self.version == 2 else 0)

        def first(mask) -> tuple[int, int]:
            i = int(np.flatnonzero(mask)[0])
            return int(index[i]) * c, int(entries[i])

        if (entries & np.uint64(L2_COMPRESSED)).any():
            guest, _ = first(entries & np.uint64(L2_COMPRESSED))
            self._refuse(f"has compressed clusters (the first at guest offset {guest:#x}; made "
                         f"with qemu-img convert -c?), which chrono does not read; write an "
                         f"uncompressed copy: qemu-img convert -O qcow2 {self.path} NEW.qcow2, "
                         f"or {convert_hint(self.path)}")
        if (entries & np.uint64(reserved)).any():
            guest, entry = first(entries & np.uint64(reserved))
            self._damaged(f"the L2 entry for guest offset {guest:#x} has reserved bits set "
                          f"({entry:#018x})")
        host = (entries & np.uint64(OFFSET_MASK)).astype(np.int64)
        zero = (entries & np.uint64(L2_ZERO)) != 0
        data = ~zero & (host != 0)
        if (data & (host % c != 0)).any():
            guest, entry = first(data & (host % c != 0))
            self._damaged(f"the L2 entry for guest offset {guest:#x} points to {entry & OFFSET_MASK:#x}, "
                          f"not cluster-aligned")
        if (data & (host >= self.file_size)).any():
            guest, entry = first(data & (host >= self.file_size))
            self._truncated(f"the L2 entry for guest offset {guest:#x} points to "
                            f"{entry & OFFSET_MASK:#x}")
        return np.where(zero, ZERO, host)

    # ---- errors -----------------------------------------------------------------------
    def _refuse(self, reason: str):
        raise DiskError(f"{self.label}: {reason}")

    def _damaged(self, detail: str):
        raise DiskError(f"{self.label}: damaged qcow2 image ({detail}); check it with "
                        f"`qemu-img check {self.path}`")

    def _truncated(self, detail: str):
        raise DiskError(f"{self.label}: truncated or damaged qcow2 image ({detail}, beyond the "
                        f"end of the file at {self.file_size} bytes); re-copy it, or check it "
                        f"with `qemu-img check {self.path}`")

    def close(self) -> None:
        self._words = None
        if self._map is not None:
            self._map.close()
            self._map = None
        super().close()


class Chain:
    """An image and its backing files, top first, all open for reading."""

    def __init__(self, layers: list[Layer]):
        self.layers = layers

    @property
    def top(self) -> Layer:
        return self.layers[0]

    @property
    def size(self) -> int:
        return self.top.size

    def identity(self) -> list:
        return [layer.identity() for layer in self.layers]

    def close(self) -> None:
        for layer in self.layers:
            layer.close()

    def __enter__(self) -> "Chain":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def extents(self) -> list[Extent]:
        """Where every guest byte that is not zero comes from, in guest order.

        Guest space is resolved in windows of at most 2^20 units (a unit is the
        smallest cluster in the chain), top layer first: what a layer leaves
        unallocated falls through to the next; a raw layer holds everything up
        to its end; what nothing holds reads as zeros (and is not listed)."""
        qcows = [layer for layer in self.layers if isinstance(layer, Qcow2Layer)]
        unit = min(layer.cluster_size for layer in qcows)
        window_units = 1 << 20
        window = unit * window_units
        found: list[Extent] = []
        for start in range(0, self.size, window):
            n = min(window_units, -(-(self.size - start) // unit))
            found += self._window_extents(start, n, unit)
        return _merged(found)

    def _window_extents(self, start: int, n: int, unit: int) -> list[Extent]:
        import numpy as np  # only once a qcow2 image is read (fast boot needs none)
        source = np.full(n, _PENDING, dtype=np.int64)       # layer index, or _PENDING / _ZEROS
        host = np.zeros(n, dtype=np.int64)
        for k, layer in enumerate(self.layers):
            pending = source == _PENDING
            if not pending.any() or start >= layer.size:
                break                                       # past a backing file's end: zeros
            state, where = _units(layer, start, n, unit)
            source[pending & (state == _ZERO_UNIT)] = _ZEROS
            data = pending & (state == _DATA_UNIT)
            source[data] = k
            host[data] = where[data]
        data = np.flatnonzero(source >= 0)
        if not len(data):
            return []
        # Runs of units from one layer at consecutive host offsets.
        breaks = np.flatnonzero((np.diff(data) != 1)
                                | (source[data[1:]] != source[data[:-1]])
                                | (host[data[1:]] != host[data[:-1]] + unit)) + 1
        out = []
        for run in np.split(data, breaks):
            first, k = int(run[0]), int(source[run[0]])
            at = start + first * unit
            # A layer smaller than the disk (or than its last unit) reads as zeros past its end.
            length = min(len(run) * unit, self.size - at, self.layers[k].size - at)
            if length > 0:
                out.append(Extent(at, length, k, int(host[first])))
        return out


_PENDING, _ZEROS = -1, -2                               # a unit's source while resolving
_UNALLOCATED_UNIT, _ZERO_UNIT, _DATA_UNIT = 0, 1, 2


def _units(layer: Layer, start: int, n: int, unit: int) -> tuple[np.ndarray, np.ndarray]:
    """(state, host offset) of ``n`` units of ``unit`` bytes from guest offset
    ``start`` in one layer: unallocated (fall through), zeros, or data."""
    import numpy as np  # only once a qcow2 image is read (fast boot needs none)
    offsets = np.arange(n, dtype=np.int64) * unit
    if not isinstance(layer, Qcow2Layer):
        host = start + offsets                          # a raw file maps onto itself
        state = np.where(host < layer.size, _DATA_UNIT, _ZERO_UNIT)
        return state, host
    c = layer.cluster_size
    per = c // unit
    mapped = np.repeat(layer.clusters(start // c, -(-n // per)), per)[:n]
    state = np.select([mapped > 0, mapped == ZERO], [_DATA_UNIT, _ZERO_UNIT], _UNALLOCATED_UNIT)
    host = np.where(mapped > 0, mapped + offsets % c, 0)
    return state, host


def _merged(extents: list[Extent]) -> list[Extent]:
    """Join extents that continue each other across window boundaries."""
    out: list[Extent] = []
    for e in extents:
        if out:
            last = out[-1]
            if (last.layer == e.layer and last.guest + last.length == e.guest
                    and last.host + last.length == e.host):
                out[-1] = Extent(last.guest, last.length + e.length, last.layer, last.host)
                continue
        out.append(e)
    return out


def open_chain(path: Path, what: str) -> Chain:
    """The qcow2 image ``path`` and its backing files, headers checked.
    ``what`` names the image in messages (e.g. '--disk x.qcow2')."""
    top = path
    layers: list[Layer] = []
    seen: dict[tuple[int, int], Path] = {}
    try:
        label, fmt = what, "qcow2"
        while True:
            layer = _open_layer(path, label, fmt)
            layers.append(layer)
            key = (layer.stat.st_dev, layer.stat.st_ino)
            if key in seen:
                names = " -> ".join(str(x.path) for x in layers)
                raise DiskError(f"{what}: its backing files form a loop ({names}); point "
                                f"{layers[-2].path} at the right one with `qemu-img rebase -u "
                                f"-b BACKING {layers[-2].path}`")
            seen[key] = layer.path
            if layer.backing is None:
                return Chain(layers)
            path, fmt = _backing_path(layer, what, top)
            label = f"{what}: backing file {path} (named by {layer.path})"
    except BaseException:
        for layer in layers:
            layer.close()
        raise


def _backing_path(layer: Layer, what: str, top: Path) -> tuple[Path, str | None]:
    name = layer.backing
    assert name is not None
    if name.startswith("json:") or "://" in name:
        raise DiskError(f"{what}: {layer.path} names the backing file {name!r}, which is not "
                        f"a file chrono can open; convert the chain: {convert_hint(top)}")
    fmt = layer.backing_format
    if fmt not in (None, "qcow2", "raw"):
        raise DiskError(f"{what}: {layer.path} names a backing file in {fmt} format ({name}), "
                        f"which chrono does not read; convert the chain: {convert_hint(top)}")
    # As QEMU does, a relative name is taken from the folder of the image naming it.
    path = layer.path.parent / name
    if not os.path.lexists(path):
        raise DiskError(f"{what}: the backing file {name!r} named by {layer.path} is missing "
                        f"(looked for {path}); put it back, or point the image at its new place: "
                        f"qemu-img rebase -u -b NEWPATH -F qcow2 {layer.path}")
    return path, fmt


def _open_layer(path: Path, label: str, fmt: str | None) -> Layer:
    f = open_guest_file(path, label, DiskError)
    try:
        head = os.pread(f.fileno(), len(MAGIC), 0)
    except OSError as e:
        f.close()
        raise DiskError(os_error_message(label, e)) from None
    if fmt is None:
        fmt = "qcow2" if looks_like_qcow2(head) else "raw"     # what QEMU probes, for qcow2 and raw
    if fmt == "raw":
        return Layer(path, label, f)
    if not looks_like_qcow2(head):
        f.close()
        raise DiskError(f"{label}: not a qcow2 image (it starts with {head!r}, not {MAGIC!r}); "
                        f"check it with `qemu-img info {path}`")
    return Qcow2Layer(path, label, f)
