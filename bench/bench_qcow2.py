#!/usr/bin/env python3
"""Opening qcow2 disks: chrono's native reader against `qemu-img convert -O raw`.

A SIZE ext4 image (default 4 GiB) is filled by mkfs.ext4 -d with DATA of random
files (default 1 GiB) and converted with `qemu-img convert -O qcow2`; an empty
qcow2 of the same size (`qemu-img create`) and an overlay on the full one
(`qemu-img create -b`, a few qemu-io writes) come with it.  For each:

- chrono's first open (`Disk.open`: headers, tables, the raw copy written into
  a fresh cache, fsync included), then a second open (the cached copy reused);
- `qemu-img convert -O raw` of the same image (the reference: what a
  convert-once design would cost), then `sync` (chrono's copy is synced too).

Both read the qcow2 from the page cache (it was just written).  Best of R.

    python bench/bench_qcow2.py [--size 4G] [--data 1024M] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chrono.core.disk import Disk
from chrono.units import format_size, parse_size

HOST_TOOLS = {**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}


def run(*args, cwd=None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=cwd, env=HOST_TOOLS,
                   stdout=subprocess.DEVNULL)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def chrono_opens(image: Path, work: Path, repeat: int) -> tuple[float, float]:
    def first():
        cache = work / "xdg"
        shutil.rmtree(cache, ignore_errors=True)
        os.environ["XDG_CACHE_HOME"] = str(cache)
        disk = Disk.open(image)
        assert not disk.raw_copy.reused
    first_s = best(first, repeat)
    again_s = best(lambda: Disk.open(image), repeat)
    return first_s, again_s


def qemu_convert(image: Path, work: Path, repeat: int) -> float:
    out = work / "reference.raw"

    def convert():
        out.unlink(missing_ok=True)
        run("qemu-img", "convert", "-O", "raw", image, out)
        os.sync()
    s = best(convert, repeat)
    out.unlink()
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4G")
    ap.add_argument("--data", default="1024M")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size, data = parse_size(args.size, "--size"), parse_size(args.data, "--data")
    with tempfile.TemporaryDirectory(prefix="bench-qcow2-") as tmp:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        chunk = 64 << 20
        for i in range(-(-data // chunk)):
            (files / f"f{i}.bin").write_bytes(os.urandom(min(chunk, data - i * chunk)))
        raw = work / "disk.img"
        run("mkfs.ext4", "-q", "-F", "-d", files, raw, f"{size >> 20}M")
        shutil.rmtree(files)
        full = work / "full.qcow2"
        run("qemu-img", "convert", "-O", "qcow2", raw, full)
        raw.unlink()
        empty = work / "empty.qcow2"
        run("qemu-img", "create", "-q", "-f", "qcow2", empty, str(size))
        top = work / "top.qcow2"
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "full.qcow2", "-F", "qcow2", top,
            cwd=work)
        run("qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 64M", "-c", "write -z 200M 64M", top)

        print(f"{format_size(size)} ext4 image, {format_size(data)} of random files; best of "
              f"{args.repeat}")
        print(f"{'image':<34} {'chrono first':>13} {'chrono again':>13} {'qemu-img -O raw':>16}")
        for label, image in (("full (converted)", full), ("empty (qemu-img create)", empty),
                             ("overlay on full (+64 MiB written)", top)):
            first, again = chrono_opens(image, work, args.repeat)
            ref = qemu_convert(image, work, args.repeat)
            print(f"{label:<34} {first:>12.3f}s {again * 1000:>11.1f}ms {ref:>15.3f}s")


if __name__ == "__main__":
    sys.exit(main())
