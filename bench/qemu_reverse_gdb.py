"""Runs inside gdb-multiarch (`gdb -batch -x qemu_reverse_gdb.py`), driven by
bench_timetravel.py: connects to QEMU's gdbstub (a replay, stopped at its
start), optionally runs to an instruction count with `replay_break`, then
times reverse-stepi.  Every operation is announced as `@W <timeout>` and its
result printed as `@R <key> <value>`; the driver kills gdb and QEMU when an
announced timeout passes.

Environment: QRR_PORT, QRR_TARGET (icount to run to, 0 = stay at the start),
QRR_STEPS (reverse steps after the first), QRR_TIMEOUT (seconds per reverse
step), QRR_ARRIVE (seconds to reach the target), QRR_BUDGET (seconds for the
further steps), QRR_SNAPSTEPS (forward stepi before reverse-stepping near the
snapshot; 0 = skip).
"""
import os
import re
import time

import gdb  # noqa: F401 - provided by gdb


def say(*words):
    print("@" + " ".join(str(w) for w in words), flush=True)


def timed(command):
    t0 = time.perf_counter()
    out = gdb.execute(command, to_string=True)
    return time.perf_counter() - t0, out


def icount():
    out = gdb.execute("monitor info replay", to_string=True)
    found = re.search(r"instruction count = (\d+)", out)
    return int(found.group(1)) if found else -1


def main():
    env = os.environ
    port, target = int(env["QRR_PORT"]), int(env["QRR_TARGET"])
    steps, step_timeout = int(env["QRR_STEPS"]), float(env["QRR_TIMEOUT"])
    budget, snapsteps = float(env["QRR_BUDGET"]), int(env["QRR_SNAPSTEPS"])
    for setting in ("set pagination off", "set confirm off", "set architecture riscv:rv64",
                    "set remotetimeout 100000"):
        gdb.execute(setting, to_string=True)
    say("W", 60, "connect")
    deadline = time.monotonic() + 30
    while True:                 # QEMU may not be listening yet
        try:
            gdb.execute(f"target remote 127.0.0.1:{port}", to_string=True)
            break
        except gdb.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    say("R", "connected", icount())
    if snapsteps:
        say("W", 60, "stepi")
        for _ in range(snapsteps):
            gdb.execute("stepi", to_string=True)
        say("R", "snapstepped", icount())
        for i in range(steps + 1):
            say("W", step_timeout, "reverse-stepi")
            took, _ = timed("reverse-stepi")
            say("R", "snapstep", took, icount())
    if target:
        say("W", env["QRR_ARRIVE"], "replay_break + continue")
        gdb.execute(f"monitor replay_break {target}", to_string=True)
        took, _ = timed("continue")
        say("R", "arrived", took, icount())
    began = time.perf_counter()
    for i in range(steps + 1):
        if i and time.perf_counter() - began > budget:
            break
        say("W", step_timeout, "reverse-stepi")
        took, _ = timed("reverse-stepi")
        say("R", "step", took, icount())
    say("R", "done")


try:
    main()
except Exception as e:  # noqa: BLE001 - reported to the driver
    say("R", "error", str(e).replace("\n", " "))
