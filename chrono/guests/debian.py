"""The Debian guest: OpenSBI + Debian's riscv64 kernel + a busybox initramfs + a
blank ext4 disk, assembled from Debian 13 (trixie) packages.

    fw_jump.bin      OpenSBI (package opensbi), loaded at 0x80000000, jumps to 0x80200000
    Image            the kernel (boot/vmlinux-* of linux-image-*: despite the name, a
                     flat RISC-V Image, not an ELF)
    initrd.cpio.gz   busybox (busybox-static) + the modules that mount ext4 on virtio,
                     drive the entropy device (virtio-rng: /dev/hwrng) and the
                     network device (virtio-net: eth0, by DHCP with --net user)
    disk.img         256 MiB sparse ext4, mounted by /init on /mnt
    guest.json       the manifest

Nothing is installed on the host: packages are downloaded by a private apt and
unpacked with dpkg-deb -x.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from chrono.errors import GuestFetchError
from chrono.guests import deb, initramfs
from chrono.guests.apt import PrivateApt
from chrono.guests.ext4 import make_ext4, mkfs_ext4
from chrono.guests.kmod import ModuleError, ModuleTree
from chrono.guests.manifest import GuestManifest
from chrono.guests.progress import ProgressEvent, ProgressFn
from chrono.guests.tools import OWN_FILES

NAME = "debian"
DESCRIPTION = "Debian 13 (trixie) riscv64: OpenSBI, Linux, busybox shell, ext4 disk on /mnt"
SUITE = "trixie"
ARCH = "riscv64"
KERNEL_META = "linux-image-riscv64"        # depends on the current linux-image-<release>
BUSYBOX_PKG = "busybox-static"
OPENSBI_PKG = "opensbi"

FIRMWARE_PATH = "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
BUSYBOX_PATH = "usr/bin/busybox"
# What the board's virtio devices need, in the order we want it; dependencies
# come from each module's .modinfo.  virtio_rng drives the entropy device (the
# kernel feeds its random pool from it; HW_RANDOM itself is built in).  For ext4
# on the virtio disk: crc32c_generic is not among ext4's depends=: ext4 asks for
# the crc32c algorithm at mount time through request_module (its .modinfo only
# has `softdep=pre: crypto-crc32c`), which finds nothing in an initramfs without
# modprobe and modules.dep, and mkfs.ext4's default metadata_csum needs it.  So
# it is loaded explicitly, before ext4.  virtio_net (with net_failover and
# failover, its depends=) drives the network device of --net user.
MODULES = ("virtio_mmio", "virtio_blk", "virtio_rng", "crc32c_generic", "ext4", "virtio_net")
# Bump when what build() makes changes (modules, /init, disk layout): `chrono
# guest fetch` rebuilds a cached guest made by another version.  2: virtio_rng,
# 3: virtio_net and DHCP on eth0, 4: /init boots root= (rootfstype=, ro/rw, init=)
# with switch_root.
RECIPE_VERSION = 4

APPEND = "console=ttyS0 rdinit=/init"
RAM = "256M"
DISK_SIZE = 256 << 20

# The Linux RISC-V Image header (Documentation/arch/riscv/boot-image-header.rst):
# "RISCV\0\0\0" at offset 48 (deprecated but still written), "RSC\x05" at 56.
_IMAGE_MAGIC = (56, b"RSC\x05")


@dataclass
class BootFiles:
    """What boot_files() wrote into a guest folder, and what it unpacked."""
    packages: dict[str, str]        # package -> version
    downloaded: set[Path]           # the .deb files (kept in the apt cache)
    kernel_tree: Path               # the unpacked kernel package
    release: str                    # the kernel's release (its modules' folder name)


def build(out: Path, scratch: Path, apt_root: Path, mirror: str | None,
          progress: ProgressFn) -> GuestManifest:
    """Download the packages and write the guest's files into ``out``."""
    # Every tool, the keyring and the mirror are checked before anything is downloaded.
    apt = PrivateApt(apt_root, mirror, SUITE, ARCH)
    deb.dpkg_deb()
    mkfs_ext4()
    boot = boot_files(out, scratch, apt, progress)

    progress(ProgressEvent(f"making a {DISK_SIZE >> 20} MiB ext4 disk"))
    make_ext4(out / "disk.img", DISK_SIZE)

    _prune(apt.debs, keep=boot.downloaded)
    return GuestManifest(
        name=NAME, description=DESCRIPTION, firmware="fw_jump.bin", kernel="Image",
        initrd="initrd.cpio.gz", disk="disk.img", append=APPEND, ram=RAM,
        ready_marker=initramfs.READY_MARKER, packages=boot.packages,
        built=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def boot_files(out: Path, scratch: Path, apt: PrivateApt, progress: ProgressFn) -> BootFiles:
    """Download OpenSBI, the kernel and busybox; write fw_jump.bin, Image and
    initrd.cpio.gz into ``out`` (the packages are unpacked under ``scratch``)."""
    apt.update(progress)
    progress(ProgressEvent("choosing packages"))
    kernel_pkg = _kernel_package(apt.show(KERNEL_META)[KERNEL_META].get("Depends", ""))
    packages = (kernel_pkg, BUSYBOX_PKG, OPENSBI_PKG)
    shown = apt.show(*packages)
    wanted = {p: shown[p]["Version"] for p in packages}
    apt.download(list(packages), progress)
    files = {p: _downloaded(apt.debs, p, v) for p, v in wanted.items()}

    trees = {}
    for package, path in files.items():
        progress(ProgressEvent(f"unpacking {package}"))
        trees[package] = scratch / package
        deb.unpack(path, trees[package])

    progress(ProgressEvent("copying firmware and kernel"))
    _copy(trees[OPENSBI_PKG], FIRMWARE_PATH, out / "fw_jump.bin", OPENSBI_PKG)
    kernel, release = _kernel_image(trees[kernel_pkg], kernel_pkg)
    shutil.copyfile(kernel, out / "Image")

    progress(ProgressEvent(f"reading kernel modules ({', '.join(MODULES)})"))
    modules = _modules(trees[kernel_pkg], release, kernel_pkg)
    busybox = trees[BUSYBOX_PKG] / BUSYBOX_PATH
    if not busybox.is_file():
        raise _layout_error(BUSYBOX_PKG, BUSYBOX_PATH)
    progress(ProgressEvent(f"writing initramfs (busybox + {len(modules)} modules)"))
    (out / "initrd.cpio.gz").write_bytes(initramfs.build_initramfs(
        busybox.read_bytes(), [(m.name, m.elf) for m in modules]))
    return BootFiles(wanted, set(files.values()), trees[kernel_pkg], release)


def modules_dir(kernel_tree: Path, release: str) -> Path | None:
    """The kernel package's modules folder (usr/lib/modules/RELEASE, or lib/...)."""
    for base in ("usr/lib/modules", "lib/modules"):
        if (kernel_tree / base / release).is_dir():
            return kernel_tree / base / release
    return None


def _kernel_package(depends: str) -> str:
    """'linux-image-6.12.117+deb13-riscv64 (= 6.12.117-1)' -> the package name."""
    for dependency in depends.split(","):
        name = dependency.split("|")[0].split("(")[0].strip()
        if name.startswith("linux-image-"):
            return name
    raise GuestFetchError(f"{KERNEL_META} depends on no linux-image-* package "
                          f"(Depends: {depends}): the archive changed; {OWN_FILES}")


def _downloaded(debs: Path, package: str, version: str) -> Path:
    """The .deb apt-get download wrote for ``package`` ``version``."""
    for path in sorted(debs.glob(f"{package}_*.deb")):
        fields = deb.package_fields(path)
        if fields.get("Package") == package and fields.get("Version") == version:
            return path
    raise GuestFetchError(f"apt-get download reported success but no {package} {version} "
                          f"is in {debs}; fetch again, {OWN_FILES}")


def _kernel_image(tree: Path, package: str) -> tuple[Path, str]:
    """boot/vmlinux-<release> and its release, checked to be a RISC-V Image."""
    images = sorted((tree / "boot").glob("vmlinux-*"))
    if len(images) != 1:
        raise _layout_error(package, "boot/vmlinux-*")
    offset, magic = _IMAGE_MAGIC
    with open(images[0], "rb") as f:
        f.seek(offset)
        if f.read(len(magic)) != magic:
            raise GuestFetchError(f"{images[0].name} in {package} is not a RISC-V Linux Image "
                                  f"(no RSC\\x05 magic at offset {offset}); {OWN_FILES}")
    return images[0], images[0].name[len("vmlinux-"):]


def _modules(tree: Path, release: str, package: str) -> list:
    folder = modules_dir(tree, release)
    if folder is None:
        raise _layout_error(package, f"usr/lib/modules/{release}")
    try:
        return ModuleTree(folder).resolve(MODULES)
    except ModuleError as e:
        raise GuestFetchError(f"kernel modules of {package}: {e}; {OWN_FILES}") from None


def _copy(tree: Path, path: str, dest: Path, package: str) -> None:
    if not (tree / path).is_file():
        raise _layout_error(package, path)
    shutil.copyfile(tree / path, dest)


def _layout_error(package: str, path: str) -> GuestFetchError:
    return GuestFetchError(f"package {package} has no {path} (its layout changed?); {OWN_FILES}")


def _prune(debs: Path, keep: set[Path]) -> None:
    """Drop packages of earlier builds; the current ones stay for a quick --force."""
    for path in debs.glob("*.deb"):
        if path not in keep:
            path.unlink(missing_ok=True)
