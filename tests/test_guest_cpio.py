"""The newc cpio writer behind the Debian guest's initramfs: checked against the
host's GNU cpio when it is installed (Debian package `cpio`), and always against
our own reader of the format."""
import re
import shutil
import stat
import subprocess

import pytest

from chrono.guests.cpio import CpioWriter, read_newc

HAVE_CPIO = shutil.which("cpio") is not None


def sample_archive() -> bytes:
    cpio = CpioWriter()
    cpio.add_dir("/dev")
    cpio.add_char_device("/dev/console", 5, 1)
    cpio.add_file("/init", b"#!/bin/sh\necho hi\n", 0o755)
    cpio.add_file("/lib/modules/ext4.ko", bytes(range(256)) * 3 + b"odd")   # parents implied
    cpio.add_file("/empty", b"")
    cpio.add_symlink("/bin/sh", "busybox")
    cpio.add_dir("/tmp", 0o1777)
    return cpio.getvalue()


def test_archive_reads_back_entry_by_entry():
    entries = {e["name"]: e for e in read_newc(sample_archive())}
    assert list(entries) == ["dev", "dev/console", "init", "lib", "lib/modules",
                             "lib/modules/ext4.ko", "empty", "bin", "bin/sh", "tmp"]
    console = entries["dev/console"]
    assert stat.S_ISCHR(console["mode"]) and console["rdev"] == (5, 1)
    assert entries["init"]["data"] == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(entries["init"]["mode"]) == 0o755
    assert entries["lib/modules/ext4.ko"]["data"] == bytes(range(256)) * 3 + b"odd"
    assert stat.S_ISDIR(entries["lib/modules"]["mode"])
    assert stat.S_ISLNK(entries["bin/sh"]["mode"]) and entries["bin/sh"]["data"] == b"busybox"
    assert stat.S_IMODE(entries["tmp"]["mode"]) == 0o1777
    assert entries["empty"]["data"] == b""


def test_every_header_is_four_byte_aligned_and_the_archive_ends_with_the_trailer():
    archive = sample_archive()
    assert len(archive) % 4 == 0
    offsets = [i for i in range(0, len(archive), 4) if archive[i:i + 6] == b"070701"]
    assert len(offsets) == 11                        # 10 entries + trailer
    assert b"TRAILER!!!\0" in archive[offsets[-1]:]


def test_same_entries_give_the_same_bytes():
    assert sample_archive() == sample_archive()
    assert all(e["mtime"] == 0 for e in read_newc(sample_archive()))


def test_bad_paths_and_duplicates_are_refused():
    cpio = CpioWriter()
    cpio.add_file("/a", b"1")
    with pytest.raises(ValueError, match="already"):
        cpio.add_file("a", b"2")
    for bad in ("/", "../etc/passwd", "/a/./b"):
        with pytest.raises(ValueError, match="not a usable archive path"):
            cpio.add_file(bad, b"")
    cpio.getvalue()
    with pytest.raises(ValueError, match="finished"):
        cpio.add_file("/b", b"")


@pytest.mark.skipif(not HAVE_CPIO, reason="the host has no cpio (Debian package `cpio`)")
def test_gnu_cpio_lists_the_archive_with_the_device_node(tmp_path):
    listing = subprocess.run(["cpio", "-t", "-v", "--quiet"], input=sample_archive(),
                             capture_output=True, check=True).stdout.decode()
    lines = listing.splitlines()
    assert [line.split()[-1] for line in lines if "->" not in line] == [
        "dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/ext4.ko", "empty",
        "bin", "tmp"]
    console = next(line for line in lines if line.endswith("dev/console"))
    assert console.startswith("crw-------") and re.search(r"\b5,\s+1\b", console)
    assert any(line.startswith("lrwxrwxrwx") and line.endswith("bin/sh -> busybox")
               for line in lines)


@pytest.mark.skipif(not HAVE_CPIO, reason="the host has no cpio (Debian package `cpio`)")
def test_gnu_cpio_extracts_the_files(tmp_path):
    # The device node is left out: creating one needs root, describing one does not.
    subprocess.run(["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames", "-f",
                    "dev/console"], input=sample_archive(), cwd=tmp_path, check=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "init").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "lib/modules/ext4.ko").read_bytes() == bytes(range(256)) * 3 + b"odd"
    assert (tmp_path / "bin/sh").is_symlink() and (tmp_path / "bin/sh").readlink().name == "busybox"
    assert (tmp_path / "empty").read_bytes() == b""
    assert not (tmp_path / "dev/console").exists()
