"""Kernel modules for the Debian guest's initramfs: dependencies read from each
module's own .modinfo section (synthetic modules here), the load order computed
from them, and the /init script that loads them."""
import gzip
import lzma
import stat

import pytest

from chrono.guests.cpio import read_newc
from chrono.guests.initramfs import READY_MARKER, build_initramfs, init_script
from chrono.guests.kmod import ModuleError, ModuleTree, depends_of, load_order, read_modinfo
from fakedebian import MODULES, module_elf

DEBIAN_WANTED = ("virtio_mmio", "virtio_blk", "virtio_rng", "crc32c_generic", "ext4", "virtio_net")


def module_tree(root, modules=MODULES, compress=True):
    for name, (sub, depends) in modules.items():
        folder = root / "kernel" / sub
        folder.mkdir(parents=True, exist_ok=True)
        elf = module_elf(name.replace("-", "_"), depends)
        if compress:
            (folder / f"{name}.ko.xz").write_bytes(lzma.compress(elf, format=lzma.FORMAT_XZ))
        else:
            (folder / f"{name}.ko").write_bytes(elf)
    return ModuleTree(root)


def test_modinfo_fields_are_read_from_the_elf_section():
    info = read_modinfo(module_elf("ext4", "jbd2,mbcache,crc16",
                                   {"softdep": "pre: crypto-crc32c"}))
    assert info["name"] == "ext4"
    assert info["softdep"] == "pre: crypto-crc32c"
    assert depends_of(info) == ["jbd2", "mbcache", "crc16"]
    assert depends_of(read_modinfo(module_elf("crc16", ""))) == []


def test_dashes_in_dependency_names_mean_underscores():
    assert depends_of({"depends": "crc32c-generic,virtio_ring"}) == ["crc32c_generic",
                                                                      "virtio_ring"]


def test_not_a_module_is_a_clear_error():
    with pytest.raises(ModuleError, match="not an ELF"):
        read_modinfo(b"plain text")


def test_debian_modules_load_in_the_order_their_modinfo_implies(tmp_path):
    tree = module_tree(tmp_path)
    order = [m.name for m in tree.resolve(DEBIAN_WANTED)]
    assert order == ["virtio_mmio", "virtio_blk", "virtio_rng", "crc32c_generic", "jbd2", "mbcache",
                     "crc16", "ext4", "failover", "net_failover", "virtio_net"]
    ext4 = tree.get("ext4")
    assert ext4.elf == module_elf("ext4", "jbd2,mbcache,crc16")      # decompressed
    assert ext4.path.name == "ext4.ko.xz"


def test_uncompressed_modules_are_found_too(tmp_path):
    tree = module_tree(tmp_path, compress=False)
    assert [m.name for m in tree.resolve(["ext4"])] == ["jbd2", "mbcache", "crc16", "ext4"]


def test_every_module_comes_after_all_it_depends_on():
    graph = {"a": ["b", "c"], "b": ["d"], "c": ["d", "e"], "d": [], "e": ["d"], "f": ["a"]}
    order = load_order(["f", "c"], graph.__getitem__)
    assert sorted(order) == sorted(graph)
    for name, deps in graph.items():
        assert all(order.index(d) < order.index(name) for d in deps)
    assert load_order(["d", "d", "d"], graph.__getitem__) == ["d"]


def test_a_dependency_cycle_is_named():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"]}
    with pytest.raises(ModuleError, match="cycle: a -> b -> c -> a"):
        load_order(["a"], graph.__getitem__)


def test_a_missing_dependency_is_named(tmp_path):
    tree = module_tree(tmp_path, {"ext4": ("fs/ext4", "jbd2")})
    with pytest.raises(ModuleError, match="no module jbd2"):
        tree.resolve(["ext4"])


def test_a_corrupt_compressed_module_is_named(tmp_path):
    (tmp_path / "ext4.ko.xz").write_bytes(b"not xz")
    with pytest.raises(ModuleError, match="ext4.ko.xz: cannot decompress"):
        ModuleTree(tmp_path).get("ext4")


# --- The initramfs -----------------------------------------------------------------

def test_initramfs_holds_init_busybox_console_and_modules_in_order(tmp_path):
    modules = module_tree(tmp_path).resolve(DEBIAN_WANTED)
    image = build_initramfs(b"BUSYBOX", [(m.name, m.elf) for m in modules])
    entries = {e["name"]: e for e in read_newc(gzip.decompress(image))}

    console = entries["dev/console"]
    assert stat.S_ISCHR(console["mode"]) and console["rdev"] == (5, 1)
    assert entries["bin/busybox"]["data"] == b"BUSYBOX"
    assert stat.S_IMODE(entries["bin/busybox"]["mode"]) == 0o755
    for d in ("proc", "sys", "dev", "mnt", "tmp"):
        assert stat.S_ISDIR(entries[d]["mode"]), d
    for m in modules:
        assert entries[f"lib/modules/{m.name}.ko"]["data"] == m.elf

    init = entries["init"]["data"].decode()
    assert stat.S_IMODE(entries["init"]["mode"]) == 0o755
    assert init.startswith("#!/bin/busybox sh\n")
    assert "/bin/busybox --install -s /bin" in init
    assert "for m in virtio_mmio virtio_blk virtio_rng crc32c_generic jbd2 mbcache crc16 ext4 failover net_failover virtio_net; do" in init
    assert "mount -t ext4 /dev/vda /mnt" in init
    assert init.index(f'echo "{READY_MARKER}"') < init.index("exec setsid cttyhack sh")
    assert "poweroff()" in entries["etc/shrc"]["data"].decode()


def test_initramfs_is_reproducible():
    args = (b"BUSYBOX", [("crc16", module_elf("crc16", ""))])
    assert build_initramfs(*args) == build_initramfs(*args)


def test_init_script_mounts_proc_sys_and_devtmpfs_before_loading_modules():
    script = init_script(["virtio_mmio"])
    for fs in ("proc proc /proc", "sysfs sysfs /sys", "devtmpfs devtmpfs /dev"):
        assert script.index(f"mount -t {fs}") < script.index("insmod")
