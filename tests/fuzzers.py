"""The fuzzers of tools/fuzz/, loaded for their short runs in the suite.

tools/ is not a package (the fuzzers are scripts people run), so each is
loaded from its path; it is put in sys.modules under its own name because
dataclasses look their module up there.
"""
import importlib.util
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[1] / "tools" / "fuzz"


def load_fuzzer(name: str):
    """tools/fuzz/NAME.py as a module (loaded once)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
