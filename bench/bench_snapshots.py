#!/usr/bin/env python3
"""Snapshots of a booted Linux guest: chrono's savevm/loadvm against QEMU's, in one run.

The Debian guest (`chrono guest fetch debian`: OpenSBI, Linux, busybox, 256 MiB
RAM, ext4 disk) boots to its shell on both.  Then, on each:

1. savevm booted                 (time; bytes added to the store / the qcow2)
2. `ls /mnt; echo x > /mnt/y; sync` in the guest, then savevm after
                                 (incremental: time; bytes added)
   the guest idles at its prompt for 5 s of its time, then savevm idle
                                 (incremental of a mostly idle guest)
3. loadvm booted                 (time), then `echo ready-N`: time until the guest
                                 answers (chrono loads RAM pages lazily, on touch)
4. a new process started from the snapshot (chrono: `chrono run --from booted`,
   whose note gives the restore time; QEMU: `-loadvm booted`), then
   `echo ready-N`: time from process start until the answer (chrono: best of
   FAST_BOOT_RUNS, with the store warm and cold in the page cache, and
   `chrono --version` alone, as bench_cold_start.py measures them).

chrono runs in-process (Snapshots on the Machine; the store in a temporary
directory); QEMU (`-M virt`, TCG) on a qcow2 made with `qemu-img convert` from
the same disk image, its human monitor on a unix socket.  Byte counts: chrono's
Snapshots.times.new_bytes (compressed blobs added by the capture) and the growth
of the store's used bytes (LMDB's pages in use and the packs); QEMU's growth of the qcow2 file (and of its
allocated blocks).  Note that chrono's first snapshot also stores every non-zero
disk block, while QEMU's disk blocks are already in the qcow2.

    python bench/bench_snapshots.py [--repeat 1] [--cache DIR]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cold_start  # noqa: E402
from debian_guest import PROMPT, ChronoDebian, QemuDebian, guest_files, marker  # noqa: E402

from chrono.store.capture import Snapshots  # noqa: E402
from chrono.store.store import Store  # noqa: E402

COMMANDS = "ls /mnt; echo x > /mnt/y; sync"
IDLE_SECONDS = 5
FAST_BOOT_RUNS = 5                  # new processes from the snapshot (and CLI starts): best of


def store_used(store: Store) -> int:
    """LMDB's pages in use plus the packs (chrono.store.packs)."""
    info = store.info()
    return info["used_bytes"] + info["pack_bytes"]


def answer(g, n: int) -> tuple[float, int]:
    """Type `echo ready-N`; (wall seconds, guest instructions: chrono only) until the
    guest prints `ready-N`."""
    start = len(g.text())
    machine = getattr(g, "machine", None)
    steps = machine.steps if machine is not None else 0
    t = time.perf_counter()
    g.type(f"echo ready-{n}\n".encode())
    g.expect(f"\nready-{n}\n", start)
    return time.perf_counter() - t, (machine.steps - steps if machine is not None else 0)


# ---- chrono ------------------------------------------------------------------------------

def chrono_side(spec, ready: str, work: Path) -> dict:
    r: dict = {}
    g = ChronoDebian(spec)                   # the guest's disk, copy-on-write
    end = g.expect(ready)
    r["boot"] = time.perf_counter() - g.started
    g.expect(PROMPT, end)
    g.settle()
    m = g.machine
    store_path = work / "store"
    store = Store.open(store_path, create=True)
    snaps = Snapshots(store, g.guest)
    try:
        used0, file0 = store_used(store), store.disk_bytes()
        t = time.perf_counter()
        snaps.save("booted")
        r["save"] = time.perf_counter() - t
        r["save_paused"] = snaps.times.paused
        r["save_encode"], r["save_commit"] = snaps.times.encode, snaps.times.commit
        r["save_new"] = snaps.times.new_bytes
        r["save_pages"], r["save_blocks"] = snaps.times.pages, snaps.times.blocks
        used1, file1 = store_used(store), store.disk_bytes()
        r["save_used"], r["save_file"] = used1 - used0, file1 - file0

        out = g.run_command(1, COMMANDS)
        assert "lost+found" in out, out
        g.expect(PROMPT, len(g.text()) - len(PROMPT) - 8)
        g.settle()
        t = time.perf_counter()
        snaps.save("after")
        r["incr"] = time.perf_counter() - t
        r["incr_paused"] = snaps.times.paused
        r["incr_encode"], r["incr_commit"] = snaps.times.encode, snaps.times.commit
        r["incr_new"] = snaps.times.new_bytes
        r["incr_pages"], r["incr_blocks"] = snaps.times.pages, snaps.times.blocks
        used2, file2 = store_used(store), store.disk_bytes()
        r["incr_used"], r["incr_file"] = used2 - used1, file2 - file1

        g.idle(IDLE_SECONDS)
        t = time.perf_counter()
        snaps.save("idle")
        r["idle"] = time.perf_counter() - t
        r["idle_paused"] = snaps.times.paused
        r["idle_new"], r["idle_pages"] = snaps.times.new_bytes, snaps.times.pages

        t = time.perf_counter()
        snaps.load("booted")
        r["load"] = time.perf_counter() - t
        absent = int(np.count_nonzero(m.ram_present == 0))
        r["answer"], r["answer_steps"] = answer(g, 1)
        r["answer_pages"] = absent - int(np.count_nonzero(m.ram_present == 0))
        r["absent"] = absent
        listing = g.run_command(2, "ls /mnt")
        assert "y" not in listing.split(), f"/mnt/y is still there after loadvm: {listing!r}"
        r["store_file"] = store.disk_bytes()
    finally:
        snaps.close()
        store.close()

    # Cold start as whole processes (bench/cold_start.py): the CLI's own start-up,
    # and a new process started from the snapshot, with the store warm and cold.
    r["cli_startup"] = cold_start.cli_start(FAST_BOOT_RUNS).best / 1000
    warm = cold_start.fast_boot(store_path, "booted", FAST_BOOT_RUNS, cold=False)
    cold = cold_start.fast_boot(store_path, "booted", FAST_BOOT_RUNS, cold=True)
    r["from_answer"], r["from_restore"] = warm.answer.best / 1000, warm.restore.best / 1000
    r["from_answer_cold"] = cold.answer.best / 1000
    return r


# ---- QEMU --------------------------------------------------------------------------------

def vm_sizes(info: str) -> dict[str, str]:
    """VM SIZE column of `info snapshots`, by tag."""
    sizes = {}
    for line in info.splitlines():
        cols = line.split()
        if len(cols) >= 4 and (cols[0].isdigit() or cols[0] == "--"):
            sizes[cols[1]] = " ".join(cols[2:4])
    return sizes


def file_sizes(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512


def qemu_side(spec, ready: str, work: Path) -> dict:
    r: dict = {}
    qcow2 = work / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(spec.disk), str(qcow2)], check=True)
    sock = work / "qemu-monitor.sock"
    q = QemuDebian(spec, qcow2, "qcow2", monitor=sock)
    try:
        end = q.expect(ready, timeout=600)
        r["boot"] = time.perf_counter() - q.started
        q.expect(PROMPT, end)
        time.sleep(0.5)                         # let the shell settle at its prompt
        q.monitor("info status")                # connect before timing

        size0 = file_sizes(qcow2)
        t = time.perf_counter()
        reply = q.monitor("savevm booted")
        r["save"] = time.perf_counter() - t
        assert "Error" not in reply, reply
        size1 = file_sizes(qcow2)
        r["save_file"], r["save_alloc"] = size1[0] - size0[0], size1[1] - size0[1]

        out = q.run_command(1, COMMANDS)
        assert "lost+found" in out, out
        time.sleep(0.5)
        size2 = file_sizes(qcow2)
        r["cmd_file"] = size2[0] - size1[0]
        t = time.perf_counter()
        reply = q.monitor("savevm after")
        r["incr"] = time.perf_counter() - t
        assert "Error" not in reply, reply
        size3 = file_sizes(qcow2)
        r["incr_file"], r["incr_alloc"] = size3[0] - size2[0], size3[1] - size2[1]

        time.sleep(IDLE_SECONDS)
        t = time.perf_counter()
        reply = q.monitor("savevm idle")
        r["idle"] = time.perf_counter() - t
        assert "Error" not in reply, reply
        r["idle_file"] = file_sizes(qcow2)[0] - size3[0]

        t = time.perf_counter()
        reply = q.monitor("loadvm booted")
        r["load"] = time.perf_counter() - t
        assert "Error" not in reply, reply
        r["answer"], _ = answer(q, 1)
        listing = q.run_command(2, "ls /mnt")
        assert "y" not in listing.split(), f"/mnt/y is still there after loadvm: {listing!r}"
        r["vm_sizes"] = vm_sizes(q.monitor("info snapshots"))
        r["qcow2_file"] = file_sizes(qcow2)[0]
    finally:
        q.close()

    # A new process started from the snapshot.
    start = time.perf_counter()
    q = QemuDebian(spec, qcow2, "qcow2", monitor=None, extra=["-loadvm", "booted"])
    try:
        answer(q, 3)
        r["from_answer"] = time.perf_counter() - start
    finally:
        q.close()
    return r


# ---- report --------------------------------------------------------------------------------

def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x == x else "?"


# What the QEMU column needs, and the Debian package that has it.
QEMU_TOOLS = (("qemu-system-riscv64", "qemu-system-misc"), ("qemu-img", "qemu-utils"))


def qemu_unavailable(no_qemu: bool) -> str | None:
    """Why the QEMU column cannot be measured (None: it can)."""
    if no_qemu:
        return "--no-qemu given"
    missing = [(tool, package) for tool, package in QEMU_TOOLS if shutil.which(tool) is None]
    if not missing:
        return None
    return (f"{' and '.join(tool for tool, _ in missing)} not found "
            f"(Debian: apt-get install {' '.join(package for _, package in missing)})")


def mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=1,
                    help="whole runs of each (boot included); times are the best, sizes the first")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    ap.add_argument("--no-qemu", action="store_true", help="chrono only")
    args = ap.parse_args()

    no_qemu_reason = qemu_unavailable(args.no_qemu)
    with_qemu = no_qemu_reason is None
    if not with_qemu:
        print(f"bench_snapshots: the QEMU column will not be measured: {no_qemu_reason}",
              file=sys.stderr, flush=True)
    spec = guest_files(args.cache)
    ready = marker(args.cache)
    chrono_runs, qemu_runs = [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp:
            chrono_runs.append(chrono_side(spec, ready, Path(tmp)))
            print(f"  chrono run {i + 1}: {chrono_runs[-1]}", flush=True)
        if with_qemu:
            with tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp:
                qemu_runs.append(qemu_side(spec, ready, Path(tmp)))
                print(f"  QEMU run {i + 1}: {qemu_runs[-1]}", flush=True)

    def best(runs, key):
        return min(r[key] for r in runs) if runs else float("nan")

    c = chrono_runs[0]
    q = qemu_runs[0] if qemu_runs else None
    rows = [
        ("boot to the shell marker", ms(best(chrono_runs, "boot")),
         ms(best(qemu_runs, "boot")) if q else "-"),
        ("savevm booted: time",
         f"{ms(best(chrono_runs, 'save'))} (paused {ms(best(chrono_runs, 'save_paused'))}, "
         f"encode {ms(best(chrono_runs, 'save_encode'))}, commit {ms(best(chrono_runs, 'save_commit'))})",
         ms(best(qemu_runs, "save")) if q else "-"),
        ("savevm booted: bytes added",
         f"{mib(c['save_new'])} new blobs ({c['save_pages']} RAM pages, {c['save_blocks']} disk "
         f"blocks); store used +{mib(c['save_used'])}",
         f"qcow2 +{mib(q['save_file'])} (allocated +{mib(q['save_alloc'])}); "
         f"VM SIZE {q['vm_sizes'].get('booted', '?')}" if q else "-"),
        ("savevm after (incremental): time",
         f"{ms(best(chrono_runs, 'incr'))} (paused {ms(best(chrono_runs, 'incr_paused'))}, "
         f"encode {ms(best(chrono_runs, 'incr_encode'))}, commit {ms(best(chrono_runs, 'incr_commit'))})",
         ms(best(qemu_runs, "incr")) if q else "-"),
        ("savevm after: bytes added",
         f"{mib(c['incr_new'])} new blobs ({c['incr_pages']} RAM pages, {c['incr_blocks']} disk "
         f"blocks); store used +{mib(c['incr_used'])}",
         f"qcow2 +{mib(q['incr_file'])} (allocated +{mib(q['incr_alloc'])}); "
         f"VM SIZE {q['vm_sizes'].get('after', '?')}" if q else "-"),
        (f"savevm idle (after {IDLE_SECONDS} s idle): time",
         f"{ms(best(chrono_runs, 'idle'))} (paused {ms(best(chrono_runs, 'idle_paused'))})",
         ms(best(qemu_runs, "idle")) if q else "-"),
        ("savevm idle: bytes added",
         f"{mib(c['idle_new'])} new blobs ({c['idle_pages']} RAM pages)",
         f"qcow2 +{mib(q['idle_file'])}" if q else "-"),
        ("loadvm booted: time", ms(best(chrono_runs, "load")), ms(best(qemu_runs, "load")) if q else "-"),
        ("then `echo ready-1` answered after",
         f"{ms(best(chrono_runs, 'answer'))} ({c['answer_steps']} instructions, "
         f"{c['answer_pages']} of {c['absent']} absent pages loaded)",
         ms(best(qemu_runs, "answer")) if q else "-"),
        ("new process from the snapshot: restore", ms(best(chrono_runs, "from_restore")) +
         " (`run --from` note)", "-"),
        ("new process: start to `echo ready-3` answered",
         f"{ms(best(chrono_runs, 'from_answer'))} warm, {ms(best(chrono_runs, 'from_answer_cold'))} "
         f"cold store (`chrono --version` alone: {ms(best(chrono_runs, 'cli_startup'))})",
         ms(best(qemu_runs, "from_answer")) + " (-loadvm booted)" if q else "-"),
        ("store / qcow2 file at the end", mib(c["store_file"]), mib(q["qcow2_file"]) if q else "-"),
    ]
    width = max(len(r[0]) for r in rows)
    cw = max(len(r[1]) for r in rows)
    version = ""
    if with_qemu:
        banner = subprocess.run(["qemu-system-riscv64", "--version"], capture_output=True, text=True)
        version = " ".join(banner.stdout.split()[3:4])
    qemu_header = f"QEMU {version}" if with_qemu else f"QEMU: not measured, {no_qemu_reason}"
    print(f"\n{'':{width}}  {'chrono':{cw}}  {qemu_header}")
    for name, a, b in rows:
        print(f"{name:{width}}  {a:{cw}}  {b}")
    if q and best(qemu_runs, "answer") > 1:
        print("\nnote: after `loadvm` on a running QEMU 7.2 the guest echoes typed input at once but "
              "runs the command only seconds later (its timer waits stall: the Sstc timer does not "
              "seem to be re-armed by loadvm); with -loadvm at start-up it answers at once.")
    if q:
        print(f"\nratios chrono/QEMU: savevm {best(chrono_runs, 'save') / best(qemu_runs, 'save'):.2f}, "
              f"incremental savevm {best(chrono_runs, 'incr') / best(qemu_runs, 'incr'):.2f}, "
              f"idle savevm {best(chrono_runs, 'idle') / best(qemu_runs, 'idle'):.2f}, "
              f"loadvm {best(chrono_runs, 'load') / best(qemu_runs, 'load'):.3f}, "
              f"bytes (first) {c['save_new'] / max(1, q['save_file']):.2f}, "
              f"bytes (incremental) {c['incr_new'] / max(1, q['incr_file']):.3f}, "
              f"bytes (idle) {c['idle_new'] / max(1, q['idle_file']):.4f}")


if __name__ == "__main__":
    main()
