"""chrono: whole-system record/replay, snapshots and time travel for RISC-V guests."""

import os as _os

# numpy's OpenBLAS starts spinning worker threads at import; chrono does no
# linear algebra, and on small machines those threads steal the emulator's core.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def version() -> str:
    """The installed chrono's version (recorded in traces and bundles)."""
    from importlib.metadata import PackageNotFoundError, version as _version
    try:
        return _version("chrono")
    except PackageNotFoundError:
        return "unknown"
