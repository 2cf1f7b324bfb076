"""Copy-on-write disks.

A running guest never writes its image file.  The image is mapped privately
(MAP_PRIVATE): reads come from the file, the first guest write to a page makes
a private copy of it in memory.  Those private pages are the overlay; the core
marks each 4 KiB block it writes in two maps, `dirty` (since the last snapshot,
cleared by snapshots) and `written` (since start: the overlay).  At exit the
overlay is discarded, or written back into the image with commit(); if that
fails, it is saved to an overlay file (chrono.core.overlay) instead.

A qcow2 image (QEMU's format, recognised by its magic) is the base the same
way: it is read natively (chrono.core.qcow2) and laid out once as a raw file
in the cache (chrono.core.diskcache), which is mapped like a raw image.  It is
never written: --commit onto it is refused (commit into a raw copy instead).

The numpy views (data, dirty, written) are made on first use, as Machine's
are: a fast boot fills its disk with fill_block and needs no numpy.
"""
from __future__ import annotations

import mmap
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from chrono._core import ffi
from chrono.core.guestfiles import open_guest_file
from chrono.core.overlay import QCOW2_HEADER_RISK, SUFFIX as OVERLAY_SUFFIX, save_overlay, write_blocks
from chrono.errors import DiskError, os_error_message
from chrono.units import format_size

if TYPE_CHECKING:
    from chrono.core.diskcache import Materialized

if TYPE_CHECKING:
    import numpy as np

SECTOR = 512
BLOCK = 4096


class Disk:
    """A disk image opened copy-on-write, or a blank in-memory disk."""

    def __init__(self, mapping: mmap.mmap, size: int, path: Path | None,
                 file: BinaryIO | None = None, format: str = "raw",
                 raw_copy: "Materialized | None" = None):
        self._map = mapping
        self._file = file                   # the image, open for writing when it will be committed
        self.size = size
        self.path = path
        self.format = format                # "raw" or "qcow2" (the image file's format)
        self.raw_copy = raw_copy            # a qcow2's raw copy in the cache
        self.pointer = ffi.from_buffer("uint8_t[]", mapping, require_writable=True)
        self._maps: tuple[memoryview, memoryview] | None = None     # dirty, written (bind)
        # Blocks of the mapped file (a qcow2's raw copy) that hold data, not
        # holes, asked once now: the file never changes under a running guest,
        # and a savevm must not wait for it (maybe_nonzero).
        mapped = raw_copy.path if raw_copy is not None else path
        self._image_data = _data_map(mapped, size) if mapped is not None else None

    @classmethod
    def open(cls, path: str | os.PathLike, writable: bool = False,
             progress: Callable[[str], None] | None = None) -> "Disk":
        """Open an image file; guest writes stay in memory.  With ``writable``
        the file is opened for writing too, so that a commit at exit is known
        to be possible before the guest runs (DiskError now if it is not).
        ``progress`` is told, in a line, when a qcow2 image is being laid out."""
        path = Path(path)
        if _is_qcow2(path):
            from chrono.core import qcow2       # only for qcow2 images: a fast boot has none
            if writable:
                raise DiskError(f"--disk {path}: --commit cannot write into a qcow2 image; "
                                f"convert it to raw ({qcow2.convert_hint(path)}) and commit "
                                f"into that (--disk {qcow2.raw_name(path)} --commit)")
            return cls._open_qcow2(path, progress or (lambda text: None))
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
    def _open_qcow2(cls, path: Path, progress: Callable[[str], None]) -> "Disk":
        """A qcow2 image (and its backing files) as the read-only base."""
        from chrono.core import qcow2
        from chrono.core.diskcache import materialize

        what = f"--disk {path}"
        with qcow2.open_chain(path, what) as chain:
            size = chain.size
            if size == 0:
                raise DiskError(f"{what}: its virtual size is 0 bytes; give it one with "
                                f"`qemu-img resize {path} 64M`")
            if size % SECTOR:
                raise DiskError(f"{what}: its virtual size {size} is not a multiple of {SECTOR} "
                                f"bytes; round it up with `qemu-img resize {path} SIZE`")
            raw = materialize(chain, what, lambda copy, data: progress(
                f"{path}: qcow2 image: laying it out once as a raw file ({format_size(data)} "
                f"of data) in {copy}; later runs reuse it"))
        try:
            mapping = mmap.mmap(raw.fd, size, access=mmap.ACCESS_COPY)
        except OSError as e:
            raise DiskError(os_error_message(f"{what} (its raw copy {raw.path})", e)) from None
        finally:
            os.close(raw.fd)
        return cls(mapping, size, path, format="qcow2", raw_copy=raw)

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

    def maybe_nonzero(self) -> np.ndarray:
        """A byte per block, set where it may hold non-zero bytes, found without
        reading the disk: written since start, or in the image file's data
        extents (its holes read as zeros; every block when the file system
        cannot say)."""
        import numpy as np
        written = self.written if self.written is not None else \
            np.zeros((self.size + BLOCK - 1) // BLOCK, dtype=np.uint8)
        return written.copy() if self.path is None else written | self._image_data

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
        from chrono.core import qcow2

        if self.path is None:
            raise DiskError("this disk has no image file to commit to")
        if self.format != "raw":
            raise DiskError(f"--disk {self.path}: chrono does not write into {self.format} "
                            f"images; convert it to raw ({qcow2.convert_hint(self.path)})")
        if qcow2.looks_like_qcow2(self.data[:len(qcow2.MAGIC)].tobytes()):
            raise DiskError(f"--disk {self.path}: not committed: the guest wrote a qcow2 header "
                            f"at the start of this raw image, {QCOW2_HEADER_RISK}; "
                            f"{self._save_overlay(applicable=False)}")
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


    def _save_overlay(self, applicable: bool = True) -> str:
        """Save the overlay to a file; a sentence saying where and what next."""
        assert self.path is not None
        try:
            saved = save_overlay(self.path, self.size, list(self.overlay()))
        except OSError as e:
            return (f"saving them to a {OVERLAY_SUFFIX} file failed too ({e.strerror or e}): "
                    f"they are lost")
        if not applicable:
            return f"the guest's writes are saved in {saved}, for inspection"
        return (f"they are saved in {saved}: `chrono disk commit {saved}` writes them into "
                f"{self.path} once it can be written")


def _data_map(path: Path, size: int) -> np.ndarray:
    """One byte per block of `path`: 1 where its data extents are (all 1 if the
    file system cannot say)."""
    import numpy as np
    blocks = (size + BLOCK - 1) // BLOCK
    extents = _data_extents(path, size)
    if extents is None:
        return np.ones(blocks, dtype=np.uint8)
    out = np.zeros(blocks, dtype=np.uint8)
    for start, end in extents:
        out[start // BLOCK:(end + BLOCK - 1) // BLOCK] = 1
    return out


def _data_extents(path: Path, size: int) -> list[tuple[int, int]] | None:
    """(start, end) byte ranges of `path` that hold data (SEEK_DATA/SEEK_HOLE);
    None if the file cannot be asked."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    extents, offset = [], 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == 6:                # ENXIO: no data after offset
                    break
                return None
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if start >= size:
                break
            extents.append((start, end))
            offset = end
    except OSError:
        return None
    finally:
        os.close(fd)
    return extents


def _is_qcow2(path: Path) -> bool:
    """Whether --disk ``path`` is a qcow2 image (by its magic, as QEMU probes).
    A file named .qcow2 without the magic is refused: it is damaged, or not one."""
    from chrono.core import qcow2

    what = f"--disk {path}"
    with open_guest_file(path, what, DiskError) as f:
        try:
            head = f.read(len(qcow2.MAGIC))
        except OSError as e:
            raise DiskError(os_error_message(what, e)) from None
    if qcow2.looks_like_qcow2(head):
        return True
    if path.suffix.lower() in qcow2.SUFFIXES:
        start = f"it starts with {head!r}" if head else "it is empty"
        raise DiskError(f"{what}: not a qcow2 image ({start}, not {qcow2.MAGIC!r}): damaged, "
                        f"or a raw image with another name; check it with "
                        f"`qemu-img info {path}`")
    return False


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
