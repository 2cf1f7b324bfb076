"""The demo guest on QEMU and on chrono: same binary, same input, same output.

QEMU 7.2's `virt` machine is the reference board.  The demo guest prints nothing
emulator-specific, so its console output must match byte for byte, except for
the few lines that report timing:

* `instructions N` from `bench`: QEMU without -icount counts host cycles in
  instret, chrono counts instructions;
* `elapsed ...` from `bench` and `up ... s` from `uptime`: mtime, which follows
  the host clock on QEMU and instructions on chrono.

Only those lines are masked, and only when they have exactly the expected
shape.  No newline normalisation is needed: both machines deliver the guest's
CR LF bytes unchanged (QEMU's -serial stdio and chrono's piped stdout are both
raw byte streams), so the comparison is on the raw bytes.

The guest's file system format is the same on both, so a disk image written
under one is read under the other.

QEMU is a required outside reference (CI installs it): these tests fail,
rather than skip, when it is missing.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import chrono
from chronocmd import CHRONO

DEMO_ELF = Path(chrono.__file__).parent / "data" / "demo.elf"
DISK_SIZE = 4 << 20
TIMEOUT = 60

# A file body long enough to need two 512-byte blocks.
LONG_TEXT = "".join(f"{i:03d}-abcdefghijklmnop " for i in range(30)).strip()

SCRIPT = (
    "help\n"
    "echo differential testing, 1 2 3\n"
    "uptime\n"
    "bench 1\n"
    "bench 3\n"
    "ls\n"
    "write readme this file was written by the guest\n"
    f"write long {LONG_TEXT}\n"
    "write tmp scratch\n"
    "ls\n"
    "cat readme\n"
    "cat long\n"
    "rm tmp\n"
    "cat tmp\n"
    "sync\n"
    "ls\n"
    "fsck\n"
    "nosuchcommand\n"
    "uptime\n"
    "poweroff\n"
)

# (pattern, replacement) for the timing lines; anchored to whole CR LF lines.
TIMING_LINES = [
    (re.compile(rb"^instructions \d+\r$", re.M), b"instructions <masked>\r"),
    (re.compile(rb"^elapsed \d+\.\d{3} s \(\d+ mtime ticks\), \d+ MIPS\r$", re.M),
     b"elapsed <masked>\r"),
    (re.compile(rb"^up \d+\.\d{3} s\r$", re.M), b"up <masked>\r"),
]


@pytest.fixture(scope="module")
def qemu():
    path = shutil.which("qemu-system-riscv64")
    assert path is not None, ("qemu-system-riscv64 is required for the differential tests "
                              "(Debian: apt-get install qemu-system-misc)")
    return path


def blank_image(path):
    path.write_bytes(bytes(DISK_SIZE))
    return path


def run_qemu(qemu, script, disk):
    cmd = [qemu, "-M", "virt", "-bios", "none", "-m", "128M", "-kernel", str(DEMO_ELF),
           "-nographic", "-serial", "stdio", "-monitor", "none",
           "-global", "virtio-mmio.force-legacy=false",
           "-drive", f"file={disk},format=raw,if=none,id=d0",
           "-device", "virtio-blk-device,drive=d0"]
    proc = subprocess.run(cmd, input=script.encode(), capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


def run_chrono(script, disk, *options):
    cmd = [*CHRONO, "run", "--disk", str(disk), *options]
    proc = subprocess.run(cmd, input=script.encode(), capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


def mask_timing(output):
    """Mask the timing lines; returns (masked output, number of lines masked)."""
    total = 0
    for pattern, replacement in TIMING_LINES:
        output, n = pattern.subn(replacement, output)
        total += n
    return output, total


def text_lines(output):
    return output.decode().split("\r\n")


def assert_same_output(reference, ours):
    """Byte-identical after masking; on failure show the first differing line."""
    if reference != ours:
        a, b = text_lines(reference), text_lines(ours)
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                pytest.fail(f"outputs differ at line {i + 1}:\n  qemu:   {x!r}\n  chrono: {y!r}")
        pytest.fail(f"outputs differ in length: qemu {len(a)} lines, chrono {len(b)} lines")


def test_same_session_gives_the_same_console_output(qemu, tmp_path):
    reference = run_qemu(qemu, SCRIPT, blank_image(tmp_path / "qemu.img"))
    ours = run_chrono(SCRIPT, blank_image(tmp_path / "chrono.img"))

    masked_ref, n_ref = mask_timing(reference)
    masked_ours, n_ours = mask_timing(ours)
    # two benches (instructions + elapsed each) and two uptimes, nothing else
    assert n_ref == n_ours == 6, (n_ref, n_ours)
    assert_same_output(masked_ref, masked_ours)

    # and the session did what the script asked, on both
    out = text_lines(masked_ours)
    assert out.count("checksum 0x293f286cb41ca541") == 1
    assert sum(line.startswith("checksum 0x") for line in out) == 2
    assert LONG_TEXT in out
    assert "CLEAN" in out
    assert out[-2:] == ["Powering off.", ""]
    assert b"\r\n" in reference and b"\n" not in reference.replace(b"\r\n", b"")


def test_same_session_leaves_byte_identical_disk_images(qemu, tmp_path):
    """No timestamps or host state reach the disk: the same commands write the
    same bytes on both machines (chrono with --commit)."""
    script = ("write notes hello from the guest\n"
              f"write long {LONG_TEXT}\n"
              "write tmp scratch\n"
              "sync\n"
              "rm tmp\n"
              "write last final words\n"
              "poweroff\n")
    qemu_image = blank_image(tmp_path / "qemu.img")
    chrono_image = blank_image(tmp_path / "chrono.img")
    reference = run_qemu(qemu, script, qemu_image)
    ours = run_chrono(script, chrono_image, "--commit")
    assert_same_output(reference, ours)
    assert qemu_image.read_bytes() != bytes(DISK_SIZE)
    assert qemu_image.read_bytes() == chrono_image.read_bytes()


WRITER = ("write first written on one machine\n"
          f"write long {LONG_TEXT}\n"
          "write gone soon\n"
          "rm gone\n"
          "write second also here\n"
          "poweroff\n")
READER = "ls\ncat first\ncat long\ncat second\ncat gone\nfsck\npoweroff\n"


def check_reader_output(output):
    out = text_lines(output)
    assert not any(line.startswith("fs: no file system found") for line in out), out[:6]
    assert any(line.startswith("fs: mounted: 3 files, ") for line in out), out[:6]
    i = out.index("demo> ls")
    assert [line.split()[-1] for line in out[i + 1:i + 4]] == ["first", "long", "second"]
    assert out[i + 4].startswith("3 files, ")
    assert out[out.index("demo> cat first") + 1] == "written on one machine"
    assert out[out.index("demo> cat long") + 1] == LONG_TEXT
    assert out[out.index("demo> cat second") + 1] == "also here"
    assert out[out.index("demo> cat gone") + 1] != "soon"
    assert out[out.index("demo> fsck") + 1] == "CLEAN"


def test_disk_written_under_qemu_reads_the_same_under_chrono(qemu, tmp_path):
    image = blank_image(tmp_path / "from-qemu.img")
    run_qemu(qemu, WRITER, image)
    written = image.read_bytes()

    ours = run_chrono(READER, image)
    check_reader_output(ours)
    assert image.read_bytes() == written            # chrono without --commit left it alone
    reference = run_qemu(qemu, READER, image)
    assert_same_output(reference, ours)


def test_disk_written_under_chrono_reads_the_same_under_qemu(qemu, tmp_path):
    image = blank_image(tmp_path / "from-chrono.img")
    run_chrono(WRITER, image, "--commit")

    copy = tmp_path / "copy.img"
    copy.write_bytes(image.read_bytes())
    reference = run_qemu(qemu, READER, copy)         # QEMU writes to its image: use a copy
    check_reader_output(reference)
    ours = run_chrono(READER, image)
    assert_same_output(reference, ours)
