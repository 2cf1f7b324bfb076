"""Test helpers for recordings: run the CLI, read and tamper with a stored log."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from chrono.store import Store
from chrono.store.traces import read_trace
from chrono.replay.events import CONSOLE, Event, decode_events, encode_events, pack_chunk, unpack_chunk
from chrono.replay.events import chunk_base

from chronocmd import CHRONO
MON = "\x01c"               # Ctrl-A c: to the monitor, and back to the guest
DIVERGED = re.compile(r"matched the recording up to instruction (\d+), and at instruction (\d+) (.*)")


def chrono(cwd: Path, *args, script: str = "", timeout: float = 120):
    """`chrono ARGS` with `script` piped in; returns the CompletedProcess (text, CR LF -> LF)."""
    try:
        proc = subprocess.run(CHRONO + [str(a) for a in args], input=script.encode(),
                              capture_output=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`chrono {' '.join(map(str, args))}` did not finish within {timeout} s "
                    f"(stdout so far: {e.stdout!r:.500})")
    proc.stdout = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def record_demo(work: Path, name: str, script: str, keyframe_interval: int, *args) -> None:
    """`chrono record` the demo guest into work/store as `name` (it must succeed)."""
    proc = chrono(work, "record", "--store", work / "store", "--name", name,
                  "--keyframe-interval", keyframe_interval, *args, script=script)
    assert proc.returncode == 0, proc.stderr


def symbol(name: str) -> int:
    """The address of a symbol of the demo guest's ELF."""
    from chrono.core.launch import demo_guest_path
    out = subprocess.run(["riscv64-unknown-elf-nm", str(demo_guest_path())], capture_output=True,
                         text=True, check=True).stdout
    return next(int(line.split()[0], 16) for line in out.splitlines() if line.split()[-1] == name)


def alter_console_input(store_path: Path, name: str, old: bytes, new: bytes) -> int:
    """Replace `old` with `new` (same length) in the last console input event
    holding it, in the stored log of recording `name`; returns its position.

    The last one: a guest may throw early input away (Linux resets the UART
    FIFO as its driver starts) and chrono delivers it again, logged again."""
    assert len(old) == len(new)
    with Store(store_path) as store, store.writer() as w:
        manifest = read_trace(w, name)
        found = None
        for key, value in w.chunks(manifest.id_bytes):
            base, _ = chunk_base(key)
            events = decode_events(unpack_chunk(value), base)
            for i, e in enumerate(events):
                if e.kind == CONSOLE and old in e.data:
                    found = (key, base, events, i)
        assert found, f"no console input {old!r} in recording {name}"
        key, base, events, i = found
        e = events[i]
        events[i] = Event(e.position, CONSOLE, e.data.replace(old, new, 1))
        w.put_chunk(key, pack_chunk(encode_events(events, base)))
        return e.position


def trace_manifest(store_path: Path, name: str):
    with Store(store_path, readonly=True) as store, store.reader() as r:
        return read_trace(r, name)
