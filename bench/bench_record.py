#!/usr/bin/env python3
"""Recording: what it costs and what it writes, on chrono and on QEMU, in one run.

The workload: the Debian guest (`chrono guest fetch debian`) boots to its
shell marker, runs a few typed commands and powers off.

chrono runs it in-process, unpaced, twice: plainly (Session on the machine)
and recorded (Session on the recorder, keyframes at the default interval),
with the same RTC epoch, disk and entropy bytes.  Reported: wall time of each and the
overhead; the log's bytes per 1,000 instructions (the boot is almost all
of the session); keyframes; the store's size; the bundle's size (when
`chrono export` exists); and `chrono replay`'s time and speed.

QEMU runs the same guest (same OpenSBI, kernel, initrd, command line, RAM,
a copy of the disk) plainly and with `-icount shift=auto,rr=record` plus
blkreplay on the disk, typed commands after the shell marker; then
rr=replay of that log.  Reported: boot and command times, the replay time,
the log size, and its bytes per 1,000 of chrono's instruction count for the
same workload (QEMU does not print its own count).

    python bench/bench_record.py [--cache DIR] [--no-qemu]
"""
from __future__ import annotations

import argparse
import random
import subprocess
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from debian_guest import QemuDebian, copy_disk, frame, guest_files, marker  # noqa: E402

from chrono.core.console import Console  # noqa: E402
from chrono.core.launch import launch  # noqa: E402
from chrono.core.session import Session  # noqa: E402
from chrono.store import Store  # noqa: E402
from chrono.store.capture import Snapshots  # noqa: E402
from chrono.replay.recorder import Recorder  # noqa: E402
from chrono.replay.replay import Replayer  # noqa: E402

EPOCH = 1_790_000_000 * 10**9
REPLAY_TIMEOUT = 300              # seconds QEMU's replay gets to reach the poweroff
COMMANDS = ["echo hi > /mnt/x; sync; ls /mnt", "cat /proc/cpuinfo | head -5",
            "ls /bin | wc -l", "echo typed-$((6*7))"]
LEAD = b"\n" * 4                  # busybox's shell start-up discards a few early bytes


def script() -> bytes:
    return LEAD + b"".join(frame(i, c)[0] for i, c in enumerate(COMMANDS, 1)) + b"poweroff\n"


def chrono_session(spec, folder: Path, recorded: bool):
    """(seconds, instructions, recorder or None) for the workload on chrono."""
    guest = launch(spec)
    (folder / "script").write_bytes(script())
    stdin = open(folder / "script", "rb")
    out = open(folder / ("recorded.out" if recorded else "plain.out"), "wb")
    console = Console(stdin=stdin, stdout=out)
    entropy = random.Random(7).randbytes      # the same "host randomness" in both runs
    t0 = time.perf_counter()
    recorder = None
    if recorded:
        store = Store.open(folder / "store", create=True)
        recorder = Recorder(Snapshots(store, guest), "bench", reboot=guest.reboot)
        recorder.start()
        Session(recorder.proxy, reboot=recorder.reboot, entropy=entropy).run(console, paced=False)
        recorder.finish("poweroff")
        recorder.snapshots.close()
        store.close()
    else:
        Session(guest.machine, reboot=guest.reboot, entropy=entropy).run(console, paced=False)
    seconds = time.perf_counter() - t0
    out.close()
    stdin.close()
    return seconds, guest.machine.steps, recorder


def qemu_session(spec, folder: Path, ready: str, rr: str | None) -> dict:
    disk = copy_disk(spec, folder)
    extra, drives = [], None
    if rr is not None:
        extra = ["-icount", f"shift=auto,rr={rr},rrfile={folder / 'qemu-rr.bin'}"]
        drives = ["-drive", f"file={disk},format=raw,if=none,id=img-direct",
                  "-drive", "driver=blkreplay,if=none,image=img-direct,id=img-blkreplay",
                  "-device", "virtio-blk-device,drive=img-blkreplay"]
    q = QemuDebian(spec, disk, extra=extra, drives=drives)
    try:
        if rr == "replay":          # input comes from the log: just wait for poweroff
            try:
                q.proc.wait(timeout=REPLAY_TIMEOUT)
            except subprocess.TimeoutExpired:
                return {"total": None}
            return {"total": time.perf_counter() - q.started}
        q.expect(ready, timeout=900)
        boot = time.perf_counter() - q.started
        q.type(LEAD)
        for i, command in enumerate(COMMANDS, 1):
            q.run_command(i, command, timeout=600)
        commands = time.perf_counter() - q.started - boot
        q.type(b"poweroff\n")
        q.proc.wait(timeout=600)
        return {"boot": boot, "commands": commands, "total": time.perf_counter() - q.started}
    finally:
        q.close()
        disk.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    ap.add_argument("--no-qemu", action="store_true", help="measure chrono only")
    args = ap.parse_args()
    spec = replace(guest_files(args.cache), rtc_epoch_ns=EPOCH)
    ready = marker(args.cache)

    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        folder = Path(tmp)
        plain, steps, _ = chrono_session(spec, folder, recorded=False)
        print(f"chrono plain:    {plain:.2f} s, {steps:,} instructions", flush=True)
        recorded, rsteps, recorder = chrono_session(spec, folder, recorded=True)
        m = recorder.manifest
        print(f"chrono recorded: {recorded:.2f} s, {rsteps:,} instructions; overhead "
              f"{(recorded / plain - 1) * 100:+.1f}%", flush=True)
        same = (folder / "plain.out").read_bytes() == (folder / "recorded.out").read_bytes()
        print(f"  console output {'identical' if same else 'DIFFERS'} between the two runs")
        with Store.open(folder / "store") as store:
            print(f"  log: {m.log_bytes:,} bytes, {m.events} events in {m.chunks} chunks: "
                  f"{m.log_bytes / m.length * 1000:.4f} bytes per 1,000 instructions")
            print(f"  inputs: {m.inputs}; keyframes: {len(m.keyframes)} "
                  f"(every {m.keyframe_interval:,}); store file {store.disk_bytes() / 2**20:.1f} MiB")
            _bundle(store, folder)
            t0 = time.perf_counter()
            replayer = Replayer(store, "bench")
            report = replayer.replay()
            replayer.close()
            seconds = time.perf_counter() - t0
            print(f"chrono replay:   {seconds:.2f} s ({report.instructions / seconds / 1e6:.0f} MIPS), "
                  f"{report.keyframes} keyframes and {report.digests} digests verified, output "
                  f"{'identical' if report.output_matches else 'DIFFERENT'}", flush=True)

        if args.no_qemu or shutil.which("qemu-system-riscv64") is None:
            return
        q_plain = qemu_session(spec, folder, ready, None)
        print(f"QEMU plain:      boot {q_plain['boot']:.2f} s, commands {q_plain['commands']:.2f} s, "
              f"total {q_plain['total']:.2f} s", flush=True)
        q_rec = qemu_session(spec, folder, ready, "record")
        log = (folder / "qemu-rr.bin").stat().st_size
        print(f"QEMU recorded:   boot {q_rec['boot']:.2f} s, commands {q_rec['commands']:.2f} s, "
              f"total {q_rec['total']:.2f} s; overhead {(q_rec['total'] / q_plain['total'] - 1) * 100:+.1f}%; "
              f"log {log:,} bytes ({log / steps * 1000:.4f} per 1,000 of chrono's instructions)",
              flush=True)
        q_rep = qemu_session(spec, folder, ready, "replay")
        if q_rep["total"] is None:
            print(f"QEMU replay:     did not reach the poweroff within {REPLAY_TIMEOUT} s")
            print(f"ratio chrono/QEMU: recorded session {recorded / q_rec['total']:.2f}")
            return
        print(f"QEMU replay:     {q_rep['total']:.2f} s")
        print(f"ratios chrono/QEMU: recorded session {recorded / q_rec['total']:.2f}, "
              f"replay {seconds / q_rep['total']:.2f}")


def _bundle(store: Store, folder: Path) -> None:
    try:
        from chrono.replay.bundle import export_bundle
    except ImportError:
        print("  bundle: `chrono export` is not available in this build")
        return
    path = folder / "bench.chrono"
    export_bundle(store, "bench", path)
    print(f"  bundle: {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
