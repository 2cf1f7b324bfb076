"""What chrono loads before it answers: the cold-start budget.

`chrono --version` and `chrono --help` load click and the CLI's own modules,
nothing of the emulator or the store; a fast boot (`chrono run --from NAME`)
gets to the guest's answer without numpy, pyelftools, rich, the gdb stub, the
recordings, the image loader or any thread pool (each costs tens of milliseconds to import:
bench/bench_cold_start.py measures the whole start).  Each test runs chrono as
a user does, in its own process, and reads the modules that process loaded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracehelp import MON, chrono

# chrono's console script, with a note of every module loaded by the time it exits.
PROBE = """\
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["CHRONO_MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "chrono"
from chrono.cli import main
main()
"""

HEAVY = ("numpy", "lmdb", "zstandard", "rich", "elftools", "chrono._core", "chrono.gdb",
         "chrono.replay", "chrono.store", "concurrent.futures", "importlib.metadata", "xml")
# What a fast boot needs of these: the native core and the store (LMDB; LZ4, not zstd,
# which only blobs of older stores use).
# Nor the image loader and device-tree builder: the snapshot holds the machine and its tree.
NOT_IN_FAST_BOOT = ("numpy", "zstandard", "rich", "elftools", "chrono.gdb", "chrono.replay",
                    "concurrent.futures", "importlib.metadata", "xml", "chrono.core.loader",
                    "chrono.core.images", "chrono.core.devicetree", "chrono.core.fdt",
                    "chrono.core.launch")


def loaded_by(tmp_path, *args, script: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-P", "-c", PROBE, *map(str, args)],
                          input=script.encode(), capture_output=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "CHRONO_MODULES_OUT": str(out)})
    return proc, json.loads(out.read_text())


def among(modules: list[str], packages) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_version_and_help_load_neither_the_core_nor_the_store(tmp_path, option):
    proc, modules = loaded_by(tmp_path, option)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert among(modules, HEAVY) == []
    assert "chrono.core.console" not in modules and "dataclasses" not in modules


def test_version_is_the_one_the_package_is_built_with(tmp_path):
    """--version prints chrono.__version__, which is what pyproject.toml gives pip."""
    import tomllib

    import chrono
    proc, _ = loaded_by(tmp_path, "--version")
    assert proc.stdout.decode() == f"chrono, version {chrono.__version__}\n"
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "chrono.__version__"}


def test_a_fast_boot_answers_without_numpy_elftools_rich_or_threads(tmp_path):
    saved = chrono(tmp_path, "run", "--store", tmp_path / "store",
                   script="write keep kept\n" + MON + "savevm booted\n" + MON + "poweroff\n")
    assert saved.returncode == 0, saved.stderr

    proc, modules = loaded_by(tmp_path, "run", "--from", "booted", "--store", tmp_path / "store",
                              script="cat keep\npoweroff\n")
    assert proc.returncode == 0, proc.stderr
    assert b"kept" in proc.stdout and b"Powering off." in proc.stdout
    assert among(modules, NOT_IN_FAST_BOOT) == []
    assert "chrono._core" in modules            # the probe saw a real run


def test_entering_the_monitor_loads_what_a_first_savevm_needs_beside_the_guest(tmp_path):
    """Ctrl-A c starts loading numpy and the page encoder in a thread, so that
    the savevm the user is typing does not wait for them; a run that never
    enters the monitor loads neither, and entering it creates no store."""
    store = tmp_path / "store"
    proc, modules = loaded_by(tmp_path, "run", "--store", store,
                              script="\x01c\x01cpoweroff\n")
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in modules and "chrono._pages" in modules
    assert not store.exists()
    proc, modules = loaded_by(tmp_path, "run", "--store", store, script="poweroff\n")
    assert proc.returncode == 0, proc.stderr
    assert "numpy" not in modules and "chrono._pages" not in modules


def test_savevm_and_loadvm_at_the_monitor_never_load_numpy_ma(tmp_path):
    """numpy.ma costs 8-15 ms to import: np.union1d's first call did, inside
    the first loadvm of every process (the guest paused for it)."""
    script = ("write a one\nsync\n" + MON + "savevm s1\n" + MON + "write b two\nsync\n"
              + MON + "loadvm s1\n" + MON + "ls\npoweroff\n")
    proc, modules = loaded_by(tmp_path, "run", "--store", tmp_path / "store", script=script)
    assert proc.returncode == 0, proc.stderr
    assert b"restored s1" in proc.stdout
    assert "numpy" in modules and "numpy.ma" not in modules


def test_the_page_union_of_a_restore_is_numpys():
    import numpy as np

    from chrono.store.capture import _union
    rng = np.random.default_rng(7)
    for n, m in [(0, 0), (0, 5), (1, 0), (50, 80), (3000, 20)]:
        a = np.sort(rng.choice(100_000, n, replace=False)).astype(np.int64)
        b = rng.integers(0, 100_000, m)                 # unsorted, with repeats
        got = _union(a, b)
        assert got.dtype == np.int64 and np.array_equal(got, np.union1d(a, b))
