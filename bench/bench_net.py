#!/usr/bin/env python3
"""Network throughput: the Debian guest downloads a file (100 MiB of random
bytes by default) from the host's `python3 -m http.server` with busybox wget,
on chrono (`chrono run debian --net user`: libslirp) and on QEMU TCG
(`-netdev user -device virtio-net-device`: QEMU's libslirp), in one run.

Both boot the same OpenSBI, kernel, initramfs (its /init takes a DHCP lease on
eth0), command line and RAM (`chrono guest fetch debian`).  chrono runs as a
user runs it, through the CLI with piped input; QEMU on a copy of the disk.
The time is host wall time from typing `wget -q -O /dev/null URL` to its end
marker; MB/s = 10^6 bytes per second of it.  A second download through
`sha256sum` checks the bytes arrived intact (on both), and with --record the
download is also timed under `chrono record` (the overhead of logging every
frame) with the log's size.  The CPU seconds chrono's process used during the
download are given beside its wall time (the machine may be shared; the
http.server and, for QEMU, its own threads are not in them).

    python bench/bench_net.py [--mib 100] [--repeat 2] [--record] [--no-qemu] [--cache DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from debian_guest import QemuDebian, copy_disk, framed_command, guest_files, marker  # noqa: E402

NETDEV = ["-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChronoCli:
    """`chrono run|record debian --net user` with its console on pipes."""

    def __init__(self, args: list[str], cwd: Path, env: dict):
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "chrono.cli", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd, env=env)
        self.output = b""
        self.errors = b""
        self._lock = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stdout, "output"), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, "errors"), daemon=True).start()

    def _read(self, stream, name):
        while chunk := stream.read1(65536):
            with self._lock:
                setattr(self, name, getattr(self, name) + chunk)
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def text(self) -> str:
        with self._lock:
            return self.output.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def expect(self, needle: str, start: int = 0, timeout: float = 1800) -> int:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self.output.decode("utf-8", "replace").replace("\r\n", "\n").find(needle, start)
                if found >= 0:
                    return found + len(needle)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"chrono: no {needle!r}:\n{self.text()[-1500:]}\n"
                                       f"{self.errors.decode(errors='replace')}")
                self._lock.wait(min(left, 0.5))

    def run_command(self, n: int, command: str, timeout: float = 1800) -> str:
        return framed_command(self, n, command, timeout=timeout)

    def finish(self) -> str:
        self.type(b"poweroff\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=300)
        return self.errors.decode(errors="replace")


def timed(guest, n: int, command: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = guest.run_command(n, command)
    return time.perf_counter() - t0, out


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chrono_download(command: str, url: str, ready: str, cache: Path | None, work: Path,
                    verb: str = "run") -> tuple[float, str, float, str]:
    """(download seconds, sha256sum output, chrono's CPU seconds over the
    download, its stderr)."""
    env = dict(os.environ)
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache.parent)
    args = [verb, "debian", "--net", "user"]
    if verb == "record":
        args += ["--store", str(work / "store"), "--name", f"dl-{time.monotonic_ns()}"]
    g = ChronoCli(args, work, env)
    try:
        g.expect(ready)
        cpu0 = process_cpu(g.proc.pid)
        seconds, _ = timed(g, 1, command)
        cpu = process_cpu(g.proc.pid) - cpu0
        _, digest = timed(g, 2, f"wget -q -O - {url} | sha256sum")
        errors = g.finish()
    finally:
        if g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
    return seconds, digest.split()[0] if digest.split() else digest, cpu, errors


def qemu_download(spec, command: str, url: str, ready: str, folder: Path) -> tuple[float, str]:
    disk = copy_disk(spec, folder)
    q = QemuDebian(spec, disk, extra=NETDEV)
    try:
        q.expect(ready, timeout=600)
        seconds, _ = timed(q, 1, command)
        _, digest = timed(q, 2, f"wget -q -O - {url} | sha256sum")
        return seconds, digest.split()[0] if digest.split() else digest
    finally:
        q.close()
        disk.unlink()


def http_blob(folder: Path, mib: int) -> tuple[subprocess.Popen, int, str]:
    """A file of `mib` MiB of random bytes, folder/www/blob, served by
    `python3 -m http.server` on 127.0.0.1: (the server, its port, the SHA-256)."""
    (folder / "www").mkdir()
    blob = folder / "www" / "blob"
    with open(blob, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "--directory", str(folder / "www")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return server, port, hashlib.sha256(blob.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=100, help="size of the file downloaded (MiB)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    ap.add_argument("--record", action="store_true", help="also time it under `chrono record`")
    ap.add_argument("--no-qemu", action="store_true", help="chrono only")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    args = ap.parse_args()

    spec = guest_files(args.cache)
    ready = marker(args.cache)
    size = args.mib << 20
    with tempfile.TemporaryDirectory(prefix="chrono-bench-net-") as tmp:
        folder = Path(tmp)
        server, port, expected = http_blob(folder, args.mib)
        url = f"http://10.0.2.2:{port}/blob"
        command = f"wget -q -O /dev/null {url}"
        print(f"Debian guest: {spec.kernel.parent}, {spec.ram_size >> 20} MiB RAM; "
              f"download of {args.mib} MiB from http.server on 127.0.0.1:{port} (10.0.2.2)")
        rows = {}
        try:
            for r in range(args.repeat):
                s, digest, cpu, _ = chrono_download(command, url, ready, args.cache, folder)
                print(f"  chrono run     #{r + 1}: {s:7.2f} s  {size / s / 1e6:7.1f} MB/s  "
                      f"(chrono's CPU {cpu:.2f} s)  sha256 "
                      f"{'ok' if digest == expected else 'WRONG ' + digest}", flush=True)
                rows.setdefault("chrono", []).append(s)
                if args.record:
                    s, digest, cpu, err = chrono_download(command, url, ready, args.cache,
                                                          folder, verb="record")
                    log = re.search(r"log ([\d,]+) bytes", err)
                    print(f"  chrono record  #{r + 1}: {s:7.2f} s  {size / s / 1e6:7.1f} MB/s  "
                          f"(chrono's CPU {cpu:.2f} s)  sha256 "
                          f"{'ok' if digest == expected else 'WRONG ' + digest}; log "
                          f"{log.group(1) if log else '?'} bytes for both downloads and the boot",
                          flush=True)
                    rows.setdefault("record", []).append(s)
                if not args.no_qemu:
                    s, digest = qemu_download(spec, command, url, ready, folder)
                    print(f"  QEMU TCG       #{r + 1}: {s:7.2f} s  {size / s / 1e6:7.1f} MB/s  "
                          f"sha256 {'ok' if digest == expected else 'WRONG ' + digest}",
                          flush=True)
                    rows.setdefault("qemu", []).append(s)
        finally:
            server.terminate()
            server.wait()
            shutil.rmtree(folder / "store", ignore_errors=True)
    best = {k: min(v) for k, v in rows.items()}
    print(f"best of {args.repeat}:")
    for k, s in best.items():
        print(f"  {k:8s} {size / s / 1e6:7.1f} MB/s ({s:.2f} s)")
    if "qemu" in best:
        print(f"  chrono/QEMU throughput: {best['qemu'] / best['chrono']:.2f}")
    if "record" in best:
        print(f"  record/run throughput: {best['chrono'] / best['record']:.2f}")


if __name__ == "__main__":
    main()
