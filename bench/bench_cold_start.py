#!/usr/bin/env python3
"""Cold start: how long chrono takes to answer, as whole processes.

1. the floors: `python -c pass` (the interpreter alone) and `python -c
   "import click"` (with the CLI library, which every chrono command loads);
2. `chrono --version` and `chrono --help` (interpreter, imports, click);
3. fast boot: `chrono run --from booted`, with `echo ready-3` typed at once,
   from exec to the guest's answer on the pipe; with the store warm in the page
   cache, cold (its files evicted before each run), and, where this user may
   write /proc/sys/vm/drop_caches, with every file cache dropped (as after a
   reboot: Python's and chrono's own files are read from the disk too);
4. the top-level imports `chrono --version` pays for (`python -X importtime`).

The snapshot is the Debian guest (`chrono guest fetch debian`) booted to its
shell and saved in a temporary store, as bench_snapshots.py does; or give an
existing store and snapshot with --store/--snapshot.  Best of --runs runs each
(the median beside it).  The budgets of issue 13: --version <= 50 ms, fast
boot to the answer <= 100 ms, warm or cold alike.  There is no outside
reference to compare with here (bench_snapshots.py has QEMU's -loadvm).

    python bench/bench_cold_start.py [--runs 10] [--cache DIR] [--store DIR --snapshot NAME]
                                     [--command /path/to/venv/bin/chrono]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cold_start  # noqa: E402

VERSION_BUDGET_MS = 50
FAST_BOOT_BUDGET_MS = 100


def booted_store(folder: Path, cache: Path | None) -> Path:
    """The Debian guest booted to its prompt and saved as `booted` in folder/store."""
    from debian_guest import PROMPT, ChronoDebian, guest_files, marker

    from chrono.store.capture import Snapshots
    from chrono.store.store import Store

    g = ChronoDebian(guest_files(cache))
    g.expect(PROMPT, g.expect(marker(cache)))
    g.settle()
    path = folder / "store"
    with Store.open(path, create=True) as store:
        snapshots = Snapshots(store, g.guest)
        try:
            snapshots.save("booted")
        finally:
            snapshots.close()
    return path


def verdict(ms: float, budget: float) -> str:
    return f"within {budget} ms" if ms <= budget else f"OVER {budget} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of each measurement (best and median)")
    ap.add_argument("--cache", type=Path, metavar="DIR",
                    help="chrono cache root holding guests/debian (default: $XDG_CACHE_HOME/chrono)")
    ap.add_argument("--store", type=Path, metavar="DIR", help="an existing store (default: boot and save)")
    ap.add_argument("--snapshot", default="booted", metavar="NAME", help="the snapshot in --store")
    ap.add_argument("--command", metavar="PATH",
                    help="a chrono console script to measure (default: this interpreter's chrono, "
                         "started as the console script starts it)")
    args = ap.parse_args()
    command = [args.command] if args.command else cold_start.CHRONO

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        store = args.store or booted_store(Path(tmp), args.cache)
        floor = cold_start.python_start(args.runs)
        click_floor = cold_start.python_start(args.runs, "import click")
        version = cold_start.cli_start(args.runs, "--version", command)
        help_ = cold_start.cli_start(args.runs, "--help", command)
        warm = cold_start.fast_boot(store, args.snapshot, args.runs, cold=False, command=command)
        cold = cold_start.fast_boot(store, args.snapshot, args.runs, cold=True, command=command)
        rebooted = rebooted_click = None
        if cold_start.can_drop_caches():
            rebooted = cold_start.fast_boot(store, args.snapshot, args.runs, cold=True,
                                            command=command, rebooted=True)
            rebooted_click = cold_start.python_start(args.runs, "import click", rebooted=True)
        profile = cold_start.import_profile("--version")

    rows = [
        ("python -c pass (the floor)", str(floor), ""),
        ("python -c 'import click' (the CLI's floor)", str(click_floor), ""),
        ("chrono --version", str(version), verdict(version.best, VERSION_BUDGET_MS)),
        ("chrono --help", str(help_), ""),
        (f"run --from {args.snapshot}: start to answer, warm", str(warm.answer),
         f"{verdict(warm.answer.best, FAST_BOOT_BUDGET_MS)}; restore note {warm.restore.best:.1f} ms"),
        (f"run --from {args.snapshot}: start to answer, cold", str(cold.answer),
         f"{verdict(cold.answer.best, FAST_BOOT_BUDGET_MS)}; restore note {cold.restore.best:.1f} ms"),
    ]
    if rebooted is not None:
        rows.append((f"run --from {args.snapshot}: every file cache dropped", str(rebooted.answer),
                     f"as after a reboot: Python's own files too; restore note {rebooted.restore.best:.1f} ms"))
        rows.append(("python -c 'import click', every file cache dropped", str(rebooted_click),
                     "the floor of the row above"))
    width = max(len(r[0]) for r in rows)
    cw = max(len(r[1]) for r in rows)
    print(f"\n{'':{width}}  {'best':{cw}}")
    for name, value, note in rows:
        print(f"{name:{width}}  {value:{cw}}  {note}")
    print(f"\ncold / warm: {cold.answer.best / warm.answer.best:.2f}")
    if rebooted is None:
        print("every-cache-dropped case NOT measured: /proc/sys/vm/drop_caches is not writable here")
    print("\n`python -X importtime` of chrono --version, top-level imports (best of 3, us):")
    for cumulative, own, module in profile:
        print(f"  {cumulative:7d} cumulative {own:7d} self  {module}")


if __name__ == "__main__":
    main()
