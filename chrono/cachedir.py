"""Where chrono keeps what it can rebuild: $XDG_CACHE_HOME/chrono (default ~/.cache/chrono)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "chrono"
