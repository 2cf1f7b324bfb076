"""Where fetched guests live, and how a build replaces one without ever leaving a
half-written guest behind.

    $XDG_CACHE_HOME/chrono/        (default ~/.cache/chrono)
        apt/                        private apt state and downloaded packages
        guests/NAME/                one complete guest (guest.json + its files)
        guests/.NAME-build-XXXX/    a build in progress (removed when it ends)

A build writes into its own folder next to the target and renames it into place
only once it is complete, so a failed or interrupted build changes nothing.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from chrono.cachedir import cache_root  # noqa: F401  (the guests' cache lives there)


def guests_dir(root: Path) -> Path:
    return root / "guests"


def apt_dir(root: Path) -> Path:
    return root / "apt"


@contextmanager
def building(target: Path) -> Iterator[tuple[Path, Path]]:
    """Yields (out, scratch): build the guest's files into ``out``, use ``scratch``
    for anything temporary.  On a normal exit ``out`` replaces ``target``; on an
    exception (or Ctrl-C) ``target`` is left as it was.  Either way the build folder
    is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-build-", dir=target.parent))
    try:
        out, scratch = work / "guest", work / "scratch"
        out.mkdir()
        scratch.mkdir()
        yield out, scratch
        if target.exists():
            # Two renames in one folder: a crash between them leaves no guest (the
            # next fetch builds it again), never a partial one.
            target.rename(work / "previous")
        out.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def allocated_size(path: Path) -> int:
    """Bytes a folder takes on disk (sparse disk images count what they use)."""
    return sum(p.lstat().st_blocks * 512 for p in path.rglob("*") if p.is_file())
