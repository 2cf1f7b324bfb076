#!/usr/bin/env python3
"""Time travel on a long recording: reverse steps, reverse-continue, last-write.

The recording: the Debian guest (`chrono guest fetch debian`) booting and
running a few commands, recorded in-process (about 3.5 billion instructions,
keyframes every 2^30).  Then, through the timeline API that `chrono debug`
serves to gdb (the gdb round trip adds well under a millisecond):

- reverse-stepi near the start, in the middle and near the end: the first
  step back into a region (it restores a keyframe and replays up to one
  keyframe interval) reported on its own, then p50/p95 of 30 more;
- reverse-continue from the end to a breakpoint on an instruction that last
  ran about a billion instructions earlier (module loading);
- last-write queries: the first one builds the write index (one replay),
  later ones, in a fresh timeline as a new process would, use it.

Then, in the same run, QEMU's reverse debugging on the same workload: QEMU
records it (`-icount shift=auto,rr=record,rrsnapshot=init`, the disk as a
qcow2 overlay of a copy through blkreplay, the same typed commands), then
replays it under gdb-multiarch (`rr=replay`, gdbstub, stopped at the start).
Timed in gdb: reverse-stepi just after the snapshot, and at the start, middle
and end of QEMU's own instruction count (reached with `monitor replay_break`
and `continue`), the first step apart, then p50/p95 of more if they come
quickly.  Each region is a fresh QEMU and gdb; a reverse step that does not
finish within --qemu-timeout seconds is reported as such and its QEMU killed.
(QEMU's instruction count for the workload differs from chrono's: different
idle handling; both are printed.)

    python bench/bench_timetravel.py [--cache DIR] [--steps 30] [--no-qemu]
                                     [--qemu-timeout 120]
"""
from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_record import COMMANDS, EPOCH, LEAD, script  # noqa: E402
from debian_guest import QemuDebian, frame, guest_files, marker  # noqa: E402

from chrono.core.console import Console  # noqa: E402
from chrono.core.launch import launch  # noqa: E402
from chrono.core.session import Session  # noqa: E402
from chrono.store import Store  # noqa: E402
from chrono.store.capture import Snapshots  # noqa: E402
from chrono.replay import writes  # noqa: E402
from chrono.replay.recorder import Recorder  # noqa: E402
from chrono.replay.timeline import Timeline  # noqa: E402


def record(spec, folder: Path) -> None:
    import random
    guest = launch(spec)
    (folder / "script").write_bytes(script())
    with open(folder / "script", "rb") as stdin, open(folder / "out", "wb") as out:
        store = Store.open(folder / "store", create=True)
        recorder = Recorder(Snapshots(store, guest), "bench", reboot=guest.reboot)
        recorder.start()
        Session(recorder.proxy, reboot=recorder.reboot,
                entropy=random.Random(7).randbytes).run(Console(stdin=stdin, stdout=out), paced=False)
        recorder.finish("poweroff")
        recorder.snapshots.close()
        store.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def reverse_steps(t: Timeline, where: int, count: int) -> tuple[float, list[float], float]:
    """(first step back after arriving, the next `count`, the seek that arrived)."""
    t0 = time.perf_counter()
    t.seek(where)
    arrive = time.perf_counter() - t0
    times = []
    for _ in range(count + 1):
        t0 = time.perf_counter()
        t.step_back()
        times.append(time.perf_counter() - t0)
    return times[0], times[1:], arrive


# ---- QEMU's reverse debugging ------------------------------------------------------
GDB_SCRIPT = Path(__file__).resolve().parent / "qemu_reverse_gdb.py"
QEMU_BUDGET = 30.0          # seconds for the further reverse steps of a region, after the first


def qemu_drives(overlay: Path) -> list[str]:
    return ["-drive", f"file={overlay},if=none,id=img-direct",
            "-drive", "driver=blkreplay,if=none,image=img-direct,id=img-blkreplay",
            "-device", "virtio-blk-device,drive=img-blkreplay"]


def qemu_record(spec, folder: Path, ready: str) -> dict:
    """Record the workload on QEMU with a snapshot at the start; the files and
    QEMU's instruction count before `poweroff` is typed."""
    raw = folder / "qemu-disk.raw"
    shutil.copyfile(spec.disk, raw)
    overlay = folder / "qemu-disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(raw), "-F", "raw",
                    str(overlay)], check=True, timeout=60)
    rrfile = folder / "qemu-rr.bin"
    extra = ["-icount", f"shift=auto,rr=record,rrfile={rrfile},rrsnapshot=init"]
    q = QemuDebian(spec, overlay, monitor=folder / "qemu-monitor.sock", extra=extra,
                   drives=qemu_drives(overlay))
    try:
        q.expect(ready, timeout=300)
        slowly(q, LEAD)
        for i, command in enumerate(COMMANDS, 1):
            data, end = frame(i, command)
            start = len(q.text())
            slowly(q, data)
            q.expect(end, start, timeout=120)
        found = re.search(r"instruction count = (\d+)", q.monitor("info replay", timeout=60))
        before_poweroff = int(found.group(1)) if found else None
        q.type(b"poweroff\n")
        q.proc.wait(timeout=600)
        seconds = time.perf_counter() - q.started
    finally:
        q.close()
    return {"overlay": overlay, "rrfile": rrfile, "seconds": seconds,
            "before_poweroff": before_poweroff, "log": rrfile.stat().st_size}


def slowly(q: QemuDebian, data: bytes) -> None:
    """Type a byte at a time, each after the previous one's echo: QEMU in record
    mode overruns the guest's UART otherwise ("ttyS0: input overrun")."""
    for byte in data:
        with q._arrived:
            before = len(q.output)
        q.type(bytes([byte]))
        deadline = time.monotonic() + 2
        with q._arrived:
            while len(q.output) == before and time.monotonic() < deadline:
                q._arrived.wait(0.1)
        time.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_region(spec, rec: dict, target: int, steps: int, timeout: float,
                snapsteps: int = 0) -> dict:
    """Replay QEMU's recording under gdb, run to icount `target` (0: stay at
    the start) and time reverse-stepi there.  Kills QEMU and gdb on the way out."""
    port = free_port()
    extra = ["-icount", f"shift=auto,rr=replay,rrfile={rec['rrfile']},rrsnapshot=init",
             "-gdb", f"tcp:127.0.0.1:{port}", "-S"]
    q = QemuDebian(spec, rec["overlay"], extra=extra, drives=qemu_drives(rec["overlay"]))
    env = dict(os.environ, QRR_PORT=str(port), QRR_TARGET=str(target), QRR_STEPS=str(steps),
               QRR_TIMEOUT=str(timeout), QRR_ARRIVE=str(max(600.0, 4 * timeout)),
               QRR_BUDGET=str(QEMU_BUDGET), QRR_SNAPSTEPS=str(snapsteps))
    gdb = subprocess.Popen(["gdb-multiarch", "-nx", "-batch", "-x", str(GDB_SCRIPT)], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()

    def read():
        for line in gdb.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    out = {"snap": [], "steps": [], "arrived": None, "at": None, "timeout": None,
           "error": None}
    wait, what, tail = 60.0, "connect", []
    try:
        while True:
            try:
                line = lines.get(timeout=wait)
            except queue.Empty:
                out["timeout"] = (what, wait)
                break
            if line is None:
                out["error"] = "gdb exited: " + " | ".join(tail[-5:])
                break
            if not line.startswith("@"):
                tail.append(line)
                continue
            words = line[1:].split()
            if words[0] == "W":
                wait, what = float(words[1]), " ".join(words[2:])
                continue
            kind = words[1]
            if kind == "done":
                break
            if kind == "error":
                out["error"] = " ".join(words[2:])
                break
            if kind == "snapstep":
                out["snap"].append(float(words[2]))
            elif kind == "arrived":
                out["arrived"], out["at"] = float(words[2]), int(words[3])
            elif kind == "step":
                out["steps"].append(float(words[2]))
                if out["at"] is None:
                    out["at"] = int(words[3]) + 1
    finally:
        if gdb.poll() is None:
            gdb.kill()
        gdb.wait()
        q.close()
    return out


def step_line(name: str, where: str, first: float, rest: list[float], arrive: str) -> str:
    line = f"reverse-stepi {name} ({where}): first step back {ms(first)} ({arrive})"
    if len(rest) >= 2:
        q = statistics.quantiles(rest, n=20)
        line += (f", then p50 {ms(statistics.median(rest))}, p95 {ms(q[18])}, max {ms(max(rest))}"
                 f" over {len(rest)}")
    elif rest:
        line += f", then one more: {ms(rest[0])}"
    return line


def qemu_part(spec, folder: Path, ready: str, args, chrono: dict) -> None:
    missing = [t for t in ("qemu-system-riscv64", "qemu-img", "gdb-multiarch") if shutil.which(t) is None]
    if missing:
        print(f"QEMU: skipped ({', '.join(missing)} not found)")
        return
    try:
        rec = qemu_record(spec, folder, ready)
    except Exception as e:  # noqa: BLE001 - one line, and chrono's figures stand
        print(f"QEMU: the recording failed: {str(e)[-600:]}")
        return
    total = rec["before_poweroff"]
    print(f"QEMU recorded (rr=record, rrsnapshot=init) in {rec['seconds']:.1f} s; log "
          f"{rec['log']:,} bytes; {total:,} instructions (QEMU's icount) before `poweroff` "
          f"is typed", flush=True)
    regions = [("start", 1_000_000), ("middle", total // 2), ("end", total - 1_000)]
    for n, (name, target) in enumerate(regions):
        out = qemu_region(spec, rec, target, args.steps, args.qemu_timeout,
                          snapsteps=args.steps + 5 if n == 0 else 0)
        if out["snap"]:
            print("QEMU " + step_line("next to its snapshot", f"instruction {args.steps + 5}",
                                       out["snap"][0], out["snap"][1:], "it loads the snapshot"),
                  flush=True)
        where = f"instruction {target:,}"
        if out["steps"]:
            print("QEMU " + step_line(f"at the {name}", where, out["steps"][0], out["steps"][1:],
                                       f"after replay_break + continue to it in {out['arrived']:.1f} s"),
                  flush=True)
            if name in chrono:
                c_first, c_rest = chrono[name]
                ratio = f"ratio QEMU/chrono at the {name}: first step {out['steps'][0] / c_first:.0f}x"
                if len(out["steps"]) > 2:
                    ratio += (f", p50 {statistics.median(out['steps'][1:]) / statistics.median(c_rest):.0f}x")
                print(ratio, flush=True)
        if out["timeout"] is not None:
            what, wait = out["timeout"]
            reached = (f"after replay_break + continue to it in {out['arrived']:.1f} s"
                       if out["arrived"] is not None else "")
            print(f"QEMU {what} at the {name} ({where}): did not finish within {wait:.0f} s "
                  f"{reached}".rstrip() + (f"; {len(out['steps'])} steps had" if out["steps"] else ""),
                  flush=True)
        if out["error"] is not None:
            print(f"QEMU at the {name} ({where}): {out['error']}", flush=True)
    for f in (rec["overlay"], rec["rrfile"], folder / "qemu-disk.raw"):
        f.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    ap.add_argument("--steps", type=int, default=30, help="reverse steps per region")
    ap.add_argument("--no-qemu", action="store_true", help="measure chrono only")
    ap.add_argument("--qemu-timeout", type=float, default=120, metavar="S",
                    help="seconds a QEMU reverse-stepi gets before it is called unfinished")
    args = ap.parse_args()
    spec = replace(guest_files(args.cache), rtc_epoch_ns=EPOCH)

    with tempfile.TemporaryDirectory(prefix="bench-timetravel-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        record(spec, folder)
        print(f"recorded in {time.perf_counter() - t0:.1f} s", flush=True)
        store = Store.open(folder / "store")
        t = Timeline(store, "bench")
        length = t.end - t.start
        print(f"recording: {length:,} instructions, {len(t.manifest.keyframes)} keyframes "
              f"(every {t.manifest.keyframe_interval:,})", flush=True)

        chrono = {}
        for name, where in (("start", t.start + 1_000_000), ("middle", t.start + length // 2),
                            ("end", t.end - 1_000)):
            first, rest, arrive = reverse_steps(t, where, args.steps)
            chrono[name] = (first, rest)
            q = statistics.quantiles(rest, n=20)
            print(f"reverse-stepi at the {name} (instruction {where:,}): first step back "
                  f"{ms(first)} (after a seek there of {ms(arrive)}), then p50 "
                  f"{ms(statistics.median(rest))}, p95 {ms(q[18])}, max {ms(max(rest))}", flush=True)

        # Breakpoints on the instruction running a billion instructions before the
        # end, and on one of early boot: reverse-continue lands on their last run.
        for label, where in (("a billion instructions before the end", t.end - 1_000_000_000),
                             ("early boot (instruction 500,000,000)", t.start + 500_000_000)):
            t.seek(where)
            pc = t.pc
            t.seek(t.end)
            t.add_breakpoint(pc)
            t0 = time.perf_counter()
            halt = t.reverse_cont()
            took = time.perf_counter() - t0
            t.remove_breakpoint(pc)
            print(f"reverse-continue from the end to a breakpoint on the pc at {label} "
                  f"({pc:#x}): {took:.2f} s, landed {t.end - halt.position:,} instructions "
                  f"back ({halt.reason})", flush=True)

        # last-write: the index first, then queries as a new process would make them.
        t.seek(t.end)
        sp_end = t.machine.reg(2)
        t.seek(t.start + length // 2)
        sp_mid = t.machine.reg(2)
        t0 = time.perf_counter()
        hit = writes.last_write(t, sp_end, 8)
        print(f"last-write (first query, builds the index): {time.perf_counter() - t0:.2f} s; "
              f"{length:,} instructions", flush=True)
        t.close()
        for label, address, before in (("sp at the end", sp_end, None),
                                       ("sp in the middle", sp_mid, t.start + length // 2),
                                       ("sp in the middle, from the end", sp_mid, None)):
            fresh = Timeline(store, "bench")
            t0 = time.perf_counter()
            hit = writes.last_write(fresh, address, 8, before)
            took = time.perf_counter() - t0
            back = (before or fresh.end) - hit.position if hit else None
            print(f"last-write of {label}: {ms(took)} (answer {back:,} instructions before the "
                  f"query point)" if hit else f"last-write of {label}: {ms(took)} (nothing)",
                  flush=True)
            fresh.close()
        store.close()
        if not args.no_qemu:
            qemu_part(spec, folder, marker(args.cache), args, chrono)


if __name__ == "__main__":
    main()
