"""qcow2 images read once into raw files in the cache, which disks then map.

A disk is a private mapping of a raw file (chrono.core.disk): the core reads
and writes guest blocks through plain memory, and virtio DMA goes straight to
it.  A qcow2 image is therefore laid out once as a raw sparse file of its
virtual size: its data extents are copied in (copy_file_range: in the kernel,
and a reflink where the file system can), zero and unallocated ranges stay
holes.  Later runs of the same image map that file at once.

    $XDG_CACHE_HOME/chrono/disks/PATHKEY-KEY.raw

KEY is a hash of the whole backing chain's identity (each file's real path,
device, inode, size, mtime and ctime) and of this reader's version: any
change to any file of the chain makes a new KEY, and the file for an older
KEY of the same image (same PATHKEY) is removed when the new one is made.
A file is written under a temporary name, synced, then renamed: a file with
a final name is always complete.  The folder is safe to delete.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chrono.cachedir import cache_root
from chrono.core.qcow2 import Chain
from chrono.errors import DiskError
from chrono.units import format_size

READER_VERSION = 1          # bump when the same image would be laid out differently
_CHUNK = 1 << 20


def disks_dir() -> Path:
    return cache_root() / "disks"


@dataclass
class Materialized:
    """A raw copy of a chain, open read-only."""

    fd: int
    path: Path
    reused: bool            # found in the cache (else written now)
    data_bytes: int         # bytes copied from the chain's files (0 when reused)
    seconds: float


def materialize(chain: Chain, what: str,
                starting: Callable[[Path, int], None] = lambda path, data: None) -> Materialized:
    """The cached raw copy of ``chain``, written now if there is none (then
    ``starting`` is called first with its path and the bytes of data to copy)."""
    t0 = time.perf_counter()
    folder = disks_dir()
    path_key = _digest(os.path.realpath(chain.top.path))[:16]
    key = _digest(json.dumps([READER_VERSION, chain.identity()]))[:32]
    target = folder / f"{path_key}-{key}.raw"
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        pass                                # none yet, or unusable: written (again) below
    else:
        if os.fstat(fd).st_size == chain.size:
            return Materialized(fd, target, True, 0, time.perf_counter() - t0)
        os.close(fd)                        # not what this name promises: write it again
    fd, copied = _write(chain, folder, target, what, starting)
    for older in folder.glob(f"{path_key}-*.raw"):
        if older != target:
            older.unlink(missing_ok=True)   # an earlier state of the same image
    return Materialized(fd, target, False, copied, time.perf_counter() - t0)


def _write(chain: Chain, folder: Path, target: Path, what: str,
           starting: Callable[[Path, int], None]) -> tuple[int, int]:
    """Lay the chain out in ``target``; (read-only fd, bytes copied)."""
    extents = chain.extents()               # every table checked before anything is written
    data = sum(e.length for e in extents)
    tmp = folder / f".{target.stem}.{os.getpid()}.tmp"
    out = fd = -1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        starting(target, data)
        os.ftruncate(out, chain.size)
        copied = 0
        for e in extents:
            copied += _copy(chain.layers[e.layer].fd, out, e.length, e.host, e.guest)
        os.fsync(out)
        moved = [layer.path for layer in chain.layers if layer.changed()]
        if moved:
            raise DiskError(f"{what}: {moved[0]} changed while chrono read it (is a QEMU using "
                            f"it?); start again once nothing writes it")
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        os.rename(tmp, target)
        return fd, copied
    except BaseException as e:
        for opened in (fd, out):
            if opened >= 0:
                os.close(opened)
        out = -1
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass                            # the folder itself could not be made
        if isinstance(e, OSError):
            raise DiskError(f"{what}: cannot lay it out as a raw file in {folder} "
                            f"({e.strerror or e}); it needs {format_size(data)} there (the copy "
                            f"is sparse): free space, or set XDG_CACHE_HOME to a writable "
                            f"folder with room") from None
        raise
    finally:
        if out >= 0:
            os.close(out)


def _copy(src: int, dst: int, length: int, src_at: int, dst_at: int) -> int:
    """Copy ``length`` bytes; a source that ends early leaves the rest zero
    (as QEMU reads past the end of a file).  Bytes copied."""
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, src_at + done, dst_at + done)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            return done + _copy_by_reading(src, dst, length - done, src_at + done, dst_at + done)
        if n == 0:
            break
        done += n
    return done


def _copy_by_reading(src: int, dst: int, length: int, src_at: int, dst_at: int) -> int:
    done = 0
    while done < length:
        data = os.pread(src, min(_CHUNK, length - done), src_at + done)
        if not data:
            break
        os.pwrite(dst, data, dst_at + done)
        done += len(data)
    return done


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
