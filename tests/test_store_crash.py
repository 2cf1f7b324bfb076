"""Crash safety: a process saving snapshots is SIGKILLed at random moments.

After every kill the store must open, verify clean, and hold every snapshot
whose commit the child reported (it prints an id only after the commit
returned), with all of its pages readable.
"""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chrono.store import Store
from chrono.store.verify import verify

TESTS = Path(__file__).parent
ROUNDS = 6
ID = re.compile(r"^[0-9a-f]{64}$")


def run_and_kill(path: Path, round_: int, delay: float, mode: str) -> list[str]:
    # No empty entry: it would put the working directory (a source tree) first.
    paths = [str(TESTS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    child = subprocess.Popen([sys.executable, str(TESTS / "store_crash_child.py"), str(path),
                              str(round_), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    # Start-up (imports, the store) takes a while and more on a busy machine:
    # the delay counts from the child's "saving" line, so every round kills
    # it while it saves, some before or during its first commit.
    first = child.stdout.readline()
    assert first == "saving\n", first + child.stderr.read()
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err     # still saving when it was killed
    return [line for line in out.split("\n")[:-1] if ID.match(line)]   # complete lines only


@pytest.mark.parametrize("mode", ["store", "guest", "packs"])
def test_sigkill_at_random_moments_never_loses_a_committed_snapshot(tmp_path, mode):
    """mode store: snapshots written straight into the store; guest: background
    savevms of a running guest, killed while a copy-on-write capture is read,
    hashed or committed; packs: the same with every capture's pages appended
    to a pack (killed mid-append, the bytes are cut off by the next writer)."""
    rng = random.Random(20240601)
    path = tmp_path / "store"
    reported: dict[str, str] = {}
    for round_ in range(ROUNDS):
        ids = run_and_kill(path, round_, rng.uniform(0.0, 0.5), mode)
        reported.update({f"r{round_}-{n}": sid for n, sid in enumerate(ids)})
        if not (path / "data.mdb").exists():
            continue
        with Store(path) as store:
            # verify reads every blob and checks every page reference of every snapshot
            report = verify(store)
            assert report.ok, report.problems[:5]
            if mode == "packs" and ids:
                assert any((path / "packs").glob("*.pack"))
            refs = store.refs()
            with store.reader() as r:
                for name, sid in reported.items():
                    assert refs[name] == sid
                    r.get_snapshot(sid)
                for sid in ids[-1:] + rng.sample(ids, min(3, len(ids))):
                    for _, key in r.get_snapshot(sid).ram.items(r):
                        r.get_blob(key)
    assert len(reported) > 2 * ROUNDS
