"""`chrono guest fetch debian` end to end without a network: fake apt-get/apt-cache
serve synthetic Debian packages (built with the host's dpkg-deb), and the real
build runs on them — unpacking, module order, initramfs, mkfs.ext4, manifest,
caching.  Then every way the fetch can fail, through the command line: one line,
what to do instead, no traceback, nothing left in the cache."""
import gzip
import inspect
import os
import shutil

import pytest
from click.testing import CliRunner

from chrono.cli import main
from chrono.guests import apt, cache, fetch_guest, list_guests, tools
from chrono.guests.cpio import read_newc
from chrono.guests.manifest import GuestManifest
from chrono.guests.progress import ProgressEvent
from fakedebian import (FAKE_BUSYBOX, FAKE_FIRMWARE, VERSIONS, build_debs,
                        install_fake_apt, module_elf, riscv_image)

OWN_FILES = "or boot files you supply: chrono run --bios FW --kernel IMAGE --initrd INITRD --disk DISK"
HOST_TOOLS = all(shutil.which(t, path=os.environ["PATH"] + ":/usr/sbin:/sbin")
                 for t in ("dpkg-deb", "mkfs.ext4"))
needs_host_tools = pytest.mark.skipif(not HOST_TOOLS, reason="needs dpkg-deb and mkfs.ext4")


def invoke(*args):
    """Run the CLI in-process (so monkeypatches apply); stderr kept apart."""
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    return CliRunner(**kwargs).invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="session")
def fake_debs(tmp_path_factory):
    if not HOST_TOOLS:
        pytest.skip("needs dpkg-deb and mkfs.ext4")
    return build_debs(tmp_path_factory.mktemp("debs"))


@pytest.fixture
def fake_apt(tmp_path, monkeypatch, fake_debs):
    install_fake_apt(tmp_path / "bin", fake_debs, monkeypatch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "chrono"


@needs_host_tools
def test_fetch_builds_a_complete_guest_from_the_packages(fake_apt):
    events = []
    result = fetch_guest("debian", mirror="http://mirror.test/debian", progress=events.append)
    folder = fake_apt / "guests" / "debian"
    assert not result.reused and result.path == folder
    assert result.manifest.packages == VERSIONS
    assert result.manifest.append == "console=ttyS0 rdinit=/init"
    assert result.manifest.ram == "256M"

    assert (folder / "fw_jump.bin").read_bytes() == FAKE_FIRMWARE
    assert (folder / "Image").read_bytes() == riscv_image()
    entries = {e["name"]: e for e in read_newc(gzip.decompress((folder / "initrd.cpio.gz").read_bytes()))}
    assert entries["bin/busybox"]["data"] == FAKE_BUSYBOX
    assert entries["lib/modules/ext4.ko"]["data"] == module_elf("ext4", "jbd2,mbcache,crc16")
    assert "lib/modules/unrelated.ko" not in entries
    assert ("for m in virtio_mmio virtio_blk virtio_rng crc32c_generic jbd2 mbcache crc16 ext4 "
            "failover net_failover virtio_net; do" in entries["init"]["data"].decode())

    disk = folder / "disk.img"
    assert disk.stat().st_size == 256 << 20
    assert disk.stat().st_blocks * 512 < 32 << 20                 # sparse
    with open(disk, "rb") as f:
        f.seek(1024 + 56)
        assert f.read(2) == b"\x53\xef"                            # ext2/3/4 superblock magic

    assert GuestManifest.load(folder).packages == VERSIONS
    assert sorted(p.name for p in (fake_apt / "guests").iterdir()) == ["debian"]
    assert (fake_apt / "apt" / "sources.list").read_text() == (
        "deb [arch=riscv64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://mirror.test/debian trixie main\n")
    steps = [e.step for e in events]
    assert steps[0].startswith("reading Debian trixie riscv64 package list")
    assert any(s.startswith("downloading") for s in steps)
    assert steps[-1] == "making a 256 MiB ext4 disk"
    assert all(isinstance(e, ProgressEvent) for e in events)


@needs_host_tools
def test_second_fetch_reuses_the_guest_and_force_rebuilds_it(fake_apt):
    first = invoke("guest", "fetch", "debian", "--mirror", "http://mirror.test/debian")
    assert first.exit_code == 0, first.stderr
    assert "guest debian built in" in first.stdout
    assert "chrono: making a 256 MiB ext4 disk" in first.stderr   # progress, one line per step
    built = (fake_apt / "guests/debian/guest.json").read_text()

    second = invoke("guest", "fetch", "debian", "--mirror", "http://mirror.test/debian")
    assert second.exit_code == 0
    assert "guest debian is already cached in" in second.stdout
    assert "--force rebuilds it" in second.stdout
    assert second.stderr == ""
    assert (fake_apt / "guests/debian/guest.json").read_text() == built

    forced = invoke("guest", "fetch", "debian", "--force", "--mirror", "http://mirror.test/debian")
    assert forced.exit_code == 0 and "built in" in forced.stdout
    assert sorted(p.name for p in (fake_apt / "guests").iterdir()) == ["debian"]


@needs_host_tools
def test_a_failed_rebuild_keeps_the_cached_guest(fake_apt, monkeypatch):
    fetch_guest("debian", mirror="http://mirror.test/debian")
    before = (fake_apt / "guests/debian/guest.json").read_text()
    monkeypatch.setenv("FAKE_APT_UPDATE", "W: Failed to fetch http://x/InRelease  Could not resolve 'x'")
    proc = invoke("guest", "fetch", "debian", "--force", "--mirror", "http://mirror.test/debian")
    assert proc.exit_code == 5
    assert (fake_apt / "guests/debian/guest.json").read_text() == before
    assert [g.name for g in list_guests(fake_apt)] == ["debian"]
    assert sorted(p.name for p in (fake_apt / "guests").iterdir()) == ["debian"]


# --- Failures: one line each, saying what to do --------------------------------------

def assert_one_line_error(proc, *fragments):
    assert proc.exit_code == 5, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    error = lines[-1]
    assert error.startswith("chrono: error: "), proc.stderr
    assert all(not line.startswith("chrono: error") for line in lines[:-1])
    for fragment in fragments:
        assert fragment in error
    assert error.endswith(OWN_FILES)


def assert_nothing_cached(cache_dir):
    guests = cache.guests_dir(cache_dir)
    assert not guests.exists() or list(guests.iterdir()) == []


def test_without_apt_get(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(tools, "SBIN_DIRS", ())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = invoke("guest", "fetch", "debian")
    assert_one_line_error(proc, "apt-get not found", "run the fetch on a Debian or Ubuntu machine")
    assert_nothing_cached(tmp_path / "cache" / "chrono")


@needs_host_tools
def test_without_dpkg_deb_or_mkfs_ext4(fake_apt, tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "SBIN_DIRS", ())
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))              # the fake apt tools only
    proc = invoke("guest", "fetch", "debian", "--mirror", "http://mirror.test/debian")
    assert_one_line_error(proc, "dpkg-deb not found", "install dpkg")

    os.symlink(shutil.which("dpkg-deb", path="/usr/bin:/bin"), bin_dir / "dpkg-deb")
    proc = invoke("guest", "fetch", "debian", "--mirror", "http://mirror.test/debian")
    assert_one_line_error(proc, "mkfs.ext4 not found", "install e2fsprogs")
    assert_nothing_cached(fake_apt)
    assert not (fake_apt / "apt" / "debs").exists() or not any((fake_apt / "apt/debs").iterdir())


def test_without_debian_keyring(tmp_path, monkeypatch):
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get")
    monkeypatch.setattr(apt, "KEYRING", tmp_path / "nonexistent.gpg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = invoke("guest", "fetch", "debian")
    assert_one_line_error(proc, "archive keyring", "install debian-archive-keyring")


@needs_host_tools
def test_unreachable_archive(fake_apt, monkeypatch):
    monkeypatch.setenv("FAKE_APT_UPDATE", "W: Failed to fetch http://127.0.0.1:9/debian/dists/"
                                          "trixie/InRelease  Could not connect to 127.0.0.1:9")
    proc = invoke("guest", "fetch", "debian", "--mirror", "http://127.0.0.1:9/debian")
    assert_one_line_error(proc, "cannot read Debian trixie for riscv64 at http://127.0.0.1:9/debian",
                          "(Could not connect to 127.0.0.1:9)", "check the network",
                          "--mirror URI")
    assert_nothing_cached(fake_apt)


@needs_host_tools
def test_missing_package(fake_apt, tmp_path, monkeypatch, fake_debs):
    debs = tmp_path / "partial-archive"
    shutil.copytree(fake_debs, debs)
    index = (debs / "index").read_text().split("\n\n")
    (debs / "index").write_text("\n\n".join(s for s in index if "Package: busybox-static" not in s))
    monkeypatch.setenv("FAKE_DEBS", str(debs))
    proc = invoke("guest", "fetch", "debian", "--mirror", "http://mirror.test/debian")
    assert_one_line_error(proc, "package busybox-static not found for riscv64 in Debian trixie "
                                "at http://mirror.test/debian")
    assert_nothing_cached(fake_apt)


def test_not_a_mirror_uri(tmp_path, monkeypatch):
    if shutil.which("apt-get") is None:
        pytest.skip("needs apt-get")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = invoke("guest", "fetch", "debian", "--mirror", "deb.example.org")
    assert_one_line_error(proc, "--mirror 'deb.example.org': not a URI")


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_unreachable_archive_with_the_real_apt(tmp_path, monkeypatch):
    """Real apt-get, a port nothing listens on: apt exits 0 and only warns, and the
    fetch still fails clearly (takes a few seconds: apt retries)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = invoke("guest", "fetch", "debian", "--mirror", "http://127.0.0.1:9/debian")
    assert_one_line_error(proc, "cannot read Debian trixie for riscv64 at http://127.0.0.1:9/debian",
                          "Could not connect to 127.0.0.1:9")
    assert_nothing_cached(tmp_path / "cache" / "chrono")


def test_unknown_guest_name(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    proc = invoke("guest", "fetch", "windows")
    assert proc.exit_code == 2
    assert proc.stderr == ("chrono: error: unknown guest 'windows': known guests are debian, debian-full; "
                           "fetch one with `chrono guest fetch NAME`\n")
