"""Flattened device tree blobs (DTB, version 17): a small writer and reader.

The format is the Devicetree Specification's "Flattened Devicetree (DTB)
Format" chapter.  A blob is, in order:

    header           40 bytes, ten big-endian u32 fields (see ``_HEADER``)
    memory reserve   (address, size) u64 pairs, ended by a (0, 0) pair; 8-aligned
    structure block  tokens: BEGIN_NODE name, PROP len nameoff value, END_NODE, END
    strings block    NUL-terminated property names, referenced by offset

Everything is big-endian; node names and property values are padded with zeros
to 4-byte boundaries inside the structure block.  The writer builds the whole
tree in memory and serialises it once, so property values are encoded when
they are set (phandles are plain integers handed out by ``DeviceTree.phandle``).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from chrono.errors import ImageError

FDT_MAGIC = 0xD00DFEED
FDT_VERSION = 17
FDT_LAST_COMP_VERSION = 16          # readers that know v16 can read what we write

FDT_BEGIN_NODE = 0x1
FDT_END_NODE = 0x2
FDT_PROP = 0x3
FDT_NOP = 0x4
FDT_END = 0x9

# magic, totalsize, off_dt_struct, off_dt_strings, off_mem_rsvmap, version,
# last_comp_version, boot_cpuid_phys, size_dt_strings, size_dt_struct
_HEADER = struct.Struct(">10I")
_RESERVE_ENTRY = struct.Struct(">QQ")

# Devicetree Specification, "Node Names" and "Property Names".
_NODE_NAME = re.compile(r"[0-9A-Za-z,._+-]{1,31}(@[0-9A-Za-z,._+-]+)?\Z")
_PROPERTY_NAME = re.compile(r"[0-9A-Za-z,._+?#-]{1,31}\Z")

PropertyValue = bool | int | str | bytes | Sequence[int] | Sequence[str] | None


def _pad4(n: int) -> int:
    return (-n) % 4


def cells64(*values: int) -> tuple[int, ...]:
    """64-bit numbers as u32 cell pairs (high, low), e.g. for ``reg`` under
    ``#address-cells = <2>`` / ``#size-cells = <2>``: ``cells64(base, size)``."""
    cells: list[int] = []
    for value in values:
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{value:#x} does not fit in 64 bits")
        cells += [value >> 32, value & 0xFFFF_FFFF]
    return tuple(cells)


def encode_property(value: PropertyValue) -> bytes:
    """Encode a Python value as a property value.

    int -> one u32 cell; sequence of ints -> u32 cells; str -> NUL-terminated
    string; sequence of str -> string list; bytes -> raw; True, None or an
    empty sequence -> empty property (a flag such as ``interrupt-controller``).
    """
    if value is True or value is None:
        return b""
    if value is False:
        raise TypeError("False is not a property value; leave the property out instead")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):
        return _encode_cells((value,))
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, Sequence):
        items = list(value)
        if not items:
            return b""
        if all(isinstance(item, str) for item in items):
            return b"".join(_encode_string(item) for item in items)
        if all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            return _encode_cells(items)
    raise TypeError(f"cannot encode {value!r} as a device tree property")


def _encode_cells(cells: Sequence[int]) -> bytes:
    for cell in cells:
        if not 0 <= cell <= 0xFFFF_FFFF:
            raise ValueError(f"cell value {cell:#x} does not fit in 32 bits; use cells64() for 64-bit values")
    return struct.pack(f">{len(cells)}I", *cells)


def _encode_string(text: str) -> bytes:
    if "\0" in text:
        raise ValueError(f"device tree string {text!r} contains NUL")
    return text.encode("utf-8") + b"\0"


class Node:
    """A device tree node: ordered properties (already encoded) and children."""

    def __init__(self, name: str, *, _root: bool = False):
        if not _root and not _NODE_NAME.match(name):
            raise ValueError(f"invalid device tree node name {name!r}")
        self.name = name
        self.properties: dict[str, bytes] = {}
        self.children: list[Node] = []

    def set(self, name: str, value: PropertyValue = True) -> Node:
        """Set (or replace) a property; returns the node so calls can chain."""
        if not _PROPERTY_NAME.match(name):
            raise ValueError(f"invalid device tree property name {name!r}")
        self.properties[name] = encode_property(value)
        return self

    def add(self, name: str) -> Node:
        """Create and return a child node."""
        if any(child.name == name for child in self.children):
            raise ValueError(f"node {self.name or '/'} already has a child {name!r}")
        child = Node(name)
        self.children.append(child)
        return child

    def child(self, name: str) -> Node:
        """The child called ``name`` (KeyError if absent)."""
        for node in self.children:
            if node.name == name:
                return node
        raise KeyError(name)

    def walk(self) -> Iterator[Node]:
        """This node and all its descendants, depth first, in order."""
        yield self
        for node in self.children:
            yield from node.walk()


class DeviceTree:
    """A tree under construction: the root node, phandles, and serialisation."""

    def __init__(self, boot_cpuid_phys: int = 0):
        self.root = Node("", _root=True)
        self.boot_cpuid_phys = boot_cpuid_phys
        # Memory reservation block entries (address, size).  Empty for this
        # board: firmware (OpenSBI) adds its own reservations as nodes.
        self.reservations: list[tuple[int, int]] = []
        self._next_phandle = 1

    def phandle(self, node: Node) -> int:
        """The node's phandle, allocating one (and its ``phandle`` property) on
        first use; references are then just this integer in a cell list."""
        existing = node.properties.get("phandle")
        if existing is not None:
            return struct.unpack(">I", existing)[0]
        value = self._next_phandle
        self._next_phandle += 1
        node.set("phandle", value)
        return value

    def to_bytes(self) -> bytes:
        """Serialise to a DTB (version 17)."""
        strings = bytearray()
        string_offsets: dict[str, int] = {}

        def name_offset(name: str) -> int:
            # Each property name is stored once; every use points at it.
            offset = string_offsets.get(name)
            if offset is None:
                offset = string_offsets[name] = len(strings)
                strings.extend(name.encode("ascii") + b"\0")
            return offset

        body = bytearray()

        def emit(node: Node) -> None:
            name = node.name.encode("ascii") + b"\0"
            body.extend(struct.pack(">I", FDT_BEGIN_NODE) + name + bytes(_pad4(len(name))))
            for prop, value in node.properties.items():
                body.extend(struct.pack(">III", FDT_PROP, len(value), name_offset(prop)))
                body.extend(value + bytes(_pad4(len(value))))
            for child in node.children:
                emit(child)
            body.extend(struct.pack(">I", FDT_END_NODE))

        emit(self.root)
        body.extend(struct.pack(">I", FDT_END))

        reserve = b"".join(_RESERVE_ENTRY.pack(a, s) for a, s in self.reservations)
        reserve += _RESERVE_ENTRY.pack(0, 0)
        off_rsvmap = _HEADER.size                     # 40: already 8-aligned
        off_struct = off_rsvmap + len(reserve)        # multiple of 16: 4-aligned
        off_strings = off_struct + len(body)
        total = off_strings + len(strings)
        header = _HEADER.pack(FDT_MAGIC, total, off_struct, off_strings, off_rsvmap,
                              FDT_VERSION, FDT_LAST_COMP_VERSION, self.boot_cpuid_phys,
                              len(strings), len(body))
        return header + reserve + bytes(body) + bytes(strings)


# --- Reader --------------------------------------------------------------------

@dataclass
class ParsedNode:
    """A node read back from a blob: raw property values and children by name."""

    name: str
    properties: dict[str, bytes] = field(default_factory=dict)
    children: dict[str, ParsedNode] = field(default_factory=dict)

    def find(self, path: str) -> ParsedNode | None:
        """The node at a path relative to this one ('soc/serial@10000000')."""
        node: ParsedNode | None = self
        for part in path.strip("/").split("/"):
            if part and node is not None:
                node = node.children.get(part)
        return node

    def cells(self, prop: str) -> tuple[int, ...]:
        """A property as u32 cells."""
        raw = self.properties[prop]
        if len(raw) % 4:
            raise ValueError(f"property {prop} is {len(raw)} bytes, not whole cells")
        return struct.unpack(f">{len(raw) // 4}I", raw)

    def u32(self, prop: str) -> int:
        (value,) = self.cells(prop)
        return value

    def u64s(self, prop: str) -> tuple[int, ...]:
        """A property as 64-bit values (pairs of cells)."""
        cells = self.cells(prop)
        return tuple((cells[i] << 32) | cells[i + 1] for i in range(0, len(cells) - 1, 2))

    def strings(self, prop: str) -> list[str]:
        raw = self.properties[prop]
        if not raw.endswith(b"\0"):
            raise ValueError(f"property {prop} is not NUL-terminated")
        return raw[:-1].decode("utf-8").split("\0")

    def string(self, prop: str) -> str:
        (text,) = self.strings(prop)
        return text

    def walk(self) -> Iterator[ParsedNode]:
        yield self
        for node in self.children.values():
            yield from node.walk()


@dataclass
class ParsedTree:
    """A whole blob read back: header facts, reservations and the root node."""

    root: ParsedNode
    version: int
    last_comp_version: int
    boot_cpuid_phys: int
    reservations: list[tuple[int, int]]

    def find(self, path: str) -> ParsedNode | None:
        return self.root.find(path)

    def by_phandle(self, phandle: int) -> ParsedNode | None:
        for node in self.root.walk():
            raw = node.properties.get("phandle")
            if raw is not None and struct.unpack(">I", raw)[0] == phandle:
                return node
        return None


class _Malformed(Exception):
    pass


def parse_dtb(blob: bytes, name: str = "device tree") -> ParsedTree:
    """Read a DTB (version 16 or later).  ImageError names ``name`` if malformed."""
    try:
        return _parse(bytes(blob))
    except (_Malformed, struct.error, UnicodeDecodeError, IndexError) as exc:
        raise ImageError(f"{name}: not a valid device tree blob ({exc}); regenerate it") from None


def _parse(blob: bytes) -> ParsedTree:
    if len(blob) < _HEADER.size:
        raise _Malformed(f"only {len(blob)} bytes")
    (magic, total, off_struct, off_strings, off_rsvmap, version, last_comp,
     boot_cpuid, size_strings, size_struct) = _HEADER.unpack_from(blob)
    if magic != FDT_MAGIC:
        raise _Malformed(f"magic {magic:#x}, expected {FDT_MAGIC:#x}")
    if version < 16 or last_comp > FDT_VERSION:
        raise _Malformed(f"version {version} (last compatible {last_comp}) unsupported")
    if total > len(blob):
        raise _Malformed(f"header says {total} bytes, blob has {len(blob)}")
    if off_struct + size_struct > total or off_strings + size_strings > total or off_rsvmap >= total:
        raise _Malformed("a block lies outside the blob")

    reservations: list[tuple[int, int]] = []
    pos = off_rsvmap
    while True:
        if pos + _RESERVE_ENTRY.size > total:
            raise _Malformed("unterminated memory reservation block")
        address, size = _RESERVE_ENTRY.unpack_from(blob, pos)
        pos += _RESERVE_ENTRY.size
        if address == 0 and size == 0:
            break
        reservations.append((address, size))

    strings = blob[off_strings:off_strings + size_strings]
    end = off_struct + size_struct

    def read_u32(at: int) -> int:
        if at + 4 > end:
            raise _Malformed("structure block ends inside a token")
        return struct.unpack_from(">I", blob, at)[0]

    def read_cstring(data: bytes, at: int, limit: int) -> tuple[str, int]:
        nul = data.find(b"\0", at, limit)
        if nul < 0:
            raise _Malformed("unterminated name")
        return data[at:nul].decode("utf-8"), nul + 1

    stack: list[ParsedNode] = []
    root: ParsedNode | None = None
    pos = off_struct
    while True:
        token = read_u32(pos)
        pos += 4
        if token == FDT_BEGIN_NODE:
            node_name, after = read_cstring(blob, pos, end)
            pos = after + _pad4(after - off_struct)
            node = ParsedNode(node_name)
            if stack:
                stack[-1].children[node_name] = node
            elif root is None:
                root = node
            else:
                raise _Malformed("more than one root node")
            stack.append(node)
        elif token == FDT_PROP:
            if not stack:
                raise _Malformed("property outside any node")
            length, nameoff = read_u32(pos), read_u32(pos + 4)
            pos += 8
            if pos + length > end or nameoff >= len(strings):
                raise _Malformed("property runs past its block")
            prop_name, _ = read_cstring(strings, nameoff, len(strings))
            stack[-1].properties[prop_name] = blob[pos:pos + length]
            pos += length + _pad4(length)
        elif token == FDT_END_NODE:
            if not stack:
                raise _Malformed("END_NODE without BEGIN_NODE")
            stack.pop()
        elif token == FDT_NOP:
            continue
        elif token == FDT_END:
            if stack or root is None:
                raise _Malformed("END before all nodes were closed")
            break
        else:
            raise _Malformed(f"unknown token {token:#x} at offset {pos - 4}")

    return ParsedTree(root, version, last_comp, boot_cpuid, reservations)
