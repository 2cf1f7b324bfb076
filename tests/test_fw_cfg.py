"""The firmware configuration device (fw_cfg) against QEMU's.

A bare-metal reader (tests/guests/fw_cfg.c) prints what the traditional
interface and the DMA interface read of every standard item, the file
directory and each file; QEMU 7.2's virt machine with no options is the
reference, so the output must match it byte for byte, on the interpreter and
on the JIT.  The guest-side view through Linux's qemu_fw_cfg driver and
systemd-detect-virt is tested on the full Debian guest (test_debian_full.py).
"""

import shutil
import subprocess

import pytest

import rvasm
from chronocmd import CHRONO

READER = """
        .globl main
main:
        call fw_cfg_main
        POWEROFF 0x5555
"""


@pytest.fixture(scope="module")
def reader():
    return rvasm.build(READER, c_source=rvasm.guest_c("fw_cfg.c"))


@pytest.fixture(scope="module")
def qemu_output(reader):
    qemu = shutil.which("qemu-system-riscv64")
    assert qemu is not None, "qemu-system-riscv64 is the reference (Debian: qemu-system-misc)"
    proc = subprocess.run([qemu, "-M", "virt", "-bios", "none", "-m", "128M", "-kernel", str(reader),
                           "-nographic", "-serial", "stdio", "-monitor", "none"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.mark.parametrize("jit", ["0", "1"])
def test_the_reader_sees_what_it_sees_on_qemu(reader, qemu_output, jit, monkeypatch):
    monkeypatch.setenv("CHRONO_JIT", jit)
    proc = subprocess.run([*CHRONO, "run", "--kernel", str(reader)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stdout == qemu_output
    lines = proc.stdout.decode().splitlines()
    # what the comparison covers: both interfaces, and QEMU's three default files
    assert "signature 51454d55" in lines and "dma_signature 51454d5500000000" in lines
    assert "dma_write_status 01000000" in lines
    assert "content etc/boot-fail-wait ffffffff000000000000000000000000" in lines
    assert lines[-1] == "done"
