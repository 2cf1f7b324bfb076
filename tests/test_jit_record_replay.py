"""A recording made with the JIT replays with the interpreter (--no-jit), and
the reverse: every keyframe, digest and console byte matches, because the JIT
changes only how fast the same instructions run.  Through the real command
line, on the demo guest's scripted session (its bench is a CPU-bound loop)."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from chronocmd import CHRONO

SESSION = "write a hello\nsync\nbench 3\nls\ncat a\npoweroff\n"
MATCHED = re.compile(r"matched the recording: ([\d,]+) instructions, (\d+) keyframes")


def chrono(cwd, *args, script="", jit: str):
    env = dict(os.environ, CHRONO_JIT=jit)
    proc = subprocess.run(CHRONO + [str(a) for a in args], input=script.encode(), env=env,
                          capture_output=True, timeout=300, cwd=cwd)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), stderr


@pytest.mark.parametrize("record_args, replay_args", [
    ((), ("--no-jit",)),                    # recorded with the JIT, replayed interpreted
    (("--no-jit",), ()),                    # and the reverse
])
def test_recording_replays_exactly_on_the_other_path(tmp_path, record_args, replay_args):
    store = tmp_path / "store"
    rc, recorded, err = chrono(tmp_path, "record", "--store", store, "--name", "t",
                               "--keyframe-interval", 4_000_000, *record_args,
                               script=SESSION, jit="1")
    assert rc == 0, err
    assert "checksum" in recorded
    rc, replayed, err = chrono(tmp_path, "replay", "--store", store, "t", *replay_args, jit="1")
    assert rc == 0, err
    assert replayed == recorded
    match = MATCHED.search(err)
    assert match, err
    assert int(match[2]) >= 3, "too few keyframes compared to say much"


def test_no_jit_is_offered_where_guests_run():
    for command in ("run", "record", "replay", "debug"):
        out = subprocess.run(CHRONO + [command, "--help"], capture_output=True, text=True).stdout
        assert "--no-jit" in out, command


def test_a_bad_jit_threshold_is_one_clear_error(tmp_path):
    env = dict(os.environ, CHRONO_JIT_THRESHOLD="often")
    proc = subprocess.run(CHRONO + ["run", "--max-insns", "1000"], input="", env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "chrono: error: CHRONO_JIT_THRESHOLD must be a whole number of runs, not 'often'"]
