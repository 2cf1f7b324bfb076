"""Snapshot store throughput for 4 KiB pages: encode, put, get, lazy reads, snapshots.

    python bench/bench_store.py [--mib 64] [--threads N]

The synthetic RAM mixes page kinds the way a booted guest does: zero pages,
x86-64 machine code (libpython), text (Python sources), RISC-V code (the demo
guest) and incompressible bytes.  Every rate is measured in this run; nothing
is compared with a stored number.
"""
from __future__ import annotations

import argparse
import glob
import os
import random
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from chrono.store import (PAGE_SIZE, Manifest, PageTable, Store, decode_blob, encode_blob,
                          encode_pages)


def page_pool(data: bytes, count: int, rng: random.Random) -> list[bytes]:
    pages = [data[o:o + PAGE_SIZE] for o in range(0, len(data) - PAGE_SIZE, PAGE_SIZE)]
    pages = [p for p in pages if any(p)]
    return [rng.choice(pages) for _ in range(count)]


def synthetic_ram(mib: int, seed: int = 1) -> np.ndarray:
    rng = random.Random(seed)
    n = mib * 256
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    code = b"".join(Path(p).read_bytes() for p in glob.glob(os.path.join(libdir, "libpython3*.so*"))[:1])
    code = code or Path(sys.executable).read_bytes()
    text = b"".join(Path(p).read_bytes() for p in glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    riscv = (Path(__file__).parent.parent / "chrono" / "data" / "demo.elf").read_bytes()
    kinds = [("zero", 0.30), ("x86", 0.30), ("text", 0.20), ("riscv", 0.05), ("random", 0.15)]
    pools = {"x86": page_pool(code, n, rng), "text": page_pool(text, n, rng),
             "riscv": page_pool(riscv, n, rng)}
    ram = np.zeros((n, PAGE_SIZE), dtype=np.uint8)
    for i in range(n):
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        if kind == "random":
            ram[i] = np.frombuffer(rng.randbytes(PAGE_SIZE), dtype=np.uint8)
        elif kind != "zero":
            ram[i] = np.frombuffer(pools[kind][i], dtype=np.uint8)
    return ram


def rate(pages: int, seconds: float) -> str:
    return f"{pages / seconds / 1e3:7.1f} kpages/s  {pages * PAGE_SIZE / seconds / 1e6:7.1f} MB/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64, help="synthetic RAM size (default 64)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    ram = synthetic_ram(args.mib)
    n = len(ram)
    nonzero = int(ram.any(axis=1).sum())
    print(f"{args.mib} MiB synthetic RAM: {n} pages, {nonzero} non-zero; "
          f"{os.cpu_count()} CPUs, {args.threads} encode threads")

    t = time.perf_counter()
    serial = [encode_blob(row) for row in ram]
    print(f"encode_blob (hash+lz4), 1 thread      {rate(n, time.perf_counter() - t)}")
    with ThreadPoolExecutor(args.threads) as pool:
        t = time.perf_counter()
        changes, blobs = encode_pages(ram, range(n), pool)
        print(f"encode_pages, {args.threads} threads            {rate(n, time.perf_counter() - t)}")
    stored = sum(len(v) for _, v in blobs)
    print(f"  {len(blobs)} distinct non-zero pages, {stored / max(1, len(blobs)) / PAGE_SIZE:.2f} "
          f"of their size stored ({sum(v[0] == 0 for _, v in blobs)} raw)")
    del serial

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s", create=True) as store:
        t = time.perf_counter()
        with store.writer() as w:
            w.put_blobs(blobs)
            put = time.perf_counter() - t
            table, leaves = PageTable.empty(n).with_changes(changes, w)
            w.put_blobs(leaves)
            sid = w.put_snapshot(Manifest({"ram": n * PAGE_SIZE}, w.put_blob(b"state"), table))
            w.set_ref("full", sid)
        total = time.perf_counter() - t
        print(f"put_blobs, one transaction           {rate(len(blobs), put)}")
        print(f"full snapshot commit (put+tables)     {total * 1e3:7.1f} ms for {len(blobs)} blobs")

        # An incremental snapshot: 1000 dirty pages, as a keyframe after a short run.
        rng = np.random.default_rng(2)
        dirty = np.sort(rng.choice(n, 1000, replace=False))
        ram[dirty, :64] ^= 0x5A
        t = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            dchanges, dblobs = encode_pages(ram[dirty], dirty, pool)
        enc = time.perf_counter() - t
        with store.writer() as w:
            w.put_blobs(dblobs)
            table2, leaves2 = table.with_changes(dchanges, w)
            w.put_blobs(leaves2)
            sid2 = w.put_snapshot(Manifest({"ram": n * PAGE_SIZE}, w.put_blob(b"state2"), table2,
                                           parent=sid))
            w.set_ref("incr", sid2)
        commit = time.perf_counter() - t - enc
        print(f"incremental snapshot, 1000 dirty pages: encode {enc * 1e3:.1f} ms, "
              f"commit {commit * 1e3:.1f} ms ({len(leaves2)} leaves rewritten of "
              f"{len(table2.leaf_keys)})")

        keys = [k for k, _ in blobs]
        random.Random(3).shuffle(keys)
        t = time.perf_counter()
        with store.reader() as r:
            for k in keys:
                r.get_blob(k)
        print(f"get_blob (verified), 1 thread, random  {rate(len(keys), time.perf_counter() - t)}")

        t = time.perf_counter()
        with store.reader() as r:
            raw = [(k, r.get_raw(k)) for k in keys]
        step = -(-len(raw) // args.threads)
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda i: [decode_blob(k, v) for k, v in raw[i:i + step]],
                          range(0, len(raw), step)))
        print(f"get_raw + decode_blob, {args.threads} threads      {rate(len(keys), time.perf_counter() - t)}")

        index = np.flatnonzero(ram.any(axis=1))[:20000]
        t = time.perf_counter()
        for i in index:
            store.page(table2, int(i))
        print(f"store.page() (lazy: own txn per page)  {rate(len(index), time.perf_counter() - t)}")

        t = time.perf_counter()
        from chrono.store import diff
        d = diff(table, table2, store)
        print(f"diff of the two snapshots: {len(d)} pages in {(time.perf_counter() - t) * 1e3:.1f} ms")
        print(f"data.mdb and packs: {store.disk_bytes() / 1e6:.1f} MB for {nonzero * PAGE_SIZE / 1e6:.1f} MB "
              f"of non-zero RAM")


if __name__ == "__main__":
    main()
