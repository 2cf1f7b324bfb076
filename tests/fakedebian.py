"""Stand-ins for Debian's riscv64 packages and for apt, so the whole guest build runs
offline in a second: synthetic kernel modules (ELF files with a .modinfo section),
synthetic .deb packages (built with the host's dpkg-deb), and fake `apt-get` /
`apt-cache` scripts that serve them."""
from __future__ import annotations

import lzma
import os
import shutil
import struct
import subprocess
import textwrap
from pathlib import Path

RELEASE = "6.0.0-test-riscv64"
KERNEL_PKG = f"linux-image-{RELEASE}"
VERSIONS = {KERNEL_PKG: "6.0.0-1", "busybox-static": "1:1.0-1", "opensbi": "1.0-1"}
FAKE_BUSYBOX = b"\x7fELF fake busybox"
FAKE_FIRMWARE = b"fake opensbi fw_jump"

# file name (less .ko.xz) -> (folder under kernel/, depends=) shaped like Debian 13's
# real modules; some file names have a dash where the module name has _, as there.
MODULES = {
    "virtio_mmio": ("drivers/virtio", ""),
    "virtio_blk": ("drivers/block", ""),
    "virtio-rng": ("drivers/char/hw_random", ""),
    "crc32c_generic": ("crypto", ""),
    "ext4": ("fs/ext4", "jbd2,mbcache,crc16"),
    "jbd2": ("fs/jbd2", ""),
    "mbcache": ("fs", ""),
    "crc16": ("lib", ""),
    "virtio_net": ("drivers/net", "net_failover"),
    "net_failover": ("drivers/net", "failover"),
    "failover": ("net/core", ""),
    "unrelated": ("drivers/misc", "crc16"),
}


def module_elf(name: str, depends: str, extra: dict[str, str] | None = None) -> bytes:
    """A minimal relocatable RISC-V ELF64 whose only content is a .modinfo section
    (NUL-separated key=value strings, as the kernel's MODULE_INFO writes them)."""
    fields = {"license": "GPL", "depends": depends, "name": name,
              "vermagic": f"{RELEASE} SMP mod_unload", **(extra or {})}
    modinfo = b"".join(f"{k}={v}".encode() + b"\0" for k, v in fields.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    modinfo_at = 64
    shstrtab_at = modinfo_at + len(modinfo)
    sections_at = (shstrtab_at + len(shstrtab) + 7) & ~7
    header = struct.pack("<4s5B7x2HI3QI6H", b"\x7fELF", 2, 1, 1, 0, 0,
                         1, 243, 1,                    # ET_REL, EM_RISCV, EV_CURRENT
                         0, 0, sections_at,            # entry, phoff, shoff
                         0, 64, 0, 0, 64, 3, 2)        # flags, sizes, shnum=3, shstrndx=2

    def section(name_at, kind, offset, size):
        return struct.pack("<2I4Q2I2Q", name_at, kind, 0, 0, offset, size, 0, 0, 1, 0)

    body = header + modinfo + shstrtab
    body += b"\0" * (sections_at - len(body))
    return (body + section(0, 0, 0, 0)
            + section(1, 1, modinfo_at, len(modinfo))           # .modinfo, PROGBITS
            + section(10, 3, shstrtab_at, len(shstrtab)))       # .shstrtab, STRTAB


def riscv_image(size: int = 4096) -> bytes:
    """Bytes that pass as a RISC-V Linux Image (magic "RISCV" at 48, "RSC\\x05" at 56)."""
    image = bytearray(size)
    image[48:56] = b"RISCV\0\0\0"
    image[56:60] = b"RSC\x05"
    return bytes(image)


def build_debs(folder: Path, modules: dict = MODULES) -> Path:
    """The three packages as .deb files in ``folder`` (plus their apt-cache stanzas)."""
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "trees"
    kernel = work / KERNEL_PKG
    (kernel / "boot").mkdir(parents=True)
    (kernel / "boot" / f"vmlinux-{RELEASE}").write_bytes(riscv_image())
    for name, (sub, depends) in modules.items():
        d = kernel / "usr/lib/modules" / RELEASE / "kernel" / sub
        d.mkdir(parents=True, exist_ok=True)
        elf = module_elf(name.replace("-", "_"), depends)
        (d / f"{name}.ko.xz").write_bytes(lzma.compress(elf, format=lzma.FORMAT_XZ))
    busybox = work / "busybox-static" / "usr/bin"
    busybox.mkdir(parents=True)
    (busybox / "busybox").write_bytes(FAKE_BUSYBOX)
    fw = work / "opensbi" / "usr/lib/riscv64-linux-gnu/opensbi/generic"
    fw.mkdir(parents=True)
    (fw / "fw_jump.bin").write_bytes(FAKE_FIRMWARE)

    stanzas = [f"Package: linux-image-riscv64\nVersion: {VERSIONS[KERNEL_PKG]}\n"
               f"Architecture: riscv64\nDepends: {KERNEL_PKG} (= {VERSIONS[KERNEL_PKG]})\n"]
    for package, version in VERSIONS.items():
        arch = "all" if package == "opensbi" else "riscv64"
        tree = work / package
        (tree / "DEBIAN").mkdir()
        (tree / "DEBIAN" / "control").write_text(
            f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
            f"Maintainer: nobody <nobody@example.org>\nDescription: test stand-in\n")
        deb = folder / f"{package}_{version.replace(':', '%3a')}_{arch}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", tree, deb],
                       check=True, capture_output=True)
        stanzas.append(f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n")
    (folder / "index").write_text("\n".join(stanzas))
    shutil.rmtree(work)
    return folder


# `apt-get` and `apt-cache` stand-ins: they skip -o/-q options, then
#   apt-get update         -> prints what FAKE_APT_UPDATE says, exits with FAKE_APT_UPDATE_RC
#   apt-get download P...  -> copies $FAKE_DEBS/P_*.deb into the current folder
#   apt-cache show ... P.. -> the stanzas of $FAKE_DEBS/index for P
_APT_GET = """\
#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
cmd=$1; shift
case "$cmd" in
update) [ -n "$FAKE_APT_UPDATE" ] && echo "$FAKE_APT_UPDATE" >&2; exit ${FAKE_APT_UPDATE_RC:-0};;
download)
    for p in "$@"; do
        cp "$FAKE_DEBS/$p"_*.deb . 2>/dev/null || { echo "E: Unable to locate package $p" >&2; exit 100; }
    done;;
*) echo "E: fake apt-get: $cmd" >&2; exit 100;;
esac
"""

_APT_CACHE = """\
#!/bin/sh
found=0
for p in "$@"; do
    case "$p" in -*|show) continue;; esac
    awk -v p="$p" 'BEGIN{RS=""; ORS="\\n\\n"} index($0, "Package: " p "\\n") == 1 {print; f=1} END{exit !f}' \\
        "$FAKE_DEBS/index" && found=1
done
[ $found = 1 ] || { echo "E: No packages found" >&2; exit 100; }
"""


def install_fake_apt(bin_dir: Path, debs: Path, monkeypatch) -> None:
    """Put fake apt-get/apt-cache (and the real dpkg-deb) first in PATH, serving ``debs``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("apt-get", _APT_GET), ("apt-cache", _APT_CACHE)):
        (bin_dir / name).write_text(textwrap.dedent(text))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("FAKE_DEBS", str(debs))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
