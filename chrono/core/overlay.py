"""Overlay files: a disk's guest writes kept when they could not be committed.

When `--commit` cannot write the overlay back at exit (the disk filled up,
the image was removed, replaced or made read-only meanwhile), the blocks are
saved to IMAGE.chrono-overlay next to the image (else in the working
directory), and `chrono disk commit FILE [IMAGE]` writes them in later.

Layout of an overlay file:

    b"CHROVL1\\n"                                   magic, 8 bytes
    {"image": PATH, "size": N, "blocks": K}\\n      JSON, one line
    K x u64 (little-endian)                         byte offsets of the blocks, ascending
    K blocks of 4096 bytes                          their contents (an image's last block may be shorter)
    SHA-256 of everything above                     32 bytes

The file is written under a temporary name, synced, then renamed: a file
with the final name is always complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterable

from chrono.core.guestfiles import open_guest_file
from chrono.core.qcow2 import MAGIC as QCOW2_MAGIC, convert_hint, looks_like_qcow2, raw_name
from chrono.errors import DiskError, os_error_message

MAGIC = b"CHROVL1\n"
SUFFIX = ".chrono-overlay"
BLOCK = 4096
_DIGEST = 32


def write_blocks(f: BinaryIO, blocks: Iterable[tuple[int, bytes]]) -> int:
    """Write (offset, bytes) pieces into ``f`` and sync it; bytes written."""
    written = 0
    for offset, data in blocks:
        os.pwrite(f.fileno(), data, offset)
        written += len(data)
    os.fsync(f.fileno())
    return written


# Why a raw image must never be made to start with a qcow2 header (QEMU guards
# the raw images it probed the same way): the header's backing file could name
# any file of the host, and the guest would read it.
QCOW2_HEADER_RISK = ("and chrono (as QEMU) would then open it as a qcow2 image, with any "
                     "backing file that header names")


def save_overlay(image: Path, size: int, blocks: list[tuple[int, bytes]]) -> Path:
    """Save the blocks meant for ``image`` to an overlay file; its path.

    Tried next to the image, then in the working directory; OSError from the
    last place tried when none could hold it."""
    header = json.dumps({"image": os.fspath(image.absolute()), "size": size,
                         "blocks": len(blocks)}).encode() + b"\n"
    body = b"".join([MAGIC, header, b"".join(struct.pack("<Q", o) for o, _ in blocks),
                     *(data for _, data in blocks)])
    failure: OSError | None = None
    for folder in dict.fromkeys([image.absolute().parent, Path.cwd()]):
        try:
            return _write_new(folder, image.name + SUFFIX, body + hashlib.sha256(body).digest())
        except OSError as e:
            failure = e
    assert failure is not None
    raise failure


def _write_new(folder: Path, name: str, content: bytes) -> Path:
    """``content`` in a new file named ``name`` (or ``name.N``) in ``folder``."""
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        for n in range(1000):
            target = folder / (name if n == 0 else f"{name}.{n}")
            try:
                os.link(tmp, target)            # never replaces an earlier overlay
                return target
            except FileExistsError:
                continue
        raise FileExistsError(f"{folder / name}: too many overlay files")
    finally:
        tmp.unlink(missing_ok=True)


def read_overlay(path: Path) -> tuple[Path, int, list[tuple[int, bytes]]]:
    """(image, image size, blocks) from an overlay file; DiskError if it is
    not one or is damaged."""
    what = f"overlay {path}"
    try:
        with open_guest_file(path, what, DiskError) as f:
            content = f.read()
    except OSError as e:
        raise DiskError(os_error_message(what, e)) from None
    body, digest = content[:-_DIGEST], content[-_DIGEST:]
    if not content.startswith(MAGIC):
        raise DiskError(f"{what}: not a chrono overlay file (they are named IMAGE{SUFFIX})")
    if hashlib.sha256(body).digest() != digest:
        raise DiskError(f"{what}: damaged or truncated (its checksum does not match); "
                        f"it cannot be applied")
    try:
        line_end = body.index(b"\n", len(MAGIC))
        header = json.loads(body[len(MAGIC):line_end])
        image, size, count = Path(header["image"]), int(header["size"]), int(header["blocks"])
        at = line_end + 1
        offsets = struct.unpack_from(f"<{count}Q", body, at)
        at += 8 * count
        blocks = []
        for offset in offsets:
            length = min(BLOCK, size - offset)
            blocks.append((offset, body[at:at + length]))
            at += length
    except (ValueError, KeyError, TypeError, struct.error):
        raise DiskError(f"{what}: malformed header; it cannot be applied") from None
    if at != len(body) or any(len(data) != min(BLOCK, size - o) or o % BLOCK for o, data in blocks):
        raise DiskError(f"{what}: malformed (its blocks do not match its header); it cannot be applied")
    return image, size, blocks


def apply_overlay(path: Path, image: Path | None = None) -> tuple[Path, int]:
    """Write an overlay file's blocks into its image (or ``image``), then
    remove the overlay file; (image, bytes written)."""
    recorded, size, blocks = read_overlay(path)
    image = image or recorded
    what = f"image {image}"
    with open_guest_file(image, what, DiskError) as f:
        if looks_like_qcow2(f.read(len(QCOW2_MAGIC))):
            raise DiskError(f"{what}: is a qcow2 image; chrono commits only into raw images: "
                            f"{convert_hint(image)}, then `chrono disk commit {path} "
                            f"{raw_name(image)}`")
    if any(offset == 0 and looks_like_qcow2(data) for offset, data in blocks):
        raise DiskError(f"overlay {path}: not applied: it writes a qcow2 header at the start of "
                        f"raw image {image}, {QCOW2_HEADER_RISK}")
    with open_guest_file(image, what, DiskError, writable=True,
                         unwritable_hint="make it writable, then apply the overlay again") as f:
        actual = os.fstat(f.fileno()).st_size
        if actual != size:
            raise DiskError(f"{what}: is {actual} bytes, the overlay was made for {size}; "
                            f"give the image it was made for")
        try:
            written = write_blocks(f, blocks)
        except OSError as e:
            raise DiskError(f"{what}: cannot be written ({e.strerror}); the overlay {path} "
                            f"is kept, apply it again when the image can be written") from None
    path.unlink()
    return image, written
