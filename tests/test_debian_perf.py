"""What Linux makes of chrono's CPU on the Debian guest: the ASID allocator is on
(satp's 16 ASID bits, as on QEMU's virt), and perf counting works through the
SBI PMU of Debian's OpenSBI.

A small static program (built here with Debian's riscv64-linux-gnu-gcc, put on
an ext4 disk for /mnt) opens hardware `instructions` and `cycles` counters with
perf_event_open, runs a loop of 2,000,000 instructions between enable and
disable, and prints both counts.  Counting covers user and kernel (without
Sscofpmf Linux refuses exclude_kernel, as it does on QEMU 7.2's default CPU),
so the counts are the loop plus the few syscalls around it.  The session is
recorded and replayed: the replay prints the same counts, bit for bit.

Marked `network` (the guest comes from the shared test cache, built once by
test_guest_debian.py's fixture).
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures
from tracehelp import chrono

pytestmark = pytest.mark.network

GCC = "riscv64-linux-gnu-gcc"
LOOP = 1_000_000                        # iterations of addi + bnez
TIMEOUT = 600

PROGRAM = r"""
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int counter(uint64_t config)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_HARDWARE;
    a.config = config;
    a.disabled = 1;
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    int fi = counter(PERF_COUNT_HW_INSTRUCTIONS), fc = counter(PERF_COUNT_HW_CPU_CYCLES);
    if (fi < 0 || fc < 0) { perror("perf_event_open"); return 1; }
    ioctl(fi, PERF_EVENT_IOC_ENABLE, 0);
    ioctl(fc, PERF_EVENT_IOC_ENABLE, 0);
    __asm__ volatile("1: addi %0, %0, -1\n bnez %0, 1b" : "+r"(n));
    ioctl(fi, PERF_EVENT_IOC_DISABLE, 0);
    ioctl(fc, PERF_EVENT_IOC_DISABLE, 0);
    uint64_t ins = 0, cyc = 0;
    if (read(fi, &ins, 8) != 8 || read(fc, &cyc, 8) != 8) { perror("read"); return 1; }
    printf("perf: instructions %llu cycles %llu\n", (unsigned long long)ins, (unsigned long long)cyc);
    return 0;
}
"""


@pytest.fixture(scope="module")
def perf_disk(tmp_path_factory):
    """An ext4 image holding /perfcount."""
    gcc = shutil.which(GCC)
    assert gcc, f"{GCC} is missing: apt-get install gcc-riscv64-linux-gnu"
    work = tmp_path_factory.mktemp("perf")
    (work / "perfcount.c").write_text(PROGRAM)
    root = work / "root"
    root.mkdir()
    subprocess.run([gcc, "-O2", "-static", "-o", root / "perfcount", work / "perfcount.c"], check=True)
    image = work / "perf.img"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
    subprocess.run([mkfs, "-q", "-d", root, image], check=True)
    return image


def test_asids_are_on_and_perf_counts_deterministically(debian, xdg_cache, perf_disk, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    script = (f"dmesg | grep ASID\n/mnt/perfcount {LOOP}\n/mnt/perfcount {LOOP}\npoweroff\n")
    store = tmp_path / "store"
    recorded = chrono(tmp_path, "record", "debian", "--disk", perf_disk, "--store", store,
                      "--name", "perf", script=script, timeout=TIMEOUT)
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    out = recorded.stdout
    assert "ASID allocator using 16 bits (65536 entries)" in out

    counts = [tuple(map(int, c)) for c in
              re.findall(r"perf: instructions (\d+) cycles (\d+)", out)]
    assert len(counts) == 2, out[-2000:]
    for instructions, cycles in counts:
        # The loop, plus the ioctls and whatever interrupt lands inside the window.
        assert 2 * LOOP <= instructions < 2 * LOOP + 200_000
        assert 2 * LOOP <= cycles < 2 * LOOP + 200_000

    replayed = chrono(tmp_path, "replay", "--store", store, "perf", timeout=TIMEOUT)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert replayed.stdout == recorded.stdout
