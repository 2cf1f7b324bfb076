"""A writer for `newc` cpio archives, the format Linux unpacks as an initramfs.

Format (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst):
every entry is a 110-byte ASCII header, the NUL-terminated path, padding to a
multiple of 4, the file data, padding to a multiple of 4.  The header is the magic
``070701`` followed by 13 fields of 8 hex digits:

    ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check

The archive ends with an entry named ``TRAILER!!!``.  Because the header *describes*
a device node (mode S_IFCHR, rdevmajor/rdevminor) rather than copying one from the
host, the archive can hold ``/dev/console`` without root.

Everything is owned by root, and every timestamp is the same fixed ``mtime``, so the
same inputs always give the same bytes.  Parent directories are added automatically
(the kernel does not create missing parents when it unpacks).
"""
from __future__ import annotations

import stat

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_SIZE = 110


def _pad4(n: int) -> int:
    return -n % 4


class CpioWriter:
    """Collects entries in memory; ``getvalue()`` returns the finished archive."""

    def __init__(self, mtime: int = 0):
        self._mtime = mtime
        self._chunks: list[bytes] = []
        self._names: set[str] = set()
        self._next_ino = 1
        self._finished = False

    # --- entries ----------------------------------------------------------------

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        self._entry(path, stat.S_IFDIR | mode, b"", nlink=2)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(path, stat.S_IFREG | mode, data)

    def add_symlink(self, path: str, target: str) -> None:
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def add_char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(path, stat.S_IFCHR | mode, b"", rdev=(major, minor))

    def getvalue(self) -> bytes:
        """The archive, trailer included.  No entries can be added afterwards."""
        if not self._finished:
            self._write_header(TRAILER, mode=0, size=0, nlink=1, ino=0, rdev=(0, 0))
            self._finished = True
        return b"".join(self._chunks)

    # --- internals --------------------------------------------------------------

    def _entry(self, path: str, mode: int, data: bytes, nlink: int = 1,
               rdev: tuple[int, int] = (0, 0)) -> None:
        if self._finished:
            raise ValueError("the archive is finished")
        name = _archive_name(path)
        if name in self._names:
            raise ValueError(f"{path!r} is already in the archive")
        parent = name.rpartition("/")[0]
        if parent and parent not in self._names:
            self.add_dir(parent)
        self._names.add(name)
        self._write_header(name, mode, len(data), nlink, self._next_ino, rdev)
        self._next_ino += 1
        self._chunks.append(data)
        self._chunks.append(b"\0" * _pad4(len(data)))

    def _write_header(self, name: str, mode: int, size: int, nlink: int, ino: int,
                      rdev: tuple[int, int]) -> None:
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, nlink, self._mtime, size, 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = MAGIC + b"".join(b"%08x" % f for f in fields)
        self._chunks.append(header + encoded + b"\0" * _pad4(HEADER_SIZE + len(encoded)))


def _archive_name(path: str) -> str:
    """'/bin/busybox' -> 'bin/busybox': newc names are relative to the archive root."""
    name = path.strip("/")
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"not a usable archive path: {path!r}")
    return name


def read_newc(archive: bytes) -> list[dict]:
    """Parse a newc archive back into entries (name, mode, data, rdev): the inverse of
    CpioWriter, for checking archives where the host has no `cpio`."""
    entries, pos = [], 0
    while True:
        if archive[pos:pos + 6] != MAGIC:
            raise ValueError(f"no newc header at offset {pos}")
        fields = [int(archive[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + HEADER_SIZE
        name = archive[name_start:name_start + namesize - 1].decode()
        data_start = name_start + namesize + _pad4(HEADER_SIZE + namesize)
        data = archive[data_start:data_start + size]
        pos = data_start + size + _pad4(size)
        if name == TRAILER:
            return entries
        entries.append({"name": name, "mode": mode, "data": data,
                        "rdev": (fields[9], fields[10]), "mtime": fields[5]})
