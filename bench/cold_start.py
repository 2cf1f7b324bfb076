"""Cold start, measured as a user meets it: whole processes, from exec to the answer.

Shared by bench_cold_start.py and bench_snapshots.py.

- `chrono --version`: interpreter start, imports, click, exit.
- `chrono run --from NAME` with `echo ready-N` typed: from exec until the
  restored guest's answer is on the pipe ("warm": the store file in the page
  cache, as after a recent run; "cold": the store's files evicted from it
  first with POSIX_FADV_DONTNEED, as after a reboot or a while of other work;
  only the store is evicted, not Python's or chrono's own files); and, where
  the machine lets us (root, /proc/sys/vm/drop_caches writable), "rebooted":
  every file cache dropped first, Python's and its libraries' included, as
  right after a reboot.  The first
  run (not counted) writes the snapshot's boot set, as a user's first fast
  boot does (chrono.store.bootset).

chrono is started exactly as its console script starts it (`from chrono.cli
import main; main()`), with the interpreter running this benchmark: so it
measures the chrono that this interpreter imports (a checkout on PYTHONPATH,
or the installed one), and the interpreter's own start-up is measured beside
it (`python -c pass`).  Or give a command (an installed console script).  The children write bytecode caches as Python normally
does (PYTHONDONTWRITEBYTECODE is dropped for them, and a first run warms them).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CHRONO = [sys.executable, "-P", "-c",
          "import sys; from chrono.cli import main; sys.argv[0] = 'chrono'; sys.exit(main())"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass
class Times:
    """Wall-clock milliseconds of repeated runs."""

    ms: list[float]

    @property
    def best(self) -> float:
        return min(self.ms)

    @property
    def median(self) -> float:
        return sorted(self.ms)[len(self.ms) // 2]

    def __str__(self) -> str:
        return f"{self.best:.1f} ms (median {self.median:.1f}, {len(self.ms)} runs)"


def process_times(command: list[str], runs: int, rebooted: bool = False) -> Times:
    """Wall time of `command` from exec to exit, `runs` times (after one warm-up;
    rebooted: every file cache dropped before each)."""
    env = child_env()
    subprocess.run(command, env=env, capture_output=True, check=True)
    ms = []
    for _ in range(runs):
        if rebooted:
            drop_all_caches()
        t = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
        ms.append((time.perf_counter() - t) * 1000)
    return Times(ms)


def python_start(runs: int, code: str = "pass", rebooted: bool = False) -> Times:
    """The interpreter alone (`pass`), or with what it imports (`import click`)."""
    return process_times([sys.executable, "-c", code], runs, rebooted)


def cli_start(runs: int, option: str = "--version", command: list[str] = CHRONO) -> Times:
    return process_times(command + [option], runs)


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def drop_all_caches() -> None:
    """Write back, then drop every clean page of every file (needs root)."""
    os.sync()
    DROP_CACHES.write_text("3\n")


def evict(store: Path) -> None:
    """Drop the store's files (data.mdb, packs, boot sets) from the page cache
    (their pages are clean: nothing is lost)."""
    for path in [store / "data.mdb", *sorted((store / "packs").glob("*.pack")),
                 *sorted((store / "bootsets").glob("*"))]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@dataclass
class FastBoot:
    answer: Times           # exec -> `ready-N` on the pipe
    restore: Times          # the "restored NAME in N ms" note of each run


def fast_boot(store: Path, name: str, runs: int, cold: bool, n: int = 3,
              command: list[str] = CHRONO, rebooted: bool = False) -> FastBoot:
    """`chrono run --from name` with `echo ready-$((n))` typed at once: from exec
    until the guest's answer arrives, `runs` times (after one warm-up run);
    cold: the store evicted first; rebooted: every file cache dropped first."""
    answers, restores = [], []
    for i in range(runs + 1):
        if rebooted:
            drop_all_caches()
        elif cold:
            evict(store)
        ms, restored = _one_fast_boot(store, name, n, command)
        if i:
            answers.append(ms)
            restores.append(restored)
    return FastBoot(Times(answers), Times(restores))


def _one_fast_boot(store: Path, name: str, n: int, command: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(command + ["run", "--from", name, "--store", str(store)],
                            env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    got = bytearray()
    try:
        proc.stdin.write(f"echo ready-$(({n}))\n".encode())     # the echo of the line cannot match
        proc.stdin.flush()
        want = re.compile(rb"\nready-%d\r?\n" % n)
        while not want.search(got):
            chunk = proc.stdout.read1(4096)
            if not chunk:
                raise RuntimeError("chrono run --from ended without answering:\n"
                                   + got.decode(errors="replace")[-1500:]
                                   + proc.stderr.read().decode(errors="replace"))
            got += chunk
        answered = (time.perf_counter() - start) * 1000
        proc.stdin.write(b"poweroff\n")
        proc.stdin.close()
        proc.wait(timeout=120)
        note = re.search(r"restored \S+ in ([0-9.]+) ms", proc.stderr.read().decode())
        return answered, float(note.group(1)) if note else float("nan")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def import_profile(option: str = "--version", top: int = 12) -> list[tuple[int, int, str]]:
    """`python -X importtime` of `chrono OPTION`: the top-level imports that cost
    most, as (cumulative us, self us, module), dearest first (best of 3 runs each)."""
    best: dict[str, tuple[int, int]] = {}
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-X", "importtime"] + CHRONO[1:] + [option],
                              env=child_env(), capture_output=True, text=True, check=True)
        for line in proc.stderr.splitlines():
            found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\S.*)$", line)
            if found:                   # top level only: nested names start with spaces
                own, cumulative, module = int(found[1]), int(found[2]), found[3]
                if module not in best or cumulative < best[module][0]:
                    best[module] = (cumulative, own)
    rows = sorted(((c, s, m) for m, (c, s) in best.items()), reverse=True)
    return rows[:top]
