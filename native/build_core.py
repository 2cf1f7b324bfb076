"""cffi build script for the C core (out-of-line API mode).

`pip install -e .` runs it through setup.py's cffi_modules; it compiles every
native/*.c and native/jit/*.c into the extension module chrono._core.
chrono_core.h is the whole boundary: it is both the cdef and the header the
wrapper includes.
"""
import os
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
HEADER = NATIVE / "chrono_core.h"


def _cdef_text() -> str:
    # cffi's cdef does not run the preprocessor: drop #include lines.
    lines = HEADER.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


# CHRONO_SANITIZE=1 builds the core with AddressSanitizer and UBSan, for
# hunting memory and undefined-behaviour bugs (docs/core.md says how to load it:
# the Python interpreter is not instrumented, so libasan must be preloaded).
SANITIZE = os.environ.get("CHRONO_SANITIZE") == "1"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]

# The page provider for lazy restore is implemented in Python.
PYTHON_CALLBACKS = 'extern "Python" int chrono_provide_page(void *ctx, uint64_t page_index);'

ffibuilder = FFI()
ffibuilder.cdef(_cdef_text() + "\n" + PYTHON_CALLBACKS)
ffibuilder.set_source(
    "chrono._core",
    '#include "chrono_core.h"',
    sources=sorted(str(p.relative_to(NATIVE.parent))
                   for p in [*NATIVE.glob("*.c"), *NATIVE.glob("jit/*.c")]),
    include_dirs=[str(NATIVE.relative_to(NATIVE.parent))],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-parameter",
                        *(SANITIZE_FLAGS if SANITIZE else [])],
    extra_link_args=SANITIZE_FLAGS if SANITIZE else [],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
