"""chrono: whole-system record/replay, snapshots and time travel for RISC-V guests."""

import os as _os

# numpy's OpenBLAS starts spinning worker threads at import; chrono does no
# linear algebra, and on small machines those threads steal the emulator's core.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
