"""The files a guest is made of (--kernel, --bios, --initrd, --disk): what is not
a regular file is refused at once, and --commit never loses the guest's writes.

Through the real CLI, as a script would use it.
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from chrono.core.launch import demo_guest_path
from chronocmd import CHRONO
from tracehelp import chrono

DISK = 4 << 20
# Refusing takes well under a second; a run still going after this long hangs.
REFUSAL_TIMEOUT = 15


def refused(tmp_path, *args):
    """`chrono run ARGS`, which must be refused with one line before the guest runs."""
    proc = chrono(tmp_path, "run", *args, script="poweroff\n", timeout=REFUSAL_TIMEOUT)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chrono: error: "), proc.stderr
    assert proc.stdout == "", "the guest ran"
    return lines[0]


@pytest.mark.parametrize("option", ["--disk", "--kernel", "--bios", "--initrd"])
def test_a_fifo_is_refused_naming_the_option_and_file(tmp_path, option):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    extra = ["--kernel", demo_guest_path()] if option == "--initrd" else []
    line = refused(tmp_path, *extra, option, fifo)
    assert f"{option} {fifo}: is a FIFO" in line, line


@pytest.mark.parametrize("option", ["--disk", "--kernel"])
def test_a_character_device_is_refused(tmp_path, option):
    line = refused(tmp_path, option, "/dev/zero")
    assert f"{option} /dev/zero: is a character device" in line, line


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        line = refused(tmp_path, "--disk", path)
    finally:
        server.close()
    assert f"--disk {path}: is a socket" in line, line


def test_a_block_device_as_disk_is_refused_with_what_to_do(tmp_path):
    devices = [e.path for e in os.scandir("/dev") if stat.S_ISBLK(e.stat(follow_symlinks=False).st_mode)]
    if not devices:
        pytest.skip("no block device on this machine")
    line = refused(tmp_path, "--disk", devices[0])          # only stat()ed, never opened
    assert f"--disk {devices[0]}: is a block device" in line and "dd if=" in line, line


def test_a_directory_is_refused_for_every_option(tmp_path):
    for option in ("--disk", "--kernel", "--bios"):
        assert f"{option} {tmp_path}: is a directory" in refused(tmp_path, option, tmp_path)


# --- --commit ----------------------------------------------------------------------

def make_unwritable(path: Path) -> None:
    """As a user would: chattr +i as root (root ignores mode bits), chmod otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)],
                                                        capture_output=True).returncode:
        pytest.skip("running as root on a file system without chattr +i: cannot make "
                    "a file unwritable")


def make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o644)


def test_commit_onto_an_image_that_cannot_be_written_is_refused_before_the_guest_runs(tmp_path):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(DISK))
    make_unwritable(image)
    try:
        proc = chrono(tmp_path, "run", "--disk", image, "--commit",
                      script="write a x\nsync\npoweroff\n", timeout=REFUSAL_TIMEOUT)
    finally:
        make_writable(image)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "", "the guest ran: its writes would have been lost at exit"
    line, = proc.stderr.splitlines()
    assert line.startswith(f"chrono: error: --disk {image}: cannot be written") and "--commit" in line
    assert image.read_bytes() == bytes(DISK)


def run_until_synced(image: Path, cwd: Path) -> subprocess.Popen:
    """`chrono run --disk IMAGE --commit` with a file written and synced; the guest
    then waits for more input."""
    proc = subprocess.Popen([*CHRONO, "run", "--disk", str(image), "--commit"], cwd=cwd,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"write a hello\nsync\n")
    proc.stdin.flush()
    seen = b""
    while b"synced" not in seen:
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, f"the guest ended early: {seen!r}"
        seen += chunk
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    proc.stdin.write(b"poweroff\n")
    proc.stdin.close()
    proc.stdout.read()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), err


def cat_a(image: Path, cwd: Path) -> str:
    proc = chrono(cwd, "run", "--disk", image, script="cat a\npoweroff\n", timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_commit_that_fails_at_exit_saves_the_writes_and_disk_commit_applies_them(tmp_path):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(DISK))
    proc = run_until_synced(image, tmp_path)
    try:
        image.unlink()                      # the image goes away while the guest runs
    finally:
        code, err = finish(proc)
    assert code == 3, err
    assert "Traceback" not in err
    saved = tmp_path / "d.img.chrono-overlay"
    line = err.splitlines()[-1]
    assert line.startswith("chrono: error: cannot commit the guest's writes"), err
    assert f"saved in {saved}" in line and f"`chrono disk commit {saved}`" in line, line
    assert saved.is_file()

    image.write_bytes(bytes(DISK))          # a new image of the same size
    applied = chrono(tmp_path, "disk", "commit", saved)
    assert applied.returncode == 0, applied.stderr
    assert f"from {saved} to {image}" in applied.stdout
    assert not saved.exists()
    assert "hello" in cat_a(image, tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="an open file is made unwritable with chattr +i, as root")
def test_an_image_made_immutable_during_the_run_keeps_the_writes(tmp_path):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(DISK))
    proc = run_until_synced(image, tmp_path)
    try:
        make_unwritable(image)
    finally:
        code, err = finish(proc)
    saved = tmp_path / "d.img.chrono-overlay"
    try:
        assert code == 3 and f"saved in {saved}" in err, err
        assert image.read_bytes() == bytes(DISK)
        still = chrono(tmp_path, "disk", "commit", saved)
        assert still.returncode == 3 and "cannot be written" in still.stderr and saved.exists()
    finally:
        make_writable(image)
    assert chrono(tmp_path, "disk", "commit", saved).returncode == 0
    assert "hello" in cat_a(image, tmp_path)


def test_a_damaged_overlay_file_is_refused_and_the_image_untouched(tmp_path):
    image = tmp_path / "d.img"
    image.write_bytes(bytes(DISK))
    proc = run_until_synced(image, tmp_path)
    image.unlink()
    finish(proc)
    saved = tmp_path / "d.img.chrono-overlay"
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 1
    saved.write_bytes(bytes(data))
    image.write_bytes(bytes(DISK))
    proc = chrono(tmp_path, "disk", "commit", saved)
    assert proc.returncode == 3 and "damaged" in proc.stderr and proc.stderr.count("\n") == 1
    assert image.read_bytes() == bytes(DISK)
