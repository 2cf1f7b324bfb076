"""`chrono guest list` and `chrono run GUEST` through the command line, on a cache
folder of the test's own (XDG_CACHE_HOME)."""
import os
import subprocess
import sys

import pytest

from chrono.core import launch as launch_module
from chrono.errors import UsageError
from test_guest_cache import write_fake_guest
from test_guest_fetch_offline import invoke

from chronocmd import CHRONO


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "chrono"


def chrono(*args, cache_dir):
    env = {"XDG_CACHE_HOME": str(cache_dir.parent), "PATH": "/usr/bin:/bin",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    return subprocess.run(CHRONO + list(args), capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def test_list_on_an_empty_cache_says_how_to_fetch(cache_dir):
    proc = chrono("guest", "list", cache_dir=cache_dir)
    assert proc.returncode == 0
    assert proc.stdout == (f"no guests cached in {cache_dir}; fetch one with "
                           "`chrono guest fetch debian`\n")
    assert proc.stderr == ""


def test_list_shows_name_size_versions_and_path(cache_dir):
    folder = write_fake_guest(cache_dir)
    proc = chrono("guest", "list", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "debian" in line)
    assert "opensbi 1.6-1" in row
    assert str(folder) in row
    assert "kB" in row                      # four files of 1000 bytes: a few kB on disk


def test_list_marks_a_damaged_guest(cache_dir):
    folder = write_fake_guest(cache_dir)
    (folder / "initrd.cpio.gz").unlink()
    proc = chrono("guest", "list", cache_dir=cache_dir)
    assert proc.returncode == 0
    assert "missing its initrd" in proc.stdout


def test_run_with_an_unknown_guest_names_the_known_ones(cache_dir):
    proc = chrono("run", "fedora", cache_dir=cache_dir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("chrono: error: unknown guest 'fedora': known guests are debian, debian-full; "
                           "fetch one with `chrono guest fetch NAME`\n")


def test_run_with_a_guest_not_fetched_yet_says_how_to_fetch(cache_dir):
    proc = chrono("run", "debian", cache_dir=cache_dir)
    assert proc.returncode == 3
    assert proc.stderr.startswith("chrono: error: guest 'debian' is not fetched yet: run "
                                  "`chrono guest fetch debian` first")
    assert proc.stderr.count("\n") == 1


class Launched(Exception):
    pass


@pytest.fixture
def launched(monkeypatch):
    """Stops `chrono run` at launch() and records the GuestSpec it was given."""
    specs = []

    def fake_launch(spec, commit=False, progress=None):
        specs.append(spec)
        raise UsageError("stopped before booting (test)")

    monkeypatch.setattr(launch_module, "launch", fake_launch)
    return specs


def test_run_guest_takes_everything_from_the_manifest(cache_dir, launched):
    folder = write_fake_guest(cache_dir)
    proc = invoke("run", "debian")
    assert proc.stderr == "chrono: error: stopped before booting (test)\n"
    (spec,) = launched
    assert (spec.bios, spec.kernel, spec.initrd, spec.disk) == (
        folder / "fw_jump.bin", folder / "Image", folder / "initrd.cpio.gz", folder / "disk.img")
    assert spec.append == "console=ttyS0 rdinit=/init"
    assert spec.ram_size == 256 << 20


def test_options_given_with_a_guest_override_its_manifest(cache_dir, launched, tmp_path):
    folder = write_fake_guest(cache_dir)
    other_disk = tmp_path / "other.img"
    invoke("run", "debian", "--ram", "512M", "--append", "console=ttyS0 quiet",
           "--disk", str(other_disk))
    (spec,) = launched
    assert spec.ram_size == 512 << 20
    assert spec.append == "console=ttyS0 quiet"
    assert spec.disk == other_disk
    assert spec.kernel == folder / "Image"             # not given: from the manifest


def test_run_without_a_guest_still_uses_the_options_alone(cache_dir, launched):
    invoke("run", "--ram", "64M")
    (spec,) = launched
    assert spec.is_demo and spec.ram_size == 64 << 20 and spec.disk is None


def test_list_marks_a_guest_built_by_another_recipe_version(cache_dir):
    write_fake_guest(cache_dir)                         # recipe 1: before virtio-rng
    proc = chrono("guest", "list", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "built by another chrono" in proc.stdout and "rebuilds it" in proc.stdout


def test_fetch_size_is_refused_for_a_guest_without_a_disk_to_size(cache_dir):
    proc = chrono("guest", "fetch", "debian", "--size", "1G", cache_dir=cache_dir)
    assert proc.returncode == 2
    assert proc.stderr == "chrono: error: guest debian has no disk size to choose: drop --size\n"


def test_run_guest_from_a_snapshot_needs_the_guests_own_store(cache_dir):
    folder = write_fake_guest(cache_dir)
    proc = chrono("run", "debian", "--from", "booted", cache_dir=cache_dir)
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"chrono: error: guest 'debian' has no snapshots of its own "
                                  f"(no {folder / 'store'})"), proc.stderr


def test_run_guest_from_a_snapshot_refuses_another_store(cache_dir, tmp_path):
    write_fake_guest(cache_dir)
    proc = chrono("run", "debian", "--from", "booted", "--store", str(tmp_path / "s"),
                  cache_dir=cache_dir)
    assert proc.returncode == 2
    assert ("(GUEST --from NAME takes NAME from the guest's own store); drop --store"
            in proc.stderr)
