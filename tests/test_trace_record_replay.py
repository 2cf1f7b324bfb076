"""`chrono record` and `chrono replay` on the demo guest, through the real command line.

A scripted session is recorded, then replayed in a new process: the console
output must be the same bytes and every digest and keyframe must match.  A
replay whose log was altered must fail, naming a window that holds the change.
"""
from __future__ import annotations

import re
import time

import pytest

from chrono.store import Store, snapshot_diff
from chrono.replay.recorder import DIGEST_INTERVAL
from tracehelp import DIVERGED, MON, alter_console_input, chrono, trace_manifest
from chronocmd import CHRONO

SESSION = "write a hello\nsync\nbench 3\nls\ncat a\npoweroff\n"
KEYFRAMES = 4_000_000          # small, so a short session has several


def record(tmp_path, script=SESSION, *args, name="t"):
    proc = chrono(tmp_path, "record", "--store", tmp_path / "store", "--name", name,
                  "--keyframe-interval", KEYFRAMES, *args, script=script)
    assert proc.returncode == 0, proc.stderr
    assert f"recorded {name}:" in proc.stderr
    return proc


def replay(tmp_path, name="t", *args):
    return chrono(tmp_path, "replay", "--store", tmp_path / "store", name, *args)


def test_replay_writes_the_same_output_and_verifies_everything(tmp_path):
    recorded = record(tmp_path)
    assert "hello" in recorded.stdout and "checksum" in recorded.stdout
    replayed = replay(tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    m = trace_manifest(tmp_path / "store", "t")
    assert m.complete and m.outcome == "poweroff"
    assert len(m.keyframes) >= 5                    # 0, every 4M, and the end
    match = re.search(r"matched the recording: ([\d,]+) instructions, (\d+) keyframes and "
                      r"(\d+) digests verified, console output identical \(([\d,]+) bytes\)",
                      replayed.stderr)
    assert match, replayed.stderr
    assert int(match[1].replace(",", "")) == m.length
    assert int(match[2]) == len(m.keyframes) - 1    # all but the one it starts from
    assert int(match[3]) >= m.length // DIGEST_INTERVAL - len(m.keyframes)
    assert int(match[4].replace(",", "")) == m.output_bytes == len(recorded.stdout.replace("\n", "\r\n"))


def test_an_altered_input_is_reported_as_a_divergence_right_after_it(tmp_path):
    record(tmp_path)
    position = alter_console_input(tmp_path / "store", "t", b"hello", b"jello")
    replayed = replay(tmp_path)
    assert replayed.returncode == 9, replayed.stderr
    match = DIVERGED.search(replayed.stderr)
    assert match, replayed.stderr
    matched, differs = int(match[1]), int(match[2])
    # Narrowed to one digest interval, soon after the changed byte (the guest
    # may hold it in a buffer for a while before it changes anything checked).
    assert matched < differs <= matched + DIGEST_INTERVAL
    assert position < differs <= position + 16 * DIGEST_INTERVAL
    assert "console output" in match[3]
    assert "jello" in replayed.stdout              # it did replay the altered byte


def test_replay_to_a_position_leaves_a_snapshot_that_runs(tmp_path):
    record(tmp_path)
    m = trace_manifest(tmp_path / "store", "t")
    keyframe = m.keyframes[2]
    replayed = replay(tmp_path, "t", "--to", keyframe.position)
    assert replayed.returncode == 0, replayed.stderr
    name = f"t@{keyframe.position}"
    assert f"saved snapshot {name}" in replayed.stderr
    with Store(tmp_path / "store", readonly=True) as store, store.reader() as r:
        here, recorded = r.snapshot(name), r.get_snapshot(keyframe.snapshot)
        assert (here.steps, here.vclock) == (recorded.steps, recorded.vclock)
        d = snapshot_diff(r, here, recorded)
        assert not d.state and len(d.ram) == 0 and all(len(b) == 0 for b in d.disks)
    resumed = chrono(tmp_path, "run", "--store", tmp_path / "store", "--from", name,
                     script="cat a\npoweroff\n")
    assert resumed.returncode == 0, resumed.stderr
    assert "hello" in resumed.stdout


def test_replay_to_a_position_outside_the_recording_is_refused(tmp_path):
    record(tmp_path)
    m = trace_manifest(tmp_path / "store", "t")
    replayed = replay(tmp_path, "t", "--to", m.end_position + 1)
    assert replayed.returncode == 2
    assert "outside recording 't'" in replayed.stderr


def test_savevm_and_loadvm_while_recording_replay_exactly(tmp_path):
    script = (f"write a one\nsync\n{MON}savevm s1\n{MON}write b two\nsync\nls\n"
              f"{MON}loadvm s1\n{MON}ls\nwrite c three\nsync\nls\npoweroff\n")
    recorded = record(tmp_path, script)
    assert "restored s1" in recorded.stdout
    m = trace_manifest(tmp_path / "store", "t")
    with Store(tmp_path / "store", readonly=True) as store:
        s1 = store.resolve("s1")
    assert s1 in {k.snapshot for k in m.keyframes}      # savevm is a keyframe
    assert m.loads == [s1] and m.inputs["loads"] == 1
    replayed = replay(tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert "console output identical" in replayed.stderr
    last_ls = replayed.stdout.split("write c three")[-1]
    assert re.findall(r"^\s+\d+\s+(\w)$", last_ls, re.M) == ["a", "c"]   # b was undone


def test_record_from_a_snapshot(tmp_path):
    saved = chrono(tmp_path, "run", "--store", tmp_path / "store",
                   script=f"write a hello\nsync\n{MON}savevm booted\nquit\n")
    assert saved.returncode == 0, saved.stderr
    recorded = record(tmp_path, "cat a\nbench 1\npoweroff\n", "--from", "booted")
    assert "hello" in recorded.stdout
    m = trace_manifest(tmp_path / "store", "t")
    with Store(tmp_path / "store", readonly=True) as store:
        assert m.keyframes[0].snapshot == store.resolve("booted")
    replayed = replay(tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout


def test_gc_keeps_a_recording_and_frees_it_once_removed(tmp_path):
    record(tmp_path)
    store = tmp_path / "store"
    gc = chrono(tmp_path, "store", "gc", "--store", store)
    assert gc.returncode == 0 and "removed 0 snapshots" in gc.stderr + gc.stdout
    assert replay(tmp_path).returncode == 0
    assert chrono(tmp_path, "trace", "rm", "--store", store, "t").returncode == 0
    gc = chrono(tmp_path, "store", "gc", "--store", store)
    assert re.search(r"removed [1-9]\d* snapshots", gc.stdout), gc.stdout
    with Store(store, readonly=True) as s, s.reader() as r:
        assert r.snapshot_ids() == [] and list(r.chunk_keys()) == []
    gone = replay(tmp_path)
    assert gone.returncode == 3 and "no recording named 't'" in gone.stderr


def test_record_refuses_a_name_in_use_and_a_bad_name(tmp_path):
    record(tmp_path)
    again = chrono(tmp_path, "record", "--store", tmp_path / "store", "--name", "t",
                   script="poweroff\n")
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = chrono(tmp_path, "record", "--store", tmp_path / "store", "--name", "a/b",
                 script="poweroff\n")
    assert bad.returncode == 2 and "cannot name" in bad.stderr


def test_trace_list_and_info_describe_the_recording(tmp_path):
    record(tmp_path)
    listed = chrono(tmp_path, "trace", "list", "--store", tmp_path / "store")
    assert listed.returncode == 0 and re.search(r"\bt\b.*poweroff", listed.stdout)
    info = chrono(tmp_path, "trace", "info", "--store", tmp_path / "store", "t")
    m = trace_manifest(tmp_path / "store", "t")
    assert f"{m.length:,}" in info.stdout
    assert "console bytes" in info.stdout and "keyframes" in info.stdout


@pytest.mark.parametrize("interval", [DIGEST_INTERVAL, 3 * DIGEST_INTERVAL])
def test_keyframe_interval_is_honoured(tmp_path, interval):
    proc = chrono(tmp_path, "record", "--store", tmp_path / "store", "--name", "k",
                  "--keyframe-interval", interval, script="bench 2\npoweroff\n")
    assert proc.returncode == 0, proc.stderr
    m = trace_manifest(tmp_path / "store", "k")
    inner = [k.position for k in m.keyframes[1:-1]]
    assert inner and all(b - a == interval for a, b in zip([0] + inner, inner))


def test_an_interactive_recording_at_a_terminal_replays(tmp_path):
    """Typed at a real terminal (paced, keys as they come), ended with Ctrl-A x."""
    from test_console_tty import Terminal
    store = tmp_path / "store"
    t = Terminal(["record", "--store", str(store), "--name", "live"])
    try:
        t.expect(b"demo> ")
        for line in (b"write a typed\r", b"uptime\r", b"cat a\r"):
            t.type(line)
            time.sleep(0.3)             # a person types: the guest idles in between
        t.expect(b"typed\r\ndemo> ")
        t.type(b"\x01x")
        t.expect(b"recorded live:")
        assert t.proc.wait(timeout=20) == 0
    finally:
        t.close()
    m = trace_manifest(store, "live")
    assert m.outcome == "quit" and m.inputs["console"] == 27   # every typed key
    replayed = replay(tmp_path, "live")
    assert replayed.returncode == 0, replayed.stderr
    assert "typed" in replayed.stdout and "console output identical" in replayed.stderr


def test_a_killed_recording_keeps_a_replayable_prefix(tmp_path):
    """SIGKILL in the middle: the store verifies, and the recording replays to
    its last committed keyframe."""
    import signal
    import subprocess
    import sys
    store = tmp_path / "store"
    proc = subprocess.Popen([*CHRONO, "record", "--store", str(store),
                             "--name", "cut", "--keyframe-interval", str(1 << 24)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    proc.stdin.write(b"write a before\nsync\nbench 400\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:      # until a few keyframes are committed
        time.sleep(0.3)
        try:
            if len(trace_manifest(store, "cut").keyframes) >= 4:
                break
        except Exception:                   # noqa: BLE001 - not created yet
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    verified = chrono(tmp_path, "store", "verify", "--store", store)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    m = trace_manifest(store, "cut")
    assert not m.complete and len(m.keyframes) >= 4
    listed = chrono(tmp_path, "trace", "list", "--store", store)
    assert "cut short" in listed.stdout
    replayed = replay(tmp_path, "cut")
    assert replayed.returncode == 0, replayed.stderr
    assert "was cut short" in replayed.stderr
    assert f"{m.keyframes[-1].position - m.start_position:,} instructions" in replayed.stderr


def test_store_verify_checks_recordings_too(tmp_path):
    record(tmp_path)
    store = tmp_path / "store"
    sound = chrono(tmp_path, "store", "verify", "--store", store)
    assert sound.returncode == 0 and "1 recording checked" in sound.stdout
    # Damage one event chunk's content (its checksum no longer matches).
    trace_id = trace_manifest(store, "t").id_bytes
    with Store(store) as s, s.writer() as w:
        key, value = next(iter(w.chunks(trace_id)))
        w.put_chunk(key, value[:-3] + bytes(3))
    damaged = chrono(tmp_path, "store", "verify", "--store", store)
    assert damaged.returncode == 7
    assert "recording" in damaged.stdout and "chunk" in damaged.stdout


def test_going_live_from_the_past_records_a_branch(tmp_path):
    # A recording that ends with the guest at its prompt, all input taken.
    record(tmp_path, "write a hello\nsync\nbench 1\n")
    store = tmp_path / "store"
    base = trace_manifest(store, "t")
    assert base.outcome == "input-ended"
    fork = base.end_position
    live = chrono(tmp_path, "replay", "--store", store, "t", "--to", fork, "--live",
                  "--name", "br", script="write b branch\nls\npoweroff\n")
    assert live.returncode == 0, live.stderr
    assert "recorded br:" in live.stderr
    assert re.search(r"^\s+6\s+a\n\s+7\s+b$", live.stdout, re.M)   # a from the past, b new
    br = trace_manifest(store, "br")
    assert br.parent == {"trace": "t", "position": fork}
    assert br.start_position == fork and br.keyframes[0].position == fork
    with Store(store, readonly=True) as s, s.reader() as r:
        first = r.get_snapshot(br.keyframes[0].snapshot)
        assert first.parent in {k.snapshot for k in base.keyframes}  # shares the past's pages
    replayed = replay(tmp_path, "br")
    assert replayed.returncode == 0, replayed.stderr
    assert live.stdout.endswith(replayed.stdout) and "write b branch" in replayed.stdout
    listed = chrono(tmp_path, "trace", "list", "--store", store)
    assert re.search(rf"└─ br\t.*\tbranch of t at {fork:,}$", listed.stdout), listed.stdout


def test_live_needs_a_position(tmp_path):
    record(tmp_path)
    proc = chrono(tmp_path, "replay", "--store", tmp_path / "store", "t", "--live")
    assert proc.returncode == 2 and "--to POSITION" in proc.stderr
