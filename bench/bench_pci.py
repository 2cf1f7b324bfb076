#!/usr/bin/env python3
"""What `--virtio pci` costs against `--virtio mmio`: the Debian guest's boot to
its shell marker, disk throughput and network throughput, on chrono and, for
the ratios, on QEMU TCG with the same devices, in one run.

chrono runs as a user runs it (`chrono run debian --net user --virtio T`,
piped input); QEMU `-M virt` on a copy of the disk, with the disk, network
and entropy devices as virtio-*-device (mmio) or virtio-*-pci (non-
transitional).  Times are host wall time: boot from the process start to the
marker; disk = `dd` of --disk-mib MiB to a file on /mnt with conv=fsync, then
reading it back after dropping the page cache; network = busybox wget of a
--mib MiB file from the host's http.server to /dev/null.

    python bench/bench_pci.py [--repeat 1] [--mib 32] [--disk-mib 64] [--no-qemu] [--cache DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_net import ChronoCli, http_blob, timed  # noqa: E402
from debian_guest import QemuDebian, copy_disk, guest_files, marker  # noqa: E402

QEMU_DEVICES = {
    "mmio": ["-device", "virtio-blk-device,drive=d0",
             "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
             "-device", "virtio-rng-device"],
    "pci": ["-device", "virtio-blk-pci,drive=d0,disable-legacy=on",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,romfile=",
            "-device", "virtio-rng-pci,disable-legacy=on"],
}


def workload(guest, url: str, disk_mib: int) -> dict[str, float]:
    """Seconds of each measured step, the guest at its prompt."""
    write, _ = timed(guest, 1, f"dd if=/dev/zero of=/mnt/bench.bin bs=1M count={disk_mib} "
                               f"conv=fsync 2>/dev/null")
    guest.run_command(2, "sync; echo 3 > /proc/sys/vm/drop_caches")
    read, _ = timed(guest, 3, "dd if=/mnt/bench.bin of=/dev/null bs=1M 2>/dev/null")
    guest.run_command(4, "rm /mnt/bench.bin; sync")
    net, _ = timed(guest, 5, f"wget -q -O /dev/null {url}")
    return {"disk write": write, "disk read": read, "download": net}


def chrono_run(transport: str, url: str, ready: str, cache: Path | None, work: Path,
               disk_mib: int) -> dict[str, float]:
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache.parent)
    g = ChronoCli(["run", "debian", "--net", "user", "--virtio", transport], work, env)
    try:
        g.expect(ready)
        times = {"boot": time.perf_counter() - g.started}
        times.update(workload(g, url, disk_mib))
        g.finish()
    finally:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
    return times


def qemu_run(spec, transport: str, url: str, ready: str, folder: Path,
             disk_mib: int) -> dict[str, float]:
    disk = copy_disk(spec, folder)
    q = QemuDebian(spec, disk, drives=["-drive", f"file={disk},format=raw,if=none,id=d0",
                                       *QEMU_DEVICES[transport]])
    try:
        q.expect(ready, timeout=600)
        times = {"boot": time.perf_counter() - q.started}
        times.update(workload(q, url, disk_mib))
        return times
    finally:
        q.close()
        disk.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    ap.add_argument("--mib", type=int, default=32, help="size of the file downloaded (MiB)")
    ap.add_argument("--disk-mib", type=int, default=64, help="bytes written and read on /mnt (MiB)")
    ap.add_argument("--no-qemu", action="store_true", help="chrono only")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    args = ap.parse_args()

    spec = guest_files(args.cache)
    ready = marker(args.cache)
    with tempfile.TemporaryDirectory(prefix="chrono-bench-pci-") as tmp:
        folder = Path(tmp)
        server, port, _ = http_blob(folder, args.mib)
        url = f"http://10.0.2.2:{port}/blob"
        best: dict[tuple[str, str], dict[str, float]] = {}
        try:
            for r in range(args.repeat):
                for transport in ("mmio", "pci"):
                    runs = [("chrono", lambda: chrono_run(transport, url, ready, args.cache,
                                                          folder, args.disk_mib))]
                    if not args.no_qemu:
                        runs.append(("QEMU", lambda: qemu_run(spec, transport, url, ready, folder,
                                                              args.disk_mib)))
                    for who, run in runs:
                        times = run()
                        print(f"  {who:6s} {transport:4s} #{r + 1}: " + ", ".join(
                            f"{k} {v:.2f} s" for k, v in times.items()), flush=True)
                        row = best.setdefault((who, transport), times)
                        for k, v in times.items():
                            row[k] = min(row[k], v)
        finally:
            server.terminate()
            server.wait()
    print(f"best of {args.repeat} (disk {args.disk_mib} MiB, download {args.mib} MiB):")
    for (who, transport), t in best.items():
        print(f"  {who:6s} {transport:4s} boot {t['boot']:6.2f} s  "
              f"disk write {args.disk_mib / t['disk write']:6.1f} MiB/s  "
              f"read {args.disk_mib / t['disk read']:6.1f} MiB/s  "
              f"download {args.mib / t['download']:6.1f} MiB/s")
    for who in ("chrono", "QEMU"):
        if (who, "pci") in best:
            m, p = best[(who, "mmio")], best[(who, "pci")]
            print(f"  {who} pci/mmio time: " + ", ".join(f"{k} {p[k] / m[k]:.2f}" for k in m))


if __name__ == "__main__":
    main()
