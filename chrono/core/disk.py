"""Copy-on-write disks.

A running guest never writes its image file.  The image is mapped privately
(MAP_PRIVATE): reads come from the file, the first guest write to a page makes
a private copy of it in memory.  Those private pages are the overlay; the core
marks each 4 KiB block it writes in two maps, `dirty` (since the last snapshot,
cleared by snapshots) and `written` (since start: the overlay).  At exit the
overlay is discarded, or written back into the image with commit(); if that
fails, it is saved to an overlay file (chrono.core.overlay) instead.

The numpy views (data, dirty, written) are made on first use, as Machine's
are: a fast boot fills its disk with fill_block and needs no numpy.
"""
from __future__ import annotations

import mmap
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from chrono._core import ffi
from chrono.core.guestfiles import open_guest_file
from chrono.core.overlay import SUFFIX as OVERLAY_SUFFIX, save_overlay, write_blocks
from chrono.errors import DiskError, os_error_message

if TYPE_CHECKING:
    import numpy as np

SECTOR = 512
BLOCK = 4096


class Disk:
    """A disk image opened copy-on-write, or a blank in-memory disk."""

    def __init__(self, mapping: mmap.mmap, size: int, path: Path | None,
                 file: BinaryIO | None = None):
        self._map = mapping
        self._file = file                   # the image, open for writing when it will be committed
        self.size = size
        self.path = path
        self.pointer = ffi.from_buffer("uint8_t[]", mapping, require_writable=True)
        self._maps: tuple[memoryview, memoryview] | None = None     # dirty, written (bind)

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False) -> "Disk":
        """Open an image file; guest writes stay in memory.  With ``writable``
        the file is opened for writing too, so that a commit at exit is known
        to be possible before the guest runs (DiskError now if it is not)."""
        path = Path(path)
        f = open_guest_file(path, f"--disk {path}", DiskError, writable=writable,
                            unwritable_hint="--commit writes the guest's writes back into it: make "
                                            "it writable (permissions, chattr -i, a read-write "
                                            "mount) or drop --commit")
        try:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise DiskError(f"--disk {path}: disk image is empty; create one with "
                                f"`truncate -s 64M {path}`")
            if size % SECTOR:
                raise DiskError(f"--disk {path}: disk image size {size} is not a multiple of "
                                f"{SECTOR} bytes; pad it with `truncate -s %{SECTOR} {path}`")
            mapping = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        except OSError as e:
            f.close()
            raise DiskError(os_error_message(f"--disk {path}", e)) from None
        except DiskError:
            f.close()
            raise
        if not writable:
            f.close()
            f = None
        return cls(mapping, size, path, f)

    @classmethod
    def blank(cls, size: int) -> "Disk":
        """A zero-filled disk that exists only in memory."""
        if size <= 0 or size % SECTOR:
            raise DiskError(f"blank disk size {size} is not a positive multiple of {SECTOR}")
        return cls(mmap.mmap(-1, size), size, None)

    def bind(self, dirty, written) -> None:
        """Called by Machine.attach_disk with the core's block maps (buffers of
        one byte per 4 KiB block)."""
        self._maps = (memoryview(dirty), memoryview(written))
        self.__dict__.pop("dirty", None)
        self.__dict__.pop("written", None)

    @cached_property
    def data(self) -> np.ndarray:
        """The disk's bytes as the guest sees them (image + overlay)."""
        import numpy as np
        return np.frombuffer(self._map, dtype=np.uint8, count=self.size)

    @cached_property
    def dirty(self) -> np.ndarray | None:
        """Blocks written since the last snapshot (None before attach_disk)."""
        return self._map_view(0)

    @cached_property
    def written(self) -> np.ndarray | None:
        """Blocks written since start: the overlay (None before attach_disk)."""
        return self._map_view(1)

    def _map_view(self, which: int) -> np.ndarray | None:
        if self._maps is None:
            return None
        import numpy as np
        return np.frombuffer(self._maps[which], dtype=np.uint8)

    def fill_block(self, block: int, data: bytes) -> None:
        """A restore's write: block `block` gets `data` (4 KiB, cut at the end
        of the disk) and is overlay from now on (it differs from the image).
        Not dirty: it is what the snapshot restored from holds."""
        start = block * BLOCK
        end = min(start + BLOCK, self.size)
        if len(data) != BLOCK:
            raise ValueError(f"a disk block is {BLOCK} bytes, not {len(data)}")
        self._map[start:end] = data[:end - start]
        self._maps[1][block] = 1

    def overlay_blocks(self) -> np.ndarray:
        """Indices of the 4 KiB blocks the guest has written since start."""
        import numpy as np
        if self.written is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.written)

    def overlay(self) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) of every block the guest has written."""
        for block in self.overlay_blocks():
            start = int(block) * BLOCK
            yield start, self.data[start:min(start + BLOCK, self.size)].tobytes()

    def commit(self) -> int:
        """Write the overlay back into the image file; returns bytes written.

        The overlay is never lost: if the write-back fails, it is saved to a
        file (next to the image, else in the working directory) and the
        DiskError says where and how to apply it (`chrono disk commit FILE`)."""
        if self.path is None:
            raise DiskError("this disk has no image file to commit to")
        try:
            f = self._file or open_guest_file(self.path, f"--disk {self.path}", DiskError, writable=True)
            _check_same_file(f, self.path)
            written = write_blocks(f, self.overlay())
        except (OSError, DiskError) as e:
            reason = e.message if isinstance(e, DiskError) else e.strerror or str(e)
            raise DiskError(f"cannot commit the guest's writes ({reason}); "
                            f"{self._save_overlay()}") from None
        if self.written is not None:
            self.written[:] = 0
        return written


    def _save_overlay(self) -> str:
        """Save the overlay to a file; a sentence saying where and what next."""
        assert self.path is not None
        try:
            saved = save_overlay(self.path, self.size, list(self.overlay()))
        except OSError as e:
            return (f"saving them to a {OVERLAY_SUFFIX} file failed too ({e.strerror or e}): "
                    f"they are lost")
        return (f"they are saved in {saved}: `chrono disk commit {saved}` writes them into "
                f"{self.path} once it can be written")


def _check_same_file(f: BinaryIO, path: Path) -> None:
    """Refuse to commit into a file that is no longer the image at ``path``
    (deleted or replaced meanwhile): the writes would land where nobody looks."""
    opened = os.fstat(f.fileno())
    try:
        now = os.stat(path)
    except OSError as e:
        raise DiskError(os_error_message(f"--disk {path}", e)) from None
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        raise DiskError(f"--disk {path}: the file was replaced while the guest ran")
