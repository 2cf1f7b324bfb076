#!/usr/bin/env python3
"""Store damager: damage copies of a real store and check every command copes.

    python3 tools/fuzz/store_damage.py --seed 1 --count 1000 --time-limit 3600

A reference store is made once with `chrono run` (three snapshots) and
`chrono record` (a recording).  Each case copies it, damages the copy (bit
flips, truncations at random and at page boundaries, zeroed pages, removed
or replaced files), and runs, each as its own process: `store verify`, `snap
list`, `run --from NAME --max-insns N` with piped input, and `store gc`.

A command's result is
  crash    a signal, an exit status >= 128, or a traceback: always a failure;
  refused  a non-zero exit with one "chrono: error:" line: fine;
  ok       success.
A case is
  crash    any command crashed;
  silent   verify said the store is sound but `run --from` did not reproduce
           the undamaged store's console output exactly: a failure;
  refused  verify refused the store (the others may do anything but crash);
  sound    verify said sound and the restored guest matched: fine.
The reference store is hashed before and after: it must never change.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHRONO = [sys.executable, "-P", "-m", "chrono.cli"]
SNAPSHOTS = ("s1", "s2", "s3")
RECORDING = "r1"
MAX_INSNS = 2_000_000
RUN_INPUT = b"cat a\nls\n"
PAGE = 4096
TIMEOUT = 60
_MAKE_SNAPSHOTS = (b"write a one\n\x01csavevm s1\n\x01cwrite b two\nsync\n\x01csavevm s2\n"
                   b"\x01cwrite c three\n\x01csavevm s3\n\x01cpoweroff\n")
_MAKE_RECORDING = b"write d four\nls\npoweroff\n"


def _env(store: Path) -> dict:
    # The chrono Python imports (installed, or a checkout on PYTHONPATH): `-P`
    # keeps the working directory's source tree out of it.
    env = dict(os.environ, CHRONO_STORE=str(store), COLUMNS="120")
    env.pop("CHRONO_SANITIZE", None)
    return env


def chrono(store: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([*CHRONO, *args], input=stdin, capture_output=True, env=_env(store),
                          cwd=store.parent, timeout=TIMEOUT)


def make_reference(store: Path) -> dict[str, bytes]:
    """Build the reference store; returns each snapshot's `run --from` output."""
    for args, stdin in ((("run",), _MAKE_SNAPSHOTS),
                        (("record", "--name", RECORDING), _MAKE_RECORDING)):
        done = chrono(store, *args, stdin=stdin)
        if done.returncode != 0:
            raise RuntimeError(f"making the reference store failed: {done.stderr.decode()}")
    expected = {}
    for name in SNAPSHOTS:
        outputs = {run_from(store, name).stdout for _ in range(2)}
        if len(outputs) != 1:
            raise RuntimeError(f"run --from {name} is not reproducible on the reference store")
        expected[name] = outputs.pop()
    return expected


def run_from(store: Path, name: str) -> subprocess.CompletedProcess:
    return chrono(store, "run", "--from", name, "--max-insns", str(MAX_INSNS), stdin=RUN_INPUT)


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


# ---- damage ------------------------------------------------------------------------------

def _flip_bits(path: Path, rng: random.Random, limit: int | None = None) -> str:
    data = bytearray(path.read_bytes())
    if not data:
        return "flip: empty file"
    end = min(len(data), limit) if limit else len(data)
    n = rng.choice((1, 1, 2, 4, 16))
    spots = []
    for _ in range(n):
        i = rng.randrange(end)
        data[i] ^= 1 << rng.randrange(8)
        spots.append(i)
    path.write_bytes(data)
    return f"flip {n} bits in {path.name} at {spots[:4]}"


def _zero_page(path: Path, rng: random.Random) -> str:
    pages = max(1, path.stat().st_size // PAGE)
    page = rng.choice((0, 1)) if rng.random() < 0.2 else rng.randrange(pages)
    with open(path, "r+b") as f:
        f.seek(page * PAGE)
        f.write(bytes(PAGE))
    return f"zero page {page} of {path.name}"


def _truncate(path: Path, rng: random.Random, at_page: bool) -> str:
    size = path.stat().st_size
    new = rng.randrange(size // PAGE + 1) * PAGE if at_page else rng.randrange(size + 1)
    os.truncate(path, new)
    return f"truncate {path.name} to {new} of {size}"


def damage(store: Path, rng: random.Random) -> str:
    """Damage the store copy at `store` one way; returns what was done."""
    data, lock = store / "data.mdb", store / "lock.mdb"
    kind = rng.choices(
        ["flip", "flip_header", "zero_page", "truncate", "truncate_page", "remove_data",
         "remove_lock", "damage_lock", "data_is_dir", "empty_data", "remove_all", "flip_twice"],
        weights=[30, 6, 20, 10, 12, 2, 3, 4, 2, 2, 1, 8])[0]
    if kind == "flip":
        return _flip_bits(data, rng)
    if kind == "flip_header":
        return _flip_bits(data, rng, limit=2 * PAGE)
    if kind == "flip_twice":
        return _flip_bits(data, rng) + "; " + _zero_page(data, rng)
    if kind == "zero_page":
        return _zero_page(data, rng)
    if kind in ("truncate", "truncate_page"):
        return _truncate(data, rng, at_page=kind == "truncate_page")
    if kind == "remove_data":
        data.unlink()
        return "remove data.mdb"
    if kind == "remove_lock":
        lock.unlink()
        return "remove lock.mdb"
    if kind == "damage_lock":
        return _flip_bits(lock, rng) if rng.random() < 0.5 else _truncate(lock, rng, False)
    if kind == "data_is_dir":
        data.unlink()
        data.mkdir()
        return "data.mdb replaced by a directory"
    if kind == "empty_data":
        os.truncate(data, 0)
        return "data.mdb emptied"
    for p in store.iterdir():
        p.unlink()
    return "store directory emptied"


# ---- classification ----------------------------------------------------------------------

def outcome(done: subprocess.CompletedProcess, success=(0,)) -> str:
    err = done.stderr.decode(errors="replace")
    if done.returncode < 0 or done.returncode >= 128 or "Traceback" in err:
        return "crash"
    if done.returncode in success:
        return "ok"
    errors = [line for line in err.splitlines() if line.startswith("chrono: error:")]
    return "refused" if len(errors) == 1 else "crash"


@dataclass
class Case:
    index: int
    what: str
    verdict: str
    commands: dict[str, str] = field(default_factory=dict)
    detail: str = ""


def run_case(reference: Path, expected: dict[str, bytes], workdir: Path, seed: int,
             index: int) -> Case:
    rng = random.Random(f"{seed}/{index}")
    store = workdir / f"case{index}" / "store"
    store.parent.mkdir(parents=True)
    try:
        shutil.copytree(reference, store)
        what = damage(store, rng)
        name = rng.choice(SNAPSHOTS)
        done = {"verify": chrono(store, "store", "verify"),
                "list": chrono(store, "snap", "list"),
                "run": run_from(store, name),
                "gc": chrono(store, "store", "gc")}
        results = {c: outcome(p, success=(0, 124) if c == "run" else (0,))
                   for c, p in done.items()}
        verify, restored = done["verify"], done["run"]
        crashed = [c for c, r in results.items() if r == "crash"]
        if crashed:
            first = done[crashed[0]]
            tail = first.stderr.decode(errors="replace")[-300:]
            return Case(index, what, "crash", results,
                        f"{crashed[0]} crashed (exit {first.returncode}) {tail}")
        if results["verify"] == "ok":
            if results["run"] != "ok" or restored.stdout != expected[name]:
                return Case(index, what, "silent", results,
                            f"verify said sound, run --from {name} gave {results['run']} "
                            f"with other output")
            return Case(index, what, "sound", results)
        return Case(index, what, "refused", results)
    except subprocess.TimeoutExpired as e:
        return Case(index, locals().get("what", "?"), "crash", {}, f"hung: {e.cmd[-3:]}")
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)


@dataclass
class Summary:
    cases: int = 0
    verdicts: Counter = field(default_factory=Counter)
    commands: Counter = field(default_factory=Counter)
    failures: list[Case] = field(default_factory=list)
    reference_changed: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.reference_changed

    def line(self) -> str:
        v = self.verdicts
        return (f"store_damage: {self.cases} damaged stores in {self.seconds:.0f} s: "
                f"{v['crash']} crashes, {v['silent']} silent, {v['refused']} refused, "
                f"{v['sound']} sound; reference store "
                f"{'CHANGED' if self.reference_changed else 'untouched'}")


def fuzz(seed: int, count: int, time_limit: float, workers: int = 2,
         workdir: Path | None = None, log=print) -> Summary:
    """Damage `count` copies (stopping after `time_limit` seconds); see the docstring."""
    start = time.monotonic()
    summary = Summary()
    with tempfile.TemporaryDirectory(prefix="store-damage-", dir=workdir) as tmp:
        tmp = Path(tmp)
        reference = tmp / "reference" / "store"
        reference.parent.mkdir()
        expected = make_reference(reference)
        before = tree_digest(reference)
        with ThreadPoolExecutor(workers) as pool:
            pending = set()
            index = 0

            def harvest(future):
                case = future.result()
                summary.cases += 1
                summary.verdicts[case.verdict] += 1
                for command, result in case.commands.items():
                    summary.commands[f"{command}:{result}"] += 1
                if case.verdict in ("crash", "silent"):
                    summary.failures.append(case)
                    log(f"case {case.index} {case.verdict.upper()}: {case.what}: {case.detail}")

            while index < count and time.monotonic() - start < time_limit:
                pending.add(pool.submit(run_case, reference, expected, tmp, seed, index))
                index += 1
                if len(pending) >= 2 * workers:     # keep the queue short: time-limit stops soon
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        harvest(future)
            for future in pending:
                harvest(future)
        summary.reference_changed = tree_digest(reference) != before
    summary.seconds = time.monotonic() - start
    log(summary.line())
    log("commands: " + ", ".join(f"{k} {n}" for k, n in sorted(summary.commands.items())))
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--time-limit", type=float, default=600.0, metavar="SECONDS")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    summary = fuzz(args.seed, args.count, args.time_limit, args.workers)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
