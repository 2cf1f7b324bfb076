"""bench/bench_snapshots.py says so, loudly, when it cannot measure QEMU.

It used to drop the QEMU column silently when `qemu-img` was missing; now a
line on stderr (before the long chrono runs) names the missing tool and the
Debian package that has it, and the table's QEMU header says why it is empty.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_snapshots.py"


def path_with_only(tmp_path, *tools):
    """A PATH directory holding just these tools (links to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed for this test"
        (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def run_bench(tmp_path, path, *args):
    env = dict(os.environ, PATH=path)
    # an empty cache: the bench stops at "fetch the guest", after its tool check
    return subprocess.run([sys.executable, str(BENCH), "--cache", str(tmp_path / "cache"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_missing_qemu_img_is_named_with_its_package(tmp_path):
    proc = run_bench(tmp_path, path_with_only(tmp_path, "qemu-system-riscv64"))
    assert ("bench_snapshots: the QEMU column will not be measured: qemu-img not found "
            "(Debian: apt-get install qemu-utils)") in proc.stderr.splitlines()


def test_no_qemu_option_is_given_as_the_reason(tmp_path):
    proc = run_bench(tmp_path, path_with_only(tmp_path, "qemu-system-riscv64", "qemu-img"), "--no-qemu")
    assert "bench_snapshots: the QEMU column will not be measured: --no-qemu given" in proc.stderr


def test_nothing_is_said_when_qemu_can_be_measured(tmp_path):
    proc = run_bench(tmp_path, path_with_only(tmp_path, "qemu-system-riscv64", "qemu-img"))
    assert "will not be measured" not in proc.stderr
