"""chrono: whole-system record/replay, snapshots and time travel for RISC-V guests."""

import os as _os

# numpy's OpenBLAS starts spinning worker threads at import; chrono does no
# linear algebra, and on small machines those threads steal the emulator's core.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# The one place the version is written: pyproject.toml reads it from here.
# (importlib.metadata would cost `chrono --version` a third of its time.)
__version__ = "0.1.0"


def version() -> str:
    """This chrono's version (recorded in traces and bundles)."""
    return __version__
