"""Copy-on-write disks.

A running guest never writes its image file.  The image is mapped privately
(MAP_PRIVATE): reads come from the file, the first guest write to a page makes
a private copy of it in memory.  Those private pages are the overlay; the core
marks each 4 KiB block it writes in two maps, `dirty` (since the last snapshot,
cleared by snapshots) and `written` (since start: the overlay).  At exit the
overlay is discarded, or written back into the image with commit().
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from chrono._core import ffi
from chrono.errors import DiskError, os_error_message

SECTOR = 512
BLOCK = 4096


class Disk:
    """A disk image opened copy-on-write, or a blank in-memory disk."""

    def __init__(self, mapping: mmap.mmap, size: int, path: Path | None):
        self._map = mapping
        self.size = size
        self.path = path
        self.data = np.frombuffer(mapping, dtype=np.uint8, count=size)
        self.pointer = ffi.from_buffer("uint8_t[]", mapping, require_writable=True)
        self.dirty: np.ndarray | None = None
        self.written: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Disk":
        """Open an image file read-only; guest writes stay in memory."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise DiskError(f"{path}: disk image is empty; create one with "
                                    f"`truncate -s 64M {path}`")
                if size % SECTOR:
                    raise DiskError(f"{path}: disk image size {size} is not a multiple of "
                                    f"{SECTOR} bytes; pad it with `truncate -s %{SECTOR} {path}`")
                mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        except OSError as e:
            raise DiskError(os_error_message(f"disk image {path}", e)) from None
        return cls(mapping, size, path)

    @classmethod
    def blank(cls, size: int) -> "Disk":
        """A zero-filled disk that exists only in memory."""
        if size <= 0 or size % SECTOR:
            raise DiskError(f"blank disk size {size} is not a positive multiple of {SECTOR}")
        return cls(mmap.mmap(-1, size), size, None)

    def bind(self, dirty: np.ndarray, written: np.ndarray) -> None:
        """Called by Machine.attach_disk with the core's block maps."""
        self.dirty = dirty
        self.written = written

    def overlay_blocks(self) -> np.ndarray:
        """Indices of the 4 KiB blocks the guest has written since start."""
        if self.written is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.written)

    def commit(self) -> int:
        """Write the overlay back into the image file; returns bytes written."""
        if self.path is None:
            raise DiskError("this disk has no image file to commit to")
        blocks = self.overlay_blocks()
        written = 0
        try:
            with open(self.path, "r+b") as f:
                for block in blocks:
                    start = int(block) * BLOCK
                    end = min(start + BLOCK, self.size)
                    f.seek(start)
                    f.write(self.data[start:end].tobytes())
                    written += end - start
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise DiskError(f"{self.path}: cannot commit the overlay ({e.strerror})") from None
        if self.written is not None:
            self.written[:] = 0
        return written
