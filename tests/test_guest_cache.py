"""The guest cache: where it is, guest manifests, atomic builds (nothing half-written
is ever left), reuse of a cached guest, and finding the mirror in apt's own
configuration."""
import json
from pathlib import Path

import pytest

from chrono.errors import ImageError, UsageError
from chrono.guests import cache, catalog, fetch_guest, guest_spec, list_guests
from chrono.guests.apt import system_mirror
from chrono.guests.manifest import MANIFEST_NAME, GuestManifest


def write_fake_guest(root: Path, name: str = "debian", ram: str = "256M") -> Path:
    """A complete-looking cached guest (files with placeholder contents)."""
    folder = cache.guests_dir(root) / name
    folder.mkdir(parents=True)
    for file in ("fw_jump.bin", "Image", "initrd.cpio.gz", "disk.img"):
        (folder / file).write_bytes(b"x" * 1000)
    GuestManifest(name=name, description="test guest", firmware="fw_jump.bin", kernel="Image",
                  initrd="initrd.cpio.gz", disk="disk.img", append="console=ttyS0 rdinit=/init",
                  ram=ram, ready_marker="ready", packages={"opensbi": "1.6-1"}).save(folder)
    return folder


def test_cache_root_follows_xdg_cache_home_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "chrono"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "chrono"


def test_manifest_round_trips_and_gives_the_boot_spec(tmp_path):
    folder = write_fake_guest(tmp_path)
    manifest = GuestManifest.load(folder)
    assert manifest.packages == {"opensbi": "1.6-1"}
    spec = manifest.spec(folder)
    assert (spec.bios, spec.kernel, spec.initrd, spec.disk) == (
        folder / "fw_jump.bin", folder / "Image", folder / "initrd.cpio.gz", folder / "disk.img")
    assert spec.append == "console=ttyS0 rdinit=/init"
    assert spec.ram_size == 256 << 20
    assert not (folder / (MANIFEST_NAME + ".tmp")).exists()


@pytest.mark.parametrize("damage, detail", [
    (lambda f: (f / MANIFEST_NAME).write_text("{not json"), "Expecting property name"),
    (lambda f: (f / MANIFEST_NAME).unlink(), "no guest.json"),
    (lambda f: (f / "Image").unlink(), "missing its kernel (Image)"),
    (lambda f: (f / MANIFEST_NAME).write_text(json.dumps({"format": 99})), "format 99"),
])
def test_a_damaged_guest_says_what_is_wrong_and_how_to_rebuild(tmp_path, damage, detail):
    folder = write_fake_guest(tmp_path)
    damage(folder)
    with pytest.raises(ImageError) as e:
        GuestManifest.load(folder)
    assert detail in e.value.message
    assert "chrono guest fetch debian --force" in e.value.message


def test_a_finished_build_replaces_the_target(tmp_path):
    target = tmp_path / "guests" / "g"
    target.mkdir(parents=True)
    (target / "old").write_text("old")
    with cache.building(target) as (out, scratch):
        (out / "new").write_text("new")
        (scratch / "junk").write_text("scratch")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in target.parent.iterdir()] == ["g"]      # no build folder left


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_build_leaves_the_previous_guest_untouched(tmp_path, failure):
    target = tmp_path / "guests" / "g"
    target.mkdir(parents=True)
    (target / "old").write_text("old")
    with pytest.raises(type(failure)):
        with cache.building(target) as (out, _):
            (out / "half").write_text("half-written")
            raise failure
    assert [p.name for p in target.iterdir()] == ["old"]
    assert [p.name for p in target.parent.iterdir()] == ["g"]


def test_a_failed_first_build_leaves_nothing(tmp_path):
    target = tmp_path / "guests" / "g"
    with pytest.raises(RuntimeError):
        with cache.building(target):
            raise RuntimeError("boom")
    assert list(target.parent.iterdir()) == []


def failing_build(*args):
    raise AssertionError("the recipe ran, but the cached guest should have been reused")


def test_a_cached_guest_is_reused_without_building(tmp_path, monkeypatch):
    folder = write_fake_guest(tmp_path)
    monkeypatch.setitem(catalog.RECIPES, "debian",
                        catalog.Recipe("debian", "test", "nothing", failing_build))
    result = fetch_guest("debian", root=tmp_path)
    assert result.reused and result.path == folder
    assert result.manifest.packages == {"opensbi": "1.6-1"}


def test_force_rebuilds_and_a_damaged_guest_is_rebuilt(tmp_path, monkeypatch):
    calls = []

    def build(out, scratch, apt_root, mirror, progress):
        calls.append((apt_root, mirror))
        for file in ("fw_jump.bin", "Image", "initrd.cpio.gz", "disk.img"):
            (out / file).write_bytes(b"new")
        return GuestManifest(name="debian", description="", firmware="fw_jump.bin",
                             kernel="Image", initrd="initrd.cpio.gz", disk="disk.img",
                             append="", ram="256M", ready_marker="", packages={"p": "2"})

    monkeypatch.setitem(catalog.RECIPES, "debian", catalog.Recipe("debian", "", "", build))
    folder = write_fake_guest(tmp_path)
    result = fetch_guest("debian", root=tmp_path, force=True, mirror="http://m/debian")
    assert not result.reused and calls == [(tmp_path / "apt", "http://m/debian")]
    assert GuestManifest.load(folder).packages == {"p": "2"}

    (folder / "disk.img").unlink()
    assert not fetch_guest("debian", root=tmp_path).reused
    assert len(calls) == 2


def test_list_shows_guests_sizes_and_damaged_ones_but_not_builds_in_progress(tmp_path):
    assert list_guests(tmp_path) == []
    write_fake_guest(tmp_path)
    broken = write_fake_guest(tmp_path, "broken")
    (broken / "disk.img").unlink()
    (cache.guests_dir(tmp_path) / ".debian-build-x1y2").mkdir()
    guests = {g.name: g for g in list_guests(tmp_path)}
    assert list(guests) == ["broken", "debian"]
    assert guests["debian"].manifest.packages == {"opensbi": "1.6-1"}
    assert guests["debian"].size >= 4000
    assert guests["broken"].manifest is None and "missing its disk" in guests["broken"].problem


def test_guest_spec_applies_overrides(tmp_path):
    folder = write_fake_guest(tmp_path)
    spec = guest_spec("debian", root=tmp_path, ram_size=512 << 20, append="quiet")
    assert spec.ram_size == 512 << 20 and spec.append == "quiet"
    assert spec.kernel == folder / "Image"


def test_guest_spec_for_unknown_and_unfetched_names(tmp_path):
    with pytest.raises(UsageError, match=r"unknown guest 'nope': known guests are debian, debian-full; "
                                         r"fetch one with `chrono guest fetch NAME`"):
        guest_spec("nope", root=tmp_path)
    with pytest.raises(ImageError, match=r"guest 'debian' is not fetched yet: run "
                                         r"`chrono guest fetch debian`"):
        guest_spec("debian", root=tmp_path)
    write_fake_guest(tmp_path, "mine")          # a guest someone put in the cache by hand
    assert guest_spec("mine", root=tmp_path).disk.name == "disk.img"
    with pytest.raises(UsageError, match="known guests are debian, debian-full, mine;"):
        guest_spec("../mine", root=tmp_path)


# --- The mirror, from apt's own configuration ----------------------------------------

def test_mirror_comes_from_deb822_sources_skipping_security(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb-src deb\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    assert system_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_comes_from_a_one_line_sources_list_first(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [signed-by=/x.gpg arch=amd64] http://one.example/debian bookworm main\n")
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "z.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian\nSuites: bookworm\n")
    assert system_mirror(tmp_path) == "http://one.example/debian"


def test_disabled_stanzas_and_no_configuration_give_no_mirror(tmp_path):
    assert system_mirror(tmp_path) is None
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: trixie\n")
    assert system_mirror(tmp_path) is None


def test_a_guest_built_by_another_recipe_version_is_rebuilt_by_fetch(tmp_path, monkeypatch):
    """The recipe's version is kept in guest.json; a cached guest from an older recipe
    (e.g. an initramfs without a module the board now needs) is not reused."""
    def build(out, scratch, apt_root, mirror, progress):
        for file in ("fw_jump.bin", "Image", "initrd.cpio.gz", "disk.img"):
            (out / file).write_bytes(b"new")
        return GuestManifest(name="debian", description="", firmware="fw_jump.bin",
                             kernel="Image", initrd="initrd.cpio.gz", disk="disk.img",
                             append="", ram="256M", ready_marker="", packages={"p": "3"})

    folder = write_fake_guest(tmp_path)                 # written without a recipe version
    data = json.loads((folder / MANIFEST_NAME).read_text())
    del data["recipe"]
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    assert GuestManifest.load(folder).recipe == 1
    monkeypatch.setitem(catalog.RECIPES, "debian", catalog.Recipe("debian", "", "", build, 2))
    result = fetch_guest("debian", root=tmp_path)
    assert not result.reused and GuestManifest.load(folder).recipe == 2
    assert GuestManifest.load(folder).packages == {"p": "3"}
    monkeypatch.setitem(catalog.RECIPES, "debian", catalog.Recipe("debian", "", "", failing_build, 2))
    assert fetch_guest("debian", root=tmp_path).reused


def test_the_debian_recipe_version_covers_the_entropy_and_network_drivers():
    from chrono.guests import debian
    assert "virtio_rng" in debian.MODULES and "virtio_net" in debian.MODULES
    assert catalog.RECIPES["debian"].version == debian.RECIPE_VERSION >= 3
