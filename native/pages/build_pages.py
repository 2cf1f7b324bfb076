"""cffi build script for chrono._pages (out-of-line API mode): page hashing and
compression for the snapshot store (pages.h says why it is its own module)."""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

ffibuilder = FFI()
ffibuilder.cdef("\n".join(line for line in (HERE / "pages.h").read_text().splitlines()
                          if not line.lstrip().startswith("#")))
ffibuilder.set_source(
    "chrono._pages",
    '#include "pages.h"',
    sources=[str((HERE / "pages.c").relative_to(ROOT))],
    include_dirs=[str(HERE.relative_to(ROOT))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    libraries=["dl", "pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
