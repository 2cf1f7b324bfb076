"""ext4 disk images made by the host's mkfs.ext4 (no root needed for a file): blank,
or filled from a folder (mkfs.ext4 -d copies its files, owners and modes)."""
from __future__ import annotations

import os
from pathlib import Path

from chrono.errors import GuestFetchError
from chrono.guests.tools import OWN_FILES, last_words, require_tool, run_tool


def mkfs_ext4() -> str:
    return require_tool("mkfs.ext4", "it makes the guest's ext4 disk image",
                        "install e2fsprogs (apt-get install e2fsprogs)")


def make_ext4(path: Path, size: int, label: str = "chrono", source: Path | None = None) -> None:
    """A sparse file of ``size`` bytes holding an ext4 file system, empty or holding a
    copy of folder ``source``: the root directory is owned by root (whoever runs
    this) and nothing is reserved for root."""
    tool = mkfs_ext4()
    with open(path, "wb") as f:
        f.truncate(size)                  # sparse: only metadata takes space
    fill = ["-d", source] if source is not None else []
    proc = run_tool([tool, "-F", "-q", "-m", "0", "-L", label, "-E", "root_owner=0:0", *fill,
                     path], "mkfs.ext4")
    if proc.returncode != 0:
        os.unlink(path)
        raise GuestFetchError(f"mkfs.ext4 could not make {path.name} "
                              f"({last_words(proc.stderr + proc.stdout)}), {OWN_FILES}")
