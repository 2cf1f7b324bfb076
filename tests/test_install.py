"""The installed chrono is whole: every package of the source tree is in it.

CI installs chrono without -e (a wheel in a fresh venv), so there these tests
check what a user's `pip install .` gives; a package missing from the wheel
used to pass every editable run and break `chrono trace list` for users.
"""
import importlib
import subprocess
from pathlib import Path

import pytest

from chronocmd import CHRONO

SOURCE = Path(__file__).resolve().parents[1] / "chrono"


def source_packages() -> list[str]:
    return sorted(".".join(p.parent.relative_to(SOURCE.parent).parts)
                  for p in SOURCE.rglob("__init__.py"))


@pytest.mark.parametrize("package", source_packages())
def test_every_source_package_is_installed(package):
    module = importlib.import_module(package)
    assert module.__file__, package


def test_no_package_is_empty():
    """A package holds modules; an empty one says the layout is out of date."""
    for package in source_packages():
        folder = SOURCE.parent.joinpath(*package.split("."))
        modules = [p for p in folder.iterdir() if p.suffix == ".py" and p.name != "__init__.py"
                   or (p / "__init__.py").exists()]
        assert modules, f"{package} is an empty package"


def test_installed_chrono_lists_recordings(tmp_path):
    """`chrono trace list` imports the record/replay package (missing from wheels once)."""
    proc = subprocess.run(CHRONO + ["trace", "list", "--store", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "no chrono store" in proc.stderr       # the command ran: its package imported


@pytest.mark.parametrize("module", ["chrono._core", "chrono._pages"])
def test_the_compiled_modules_are_installed(module):
    """Both cffi modules are built by `pip install .` (setup.py's cffi_modules);
    the store's page encoder finds its libraries (libcrypto, liblz4)."""
    importlib.import_module(module)
    from chrono.store.encoder import native_problem
    assert native_problem() is None, native_problem()
