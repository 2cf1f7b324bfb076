#!/usr/bin/env python3
"""The full Debian guest (`chrono guest fetch debian-full`): boot to root's autologin
shell on chrono and on QEMU TCG, and the guest's build time.

Boot: both get the same OpenSBI, kernel, busybox initramfs, command line
(root=/dev/vda rw), RAM and root image (QEMU: a sparse copy).  chrono runs
in-process and unpaced; each time is host wall time from the start until the
shell prompt `root@chrono:~# ` is on the console.  Best of --repeat.

Build: chrono's second stage time is the one the fetch measured and wrote in the
guest's guest.json (build_seconds).  --qemu-build also runs the same second stage
on QEMU: a fresh first stage (debootstrap --foreign, as root; its packages come from
debootstrap's cache) made into an image, booted with the same command line and
init=/chrono-setup, timed until `chrono-setup: done`.

    python bench/bench_debian_full.py [--repeat 3] [--cache DIR] [--qemu-build]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from debian_guest import ChronoDebian, QemuDebian  # noqa: E402

from chrono.guests import debian, debian_full  # noqa: E402
from chrono.guests.apt import PrivateApt  # noqa: E402
from chrono.guests.cache import apt_dir, cache_root, guests_dir  # noqa: E402
from chrono.guests.manifest import GuestManifest  # noqa: E402
from chrono.guests.progress import silent  # noqa: E402


def sparse_copy(source: Path, folder: Path) -> Path:
    copy = folder / source.name
    subprocess.run(["cp", "--sparse=always", str(source), str(copy)], check=True)
    return copy


def chrono_boot(spec) -> tuple[float, int]:
    g = ChronoDebian(spec)
    g.expect(debian_full.READY_MARKER)
    return time.perf_counter() - g.started, g.machine.steps


def qemu_boot(spec, folder: Path) -> float:
    disk = sparse_copy(spec.disk, folder)
    q = QemuDebian(spec, disk)
    try:
        q.expect(debian_full.READY_MARKER, timeout=900)
        return time.perf_counter() - q.started
    finally:
        q.close()
        disk.unlink()


def qemu_second_stage(root: Path, spec, folder: Path) -> float:
    """The second stage on QEMU, from a fresh first stage: host seconds."""
    apt = PrivateApt(apt_dir(root), None, debian.SUITE, debian.ARCH)
    boot = debian.boot_files(folder, folder / "scratch", apt, silent)
    image = folder / "root.img"
    debian_full.root_image(image, folder / "scratch" / "root", apt=apt, cache_dir=apt_dir(root),
                           kernel_tree=boot.kernel_tree, release=boot.release,
                           size=spec.disk.stat().st_size, progress=silent)
    q = QemuDebian(replace(spec, append=debian_full.SETUP_APPEND), image)
    try:
        q.expect(debian_full.DONE, timeout=4 * 3600)
        seconds = time.perf_counter() - q.started
        q.proc.wait(timeout=120)
        return seconds
    finally:
        q.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="boots of each; the best is reported")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian-full (default: $XDG_CACHE_HOME/chrono)")
    ap.add_argument("--qemu-build", action="store_true",
                    help="also run the second stage on QEMU (long: tens of minutes)")
    args = ap.parse_args()

    root = args.cache or cache_root()
    folder = guests_dir(root) / debian_full.NAME
    try:
        manifest = GuestManifest.load(folder)
    except Exception as e:      # noqa: BLE001 - one line for the user
        sys.exit(f"{e}\n(build it with `chrono guest fetch debian-full`)")
    spec = manifest.spec(folder)
    print(f"debian-full: {folder}, {spec.ram_size >> 20} MiB RAM, append {spec.append!r}")

    chrono_runs, qemu_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-full-") as tmp:
        for i in range(args.repeat):
            seconds, steps = chrono_boot(spec)
            chrono_runs.append(seconds)
            print(f"  chrono boot {i + 1}: {seconds:.1f} s, {steps / 1e9:.2f} billion instructions")
            q = qemu_boot(spec, Path(tmp))
            qemu_runs.append(q)
            print(f"  QEMU   boot {i + 1}: {q:.1f} s")
    best_c, best_q = min(chrono_runs), min(qemu_runs)
    print(f"boot to the autologin shell: chrono {best_c:.1f} s, QEMU {best_q:.1f} s "
          f"(chrono/QEMU {best_c / best_q:.2f})")

    built = manifest.build_seconds
    print(f"build on chrono (the fetch's own measurement, {manifest.built}): second stage "
          f"{built.get('second_stage', '?')} s, boot for the snapshot "
          f"{built.get('boot_to_shell', '?')} s, savevm booted {built.get('save_booted', '?')} s")
    if args.qemu_build:
        with tempfile.TemporaryDirectory(prefix="bench-full-build-") as tmp:
            q = qemu_second_stage(root, spec, Path(tmp))
        print(f"second stage on QEMU: {q:.0f} s (chrono: {built.get('second_stage', '?')} s)")
    else:
        print("second stage on QEMU: not measured (--qemu-build runs it)")


if __name__ == "__main__":
    main()
