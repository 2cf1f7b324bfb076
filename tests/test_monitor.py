"""The (chrono) monitor and `chrono run --from`, through the real command line.

Scripted runs pipe input into `chrono run --store DIR`: Ctrl-A c (`\\x01c`)
switches between the guest console and the monitor, and a monitor line runs
once the guest has taken the input before it and settled.  Monitor replies go
to stdout with the guest's output; chrono's own notes go to stderr.  The last
tests drive the monitor from a real pseudo-terminal.

Scripts end with `poweroff` (or `quit`): once piped input is used up a run is
paced, and a guest with a cache flush scheduled would wait for it in real time.
"""
from __future__ import annotations

import dataclasses
import os
import re
import select
import subprocess
import termios
import time

import pytest

from chrono.store import Store, stats
from test_console_tty import Terminal
from tracehelp import CHRONO, MON, chrono

PROMPT = "demo> "
INFO_ROW = re.compile(r"^(\S+)\s+([0-9a-f]{12})\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+([\d,]+)\s+"
                      r"(\d+\.\d{3}) s$")


def run_with_store(tmp_path, script, *args, store="store"):
    return chrono(tmp_path, "run", "--store", tmp_path / store, *args, script=script)


def out_lines(text: str) -> list[str]:
    """Output lines, without a guest prompt in front: a piped run writes the
    monitor's reply right after the prompt the guest printed last."""
    return [line.removeprefix(PROMPT) for line in text.split("\n")]


def monitor(*lines: str) -> str:
    """Monitor lines between two Ctrl-A c: the monitor view is left again after them."""
    return MON + "".join(line + "\n" for line in lines) + MON


def info_rows(text: str) -> dict[str, tuple[str, int, float]]:
    """name -> (id prefix, instructions, virtual seconds) from `info snapshots` output."""
    rows = {}
    for line in text.split("\n"):
        match = INFO_ROW.match(line)
        if match:
            rows[match[1]] = (match[2], int(match[3].replace(",", "")), float(match[4]))
    return rows


def last_block(text: str, header: str = "name ") -> str:
    """The output from the last `info snapshots` table on."""
    return text[text.rindex(header):]


# ---- monitor commands -----------------------------------------------------------------

def test_help_lists_the_commands_and_bad_lines_get_one_line_replies(tmp_path):
    proc = run_with_store(tmp_path, monitor("help", "frobnicate", "savevm", "info") + "poweroff\n")
    assert proc.returncode == 0, proc.stderr
    out = out_lines(proc.stdout)
    for command in ("savevm NAME", "loadvm NAME", "info snapshots", "delvm NAME", "stop", "cont",
                    "quit", "help"):
        assert any(line.startswith(command + " ") for line in out), command
    assert "unknown command 'frobnicate'; type `help` for the list" in out
    assert "usage: savevm NAME" in out
    assert "usage: info snapshots" in out
    assert "Powering off." in out


def test_info_snapshots_lists_names_ids_and_positions(tmp_path):
    script = ("write a one\n" + monitor("savevm first")
              + "bench 1\n" + monitor("savevm second", "info snapshots")
              + "poweroff\n")
    proc = run_with_store(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    rows = info_rows(last_block(proc.stdout))
    assert set(rows) == {"first", "second"}, proc.stdout[-2000:]
    with Store(tmp_path / "store", readonly=True) as store:
        refs = store.refs()
        for name, (prefix, steps, seconds) in rows.items():
            manifest = store.get_snapshot(refs[name])
            assert refs[name].startswith(prefix)
            assert steps == manifest.steps
            assert seconds == pytest.approx(manifest.vclock / 1e9, abs=0.0006)
    assert rows["second"][1] > rows["first"][1] + 9_000_000        # the benchmark ran between


def test_savevm_reports_pages_blocks_and_the_bytes_it_stored(tmp_path):
    proc = run_with_store(tmp_path, "write a one\n" + monitor("savevm first") + "poweroff\n")
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"saved first \(([0-9a-f]{12})\): ([\d,]+) RAM pages?, ([\d,]+) disk "
                      r"blocks?, ([\d,]+) KiB new in the store; guest paused [\d.]+ ms, "
                      r"[\d.]+ ms in all", proc.stdout)
    assert match, proc.stdout[-1500:]
    pages, blocks, kib = (int(match[i].replace(",", "")) for i in (2, 3, 4))
    assert pages > 20 and blocks > 0
    with Store(tmp_path / "store", readonly=True) as store:
        stored = stats(store).stored_bytes
    # The first snapshot of a store adds everything the store holds.
    assert kib == round(stored / 1024), (
        f"savevm said {kib} KiB new in the store; the store holds {stored} bytes")


def test_delvm_removes_a_snapshot(tmp_path):
    script = ("write a one\n" + monitor("savevm keep", "savevm drop", "delvm drop", "delvm nosuch",
                                        "info snapshots")
              + "poweroff\n")
    proc = run_with_store(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    out = out_lines(proc.stdout)
    assert "removed drop" in out
    errors = [line for line in out if "nosuch" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert set(info_rows(last_block(proc.stdout))) == {"keep"}
    with Store(tmp_path / "store", readonly=True) as store:
        assert set(store.refs()) == {"keep"}


def test_loadvm_of_an_unknown_snapshot_is_one_error_line_and_the_guest_keeps_running(tmp_path):
    script = ("write a one\n" + monitor("savevm here", "loadvm nosuch")
              + "echo still running\ncat a\npoweroff\n")
    proc = run_with_store(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    out = out_lines(proc.stdout)
    errors = [line for line in out if "nosuch" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    assert "still running" in out
    assert out[out.index("cat a") + 1] == "one"
    assert proc.stderr == ""


def test_loadvm_from_a_machine_with_other_ram_is_refused_and_the_guest_keeps_running(tmp_path):
    saved = run_with_store(tmp_path, monitor("savevm big") + "poweroff\n")
    assert saved.returncode == 0, saved.stderr
    proc = run_with_store(tmp_path, monitor("loadvm big") + "echo still running\npoweroff\n",
                          "--ram", "64M")
    assert proc.returncode == 0, proc.stderr
    out = out_lines(proc.stdout)
    errors = [line for line in out if line.startswith("error: ")]
    assert len(errors) == 1 and "RAM size" in errors[0] and "'big'" in errors[0], errors
    assert "still running" in out


def test_stop_and_cont(tmp_path):
    script = (monitor("stop", "info snapshots", "cont") + "echo running again\n"
              + monitor("stop"))
    proc = run_with_store(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    out = out_lines(proc.stdout)
    assert out.count("guest stopped; `cont` resumes it") == 2
    assert "running again" in out
    # The input ended while the guest was stopped: the run ends, and says why.
    assert proc.stderr.strip() == "chrono: the guest is stopped and the input has ended"


def test_quit_exits_0_without_running_the_rest(tmp_path):
    proc = run_with_store(tmp_path, "echo before\n" + monitor("quit") + "echo after\npoweroff\n")
    assert proc.returncode == 0, proc.stderr
    assert "before" in proc.stdout.split("\n")
    assert "after" not in proc.stdout and "Powering off" not in proc.stdout
    assert not (tmp_path / "store").exists()            # nothing was saved: no store made


def test_savevm_twice_with_the_same_name_replaces_it(tmp_path):
    script = ("write a one\n" + monitor("savevm x")
              + "write b two\n" + monitor("savevm x", "info snapshots")
              + "rm a\nrm b\nwrite c three\n" + monitor("loadvm x")
              + "ls\nfsck\npoweroff\n")
    proc = run_with_store(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    rows = info_rows(last_block(proc.stdout))
    assert list(rows) == ["x"]
    assert f"restored x at instruction {rows['x'][1]:,} in " in proc.stdout
    out = out_lines(proc.stdout[proc.stdout.rindex("restored x"):])
    listing = out[out.index("ls") + 1:out.index("fsck")]
    assert [line.split()[-1] for line in listing[:-1]] == ["a", "b"], listing
    assert out[out.index("fsck") + 1] == "CLEAN"
    with Store(tmp_path / "store", readonly=True) as store:
        refs = store.refs()
        assert list(refs) == ["x"]
        assert store.get_snapshot(refs["x"]).steps == rows["x"][1]
        assert refs["x"].startswith(rows["x"][0])


def test_savevm_still_works_after_the_last_saved_snapshot_was_deleted_and_collected(tmp_path):
    """delvm says the data goes at the next `chrono store gc`; running that gc
    while the guest runs on must not keep the session from saving again."""
    store = tmp_path / "store"
    proc = subprocess.Popen(CHRONO + ["run", "--store", str(store)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        proc.stdin.write(("write a one\n" + monitor("savevm x", "delvm x")).encode())
        proc.stdin.flush()
        seen = b""
        deadline = time.monotonic() + 30
        while b"removed x" not in seen:
            assert time.monotonic() < deadline, f"no reply to delvm: {seen[-500:]!r}"
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        gc = chrono(tmp_path, "store", "gc", "--store", store)
        # The running guest holds a lease on its baseline: gc keeps it.
        assert gc.returncode == 0 and gc.stdout.startswith("removed 0 snapshots"), gc.stdout
        rest, errors = proc.communicate(("write b two\n" + monitor("savevm y") + "poweroff\n").encode(),
                                        timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = out_lines((seen + rest).decode(errors="replace").replace("\r\n", "\n"))
    assert proc.returncode == 0, errors
    failed = [line for line in out if line.startswith("error: ")]
    assert not failed, f"savevm y after delvm x + gc: {failed}"
    assert any(line.startswith("saved y (") for line in out)

    restored = run_with_store(tmp_path, "ls\nfsck\npoweroff\n", "--from", "y")
    assert restored.returncode == 0, restored.stderr
    listing = out_lines(restored.stdout)
    assert "2 files, 8 bytes;" in " ".join(listing) and "CLEAN" in listing


def test_a_refused_savevm_does_not_spoil_the_next_one(tmp_path):
    script = ("write a one\n" + monitor("savevm x")
              + "write b two\nsync\n" + monitor("savevm bad/name", "savevm good")
              + "poweroff\n")
    proc = run_with_store(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    errors = [line for line in out_lines(proc.stdout) if line.startswith("error: ")]
    assert len(errors) == 1 and "bad/name" in errors[0], errors

    # (A guest restored from an incomplete snapshot may hang in disk timeouts:
    # --max-insns bounds the run.)
    restored = run_with_store(tmp_path, "cat b\nls\n" + monitor("quit"), "--from", "good",
                              "--max-insns", 300_000_000)
    out = out_lines(restored.stdout)
    assert "cat b" in out, restored.stdout
    assert out[out.index("cat b") + 1] == "two", (
        "the snapshot saved after a refused savevm lacks what changed before it: "
        + " | ".join(out[:8]))
    assert restored.returncode == 0, restored.stderr


# ---- chrono run --from ----------------------------------------------------------------

def test_run_from_a_snapshot_starts_with_a_live_shell_and_the_files(tmp_path):
    first = run_with_store(tmp_path, "write keep kept in the snapshot\nwrite other 2\n"
                           + monitor("savevm booted") + "write later not in it\npoweroff\n")
    assert first.returncode == 0, first.stderr

    proc = run_with_store(tmp_path, "cat keep\nls\nfsck\npoweroff\n", "--from", "booted")
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"chrono: restored booted in \d+\.\d ms "
                        r"\(RAM pages load as the guest touches them\)\n", proc.stderr), proc.stderr
    out = proc.stdout.split("\n")
    assert "chrono demo guest" not in proc.stdout           # no boot: the shell is already there
    assert out[0] == "cat keep" and out[1] == "kept in the snapshot", out[:3]
    listing = proc.stdout[proc.stdout.index(f"{PROMPT}ls"):]
    assert " keep\n" in listing and " other\n" in listing and " later\n" not in listing
    assert out[out.index(f"{PROMPT}fsck") + 1] == "CLEAN"
    assert "Powering off." in out


def test_a_run_from_a_snapshot_saves_and_loads_like_any_other(tmp_path):
    first = run_with_store(tmp_path, "write a one\n" + monitor("savevm s1") + "poweroff\n")
    assert first.returncode == 0, first.stderr
    script = ("write b two\n" + monitor("savevm s2")
              + "write c three\n" + monitor("loadvm s1") + "ls\n"
              + monitor("loadvm s2") + "ls\npoweroff\n")
    proc = run_with_store(tmp_path, script, "--from", "s1")
    assert proc.returncode == 0, proc.stderr
    out = out_lines(proc.stdout)
    listings = [i for i, line in enumerate(out) if line == "ls"]
    assert len(listings) == 2
    assert out[listings[0] + 1].split() == ["4", "a"] and out[listings[0] + 2].startswith("1 file,")
    assert [out[listings[1] + k].split()[-1] for k in (1, 2)] == ["a", "b"]
    assert out[listings[1] + 3].startswith("2 files,")

    again = run_with_store(tmp_path, "cat b\nfsck\npoweroff\n", "--from", "s2")
    assert again.returncode == 0, again.stderr
    out = out_lines(again.stdout)
    assert out[out.index("cat b") + 1] == "two" and out[out.index("fsck") + 1] == "CLEAN"


@pytest.mark.parametrize("extra, dropped", [
    (["--disk", "disk.img"], "--disk"),
    (["--kernel", "kernel.elf"], "--kernel"),
    (["debian"], "--store"),             # GUEST --from NAME: NAME is in the guest's own store
    (["--ram", "64M"], "--ram"),
    (["--commit"], "--commit"),
    (["--bios", "fw.bin"], "--bios"),
    (["--append", "console=ttyS0"], "--append"),
])
def test_run_from_with_machine_options_is_refused_with_one_line(tmp_path, extra, dropped):
    proc = chrono(tmp_path, "run", "--from", "booted", "--store", tmp_path / "nostore", *extra,
                  script="poweroff\n", timeout=20)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("chrono: error: --from restores the whole machine from the snapshot")
    assert lines[0].endswith(f"drop {dropped}"), lines[0]
    assert not (tmp_path / "nostore").exists()


def test_run_from_an_unknown_snapshot_is_one_line(tmp_path):
    saved = run_with_store(tmp_path, monitor("savevm here") + "poweroff\n")
    assert saved.returncode == 0, saved.stderr
    proc = run_with_store(tmp_path, "poweroff\n", "--from", "nosuch")
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chrono: error: ") and "nosuch" in lines[0]
    assert proc.stdout == ""


def test_run_from_a_snapshot_of_another_chrono_build_is_refused_with_useful_advice(tmp_path):
    """A snapshot whose CPU/device state has another layout (saved by a chrono
    built from other sources) cannot be started; the one-line refusal must
    not send the user back to the very command that was refused."""
    saved = run_with_store(tmp_path, "write a one\n" + monitor("savevm now") + "poweroff\n")
    assert saved.returncode == 0, saved.stderr
    with Store(tmp_path / "store") as store:            # what an older build would have saved
        manifest = store.snapshot("now")
        state = store.get_blob(manifest.state)[:-64]
        config = dict(manifest.config, state_size=len(state))
        with store.writer() as w:
            older = dataclasses.replace(manifest, config=config, state=w.put_blob(state), parent=None)
            w.set_ref("older", w.put_snapshot(older))

    proc = run_with_store(tmp_path, "ls\npoweroff\n", "--from", "older")
    assert proc.returncode == 6, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chrono: error: "), proc.stderr
    assert "'older'" in lines[0] and "state layout" in lines[0], lines[0]
    assert "chrono run --from" not in lines[0], f"circular advice: {lines[0]}"


# ---- at a terminal ----------------------------------------------------------------------

def read_for(t: Terminal, seconds: float) -> None:
    """Collect whatever the terminal shows during `seconds`."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([t.master], [], [], left)
        if ready:
            t.seen += os.read(t.master, 4096)


@pytest.fixture
def terminal():
    made = []

    def start(*args):
        t = Terminal([str(a) for a in args])
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


def test_monitor_at_a_terminal_saves_and_goes_back_to_the_guest(terminal, tmp_path):
    store = tmp_path / "store"
    t = terminal("run", "--store", store)
    t.expect(PROMPT.encode())
    t.type(b"write note typed at a tty\r")
    t.expect(b"write note typed at a tty\r\n" + PROMPT.encode())
    t.type(b"\x01c")
    t.expect(b"(chrono) ")
    t.type(b"savevm x\r")
    t.expect(b"saved x (")
    t.seen = t.seen[t.seen.index(b"saved x ("):]        # not the prompt from before it
    t.expect(b"\r\n(chrono) ")                          # the reply, then the prompt again
    t.seen = b""
    t.type(b"\x01c")                                    # back to the guest
    t.type(b"cat note\r")
    t.expect(b"cat note\r\ntyped at a tty\r\n" + PROMPT.encode())
    assert b"(chrono)" not in t.seen
    t.type(b"\x01x")
    assert t.proc.wait(timeout=10) == 0
    assert termios.tcgetattr(t.slave) == t.before
    with Store(store, readonly=True) as s:
        assert list(s.refs()) == ["x"]


def test_stop_at_a_terminal_holds_typed_input_until_cont(terminal, tmp_path):
    t = terminal("run", "--store", tmp_path / "store")
    t.expect(PROMPT.encode())
    t.type(b"\x01c")
    t.expect(b"(chrono) ")
    t.type(b"stop\r")
    t.expect(b"guest stopped")
    t.type(b"\x01c")                                    # to the guest console, still stopped
    t.type(b"echo held back\r")
    read_for(t, 1.0)
    assert b"held back" not in t.seen, "the stopped guest took input"
    t.seen = b""
    t.type(b"\x01c")
    t.expect(b"(chrono) ")
    t.type(b"cont\r")
    t.expect(b"held back\r\n" + PROMPT.encode())        # the queued line reaches the guest
    t.type(b"\x01x")
    assert t.proc.wait(timeout=10) == 0
    assert termios.tcgetattr(t.slave) == t.before


def test_a_savevm_committing_keeps_the_idle_session_looking_for_its_report(tmp_path):
    """While a savevm commits beside the guest the monitor is busy, and an idle
    session then waits for input in short steps (its report is not held back
    by a whole 0.1 s wait); once reported, the session waits as before."""
    from chrono.core.launch import GuestSpec, launch
    from chrono.core.session import Session
    from chrono.monitor import Monitor
    from chrono.store.capture import Snapshots

    guest = launch(GuestSpec())
    guest.machine.run(2_000_000)
    store = Store(tmp_path / "store", create=True)
    mon = Monitor(lambda: Snapshots(store, guest))
    session = Session(guest.machine, monitor=mon)
    assert not mon.busy() and session._input_wait() == 0.1
    assert mon.cmd_savevm("s1").action == "pending"
    assert mon.busy() and session._input_wait() < 0.01
    for _ in range(6000):               # the commit runs in its own thread
        report = mon.poll()
        if report:
            break
        time.sleep(0.01)
    assert report.startswith("saved s1 ("), report
    assert not mon.busy() and session._input_wait() == 0.1
    mon.close()
