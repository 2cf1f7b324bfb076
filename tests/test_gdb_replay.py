"""`chrono debug` driven by the real gdb-multiarch, in batch mode.

A demo-guest recording is opened; gdb connects over TCP and uses stepi,
reverse-stepi, breakpoints with continue and reverse-continue, x/ and info
registers.  What gdb prints is checked against the recording itself
(positions from `monitor when`, registers against a timeline at the same
position).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from chrono.core.launch import demo_guest_path
from tracehelp import chrono, record_demo, symbol
from chronocmd import CHRONO

GDB = shutil.which("gdb-multiarch")
pytestmark = pytest.mark.skipif(GDB is None, reason="needs gdb-multiarch (apt install gdb-multiarch)")
SESSION = "write a hello\nsync\nbench 2\ncat a\nls\npoweroff\n"
WHEN = re.compile(r"position (\d+) of (\d+)\.\.(\d+), pc (0x[0-9a-f]+)")
# &blocks[0].next: a link of the block cache's LRU list, the one `crash` corrupts.
LINK = symbol("blocks") + 0x210


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    work = tmp_path_factory.mktemp("gdb")
    record_demo(work, "g", SESSION, 4_000_000)
    return work


def gdb(work, *commands) -> str:
    """`chrono debug g -- -batch -ex COMMAND...`: chrono starts gdb-multiarch on
    the recording (symbols included for the demo guest); what gdb printed."""
    args = [*CHRONO, "debug", "--store", str(work / "store"), "g", "--", "-batch", "-nx"]
    for c in commands:
        args += ["-ex", c]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=work,
                         stdin=subprocess.DEVNULL)
    assert "Traceback" not in out.stderr, out.stderr
    return out.stdout + out.stderr


def positions(out: str) -> list[int]:
    return [int(m[1]) for m in WHEN.finditer(out)]


def test_stepi_and_reverse_stepi(recording):
    out = gdb(recording, "stepi", "stepi", "stepi", "monitor when", "info registers pc",
              "reverse-stepi", "reverse-stepi", "monitor when", "info registers pc",
              "x/2xw 0x80000000")
    assert positions(out) == [3, 1]
    pcs = re.findall(r"^pc\s+(0x[0-9a-f]+)", out, re.M)
    assert len(pcs) == 2 and int(pcs[1], 16) == 0x80000004
    words = re.search(r"0x80000000 <_start>:\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)", out)
    elf = demo_guest_path().read_bytes()
    assert words, out
    assert bytes.fromhex(words[1][2:])[::-1] in elf        # the code, as loaded


def test_break_continue_and_reverse_continue(recording):
    out = gdb(recording, "break kputc", "continue", "monitor when", "continue", "monitor when",
              "continue", "monitor when", "reverse-continue", "monitor when",
              "info registers a0")
    first, second, third, back = positions(out)
    assert first < second < third and back == second
    assert out.count("Breakpoint 1, ") == 4
    assert re.search(r"^a0\s+0x[0-9a-f]+", out, re.M)


def test_reverse_continue_reaches_the_start_and_continue_the_end(recording):
    out = gdb(recording, "stepi 1000", "reverse-continue", "monitor when", "continue",
              "monitor when")
    start, end = positions(out)
    assert start == 0 and end > 1_000_000
    assert out.count("No more reverse-execution history") == 2


def test_info_registers_shows_the_recorded_state(recording):
    out = gdb(recording, "goto 500000", "info registers pc sp a0 priv mstatus",
              "info registers fcsr")
    from chrono.store import Store
    from chrono.replay.timeline import Timeline
    with Store(recording / "store") as store:
        t = Timeline(store, "g")
        t.seek(500_000)
        pc, sp, a0, priv = t.pc, t.machine.reg(2), t.machine.reg(10), t.machine.priv
        mstatus = t.machine.csr(0x300)
        t.close()
    def reg(name):
        return int(re.search(rf"^{name}\s+(0x[0-9a-f]+)", out, re.M)[1], 16)
    assert (reg("pc"), reg("sp"), reg("a0"), reg("mstatus")) == (pc, sp, a0, mstatus)
    assert re.search(r"^priv\s+0x3", out, re.M) and priv == 3
    assert re.search(r"^fcsr\s+0x0", out, re.M)


def test_a_recording_cannot_be_written_to(recording):
    out = gdb(recording, "set var $a0 = 5", "set {int}0x80000000 = 1", "info registers a0")
    assert "a0             0x0" in out or re.search(r"^a0\s+0x0\s", out, re.M)


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    work = tmp_path_factory.mktemp("gdb-crash")
    proc = chrono(work, "record", "--store", work / "store", "--name", "g",
                  script="write a hello\nsync\ncrash\n")
    assert proc.returncode == 1, proc.stderr              # the guest's failure code
    assert "load access fault" in proc.stdout
    return work


def test_rewinding_the_demo_crash_to_the_fault_and_to_the_corrupting_write(crash):
    """The README walk-through: from the trap back to the faulting load, then a
    watchpoint on the corrupted list link and reverse-continue to the store
    that corrupted it."""
    out = gdb(crash, "break trap_handler", "continue", "print/x $mepc",
              "break *$mepc", "reverse-continue", "monitor when", "x/i $pc",
              "delete",
              "set $link = *(long *)&head + 0x210",        # &head->next (struct cblock)
              "watch *(long *)$link", "reverse-continue", "monitor when", "x/i $pc")
    mepc = int(re.search(r"\$1 = (0x[0-9a-f]+)", out)[1], 16)
    at_fault, at_write = WHEN.findall(out)
    assert int(at_fault[3], 16) == mepc                   # the faulting instruction
    assert re.search(rf"=> 0x{mepc:x} <cache_crash\+\d+>:\s+lbu", out)
    assert re.search(r"Hardware watchpoint \d+: \*\(long \*\)\$link", out)
    assert re.search(r"Old value = 956397711104\s+New value = \d+", out)   # 0xdeadbeef00, backwards
    write = re.findall(r"=> (0x[0-9a-f]+) <cache_crash\+\d+>:\s+(\w+)", out)[-1]
    assert write[1] == "sd" and int(at_write[0]) < int(at_fault[0])


def test_watch_and_continue_forward_stops_after_the_write(crash):
    out = gdb(crash, "break cache_crash", "continue", "delete",
              "set $link = *(long *)&head + 0x210", "watch *(long *)$link",
              "continue", "monitor when", "x/i $pc - 4", "continue")
    assert re.search(rf"Old value = \d+\s+New value = {0xdeadbeef00}", out)
    assert re.search(r"<cache_crash\+\d+>:\s+sd", out)            # just after the store
    assert "No more reverse-execution history" in out               # then on to the end


def test_a_live_guest_under_gdb(tmp_path):
    """`chrono run --gdb`: the guest waits for gdb, runs under it with its console
    live, stops at breakpoints and watchpoints, takes register writes, and runs
    on to its end when gdb continues."""
    server = subprocess.Popen([*CHRONO, "run", "--gdb", "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        server.stdin.write(b"write a hello\nls\npoweroff\n")
        server.stdin.close()
        banner = server.stderr.readline().decode()
        port = re.search(r"waiting for gdb on [\d.]+:(\d+)", banner)
        assert port, banner
        out = subprocess.run(
            [GDB, "-batch", "-nx", str(demo_guest_path()), "-ex", f"target remote :{port[1]}",
             "-ex", "break kputc", "-ex", "continue", "-ex", "info registers pc",
             "-ex", "stepi", "-ex", "monitor when", "-ex", "delete",
             "-ex", f"watch *(long *){LINK:#x}", "-ex", "continue",
             "-ex", "delete", "-ex", "set var $s11 = 0x1234", "-ex", "info registers s11",
             "-ex", "continue"], capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
        assert re.search(r"Breakpoint 1, 0x[0-9a-f]+ in kputc", text), text
        assert re.search(r"instruction \d+, pc 0x[0-9a-f]+", text)
        assert re.search(rf"Hardware watchpoint 2: \*\(long \*\){LINK:#x}\s+Old value = \d+\s+"
                         r"New value = \d+", text), text
        assert re.search(r"^s11\s+0x1234", text, re.M)
        assert "exited normally" in text
        assert server.wait(timeout=60) == 0
        assert b"Powering off." in server.stdout.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_monitor_savevm_loadvm_and_last_write(crash):
    out = gdb(crash, "break cache_crash", "continue", "delete", "monitor savevm here",
              "monitor when", "stepi 50", "monitor loadvm here", "monitor when",
              "monitor goto 393000", f"monitor last-write {LINK:#x} 8", "monitor when",
              "monitor loadvm nosuch", "monitor frobnicate 1")
    here, back, after = WHEN.findall(out)
    assert back[0] == here[0] and after[0] == "393000"
    # The last write before 393000 is crash's own store of the wild pointer (sd s1,528(s0)).
    write = re.search(rf"position \d+: the instruction at pc (0x[0-9a-f]+) \(20943823, privilege 3\) "
                      rf"wrote {LINK:#x}", out)
    assert write and 0 < int(write[1], 16) - symbol("cache_crash") < 0x100, out
    assert "error: no snapshot named 'nosuch'" in out
    assert "unknown monitor command 'frobnicate 1'; `monitor help` lists them" in out


def test_goto_shows_the_registers_there_and_stepi_goes_one_further(recording):
    """gdb's own view follows `goto` (no cache flush by hand): the registers
    and frame are the target position's, and stepi goes from there."""
    out = gdb(recording, "goto 500000", "info registers pc sp", "stepi", "when",
              "goto 2000", "stepi", "when", "info registers pc")
    from chrono.store import Store
    from chrono.replay.timeline import Timeline
    with Store(recording / "store") as store:
        t = Timeline(store, "g")
        t.seek(500_000)
        pc, sp = t.pc, t.machine.reg(2)
        t.seek(2001)
        later_pc = t.pc
        t.close()
    assert positions(out) == [500_001, 2001], out
    pcs = re.findall(r"^pc\s+(0x[0-9a-f]+)", out, re.M)
    assert [int(p, 16) for p in pcs] == [pc, later_pc], out
    assert int(re.search(r"^sp\s+(0x[0-9a-f]+)", out, re.M)[1], 16) == sp


def test_positions_outside_the_recording_are_errors_that_say_so(recording):
    out = gdb(recording, "monitor goto abc", "monitor goto -5", "monitor goto 999999999999",
              "goto 5,000", "when", "goto 999999999999", "when")
    assert "Protocol error" not in out
    assert "error: 'abc' is not a position" in out
    assert "error: position -5 is before its start" in out
    assert "error: position 999999999999 is past its end" in out
    assert positions(out) == [5000, 5000]                    # no silent clamp to the end


def test_debug_says_how_to_get_gdb_when_it_is_missing(recording, tmp_path):
    proc = subprocess.run([*CHRONO, "debug", "--store", str(recording / "store"), "g"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("chrono: error: gdb-multiarch is not installed: install it "
                                   "(`apt install gdb-multiarch`), or serve a bare stub for another "
                                   "debugger with --port PORT")


def test_elf_gives_gdb_the_symbols(recording, tmp_path):
    copy = tmp_path / "guest.elf"
    copy.write_bytes(demo_guest_path().read_bytes())
    args = [*CHRONO, "debug", "--store", str(recording / "store"), "g", "--elf", str(copy),
            "--", "-batch", "-nx", "-ex", "info files", "-ex", "info symbol $pc"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         stdin=subprocess.DEVNULL)
    assert f'Symbols from "{copy}"' in out.stdout, out.stdout + out.stderr
    assert "_start in section .text" in out.stdout


def test_with_port_chrono_serves_one_gdb_after_another(recording):
    """`chrono debug --port`: a bare stub; after a gdb goes (detached, or gone
    with a breakpoint still inserted) the next one connects where it left,
    without that breakpoint; Ctrl-C ends it."""
    server = subprocess.Popen([*CHRONO, "debug", "--store", str(recording / "store"),
                               "--port", "0", "g"], stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, cwd=recording)
    try:
        found = re.search(r"waiting for gdb on ([\d.]+):(\d+)", server.stderr.readline())
        assert found
        connect = [GDB, "-batch", "-nx", "-ex", "set architecture riscv:rv64",
                   "-ex", f"target remote {found[1]}:{found[2]}"]
        first = subprocess.run(connect + ["-ex", "stepi 7", "-ex", "monitor when"],
                               capture_output=True, text=True, timeout=120)
        with socket.create_connection((found[1], int(found[2]))) as raw:
            raw.sendall(b"$Z0,80000004,4#%02x" % (sum(b"Z0,80000004,4") & 0xFF))
            answer = b""
            while not re.search(rb"#..$", answer):
                answer += raw.recv(64)
            assert answer.startswith(b"+$OK#")            # inserted; then gone without z0
        second = subprocess.run(connect + ["-ex", "monitor when", "-ex", "reverse-continue",
                                           "-ex", "monitor when"],
                                capture_output=True, text=True, timeout=120)
        assert positions(first.stdout + first.stderr) == [7], first.stdout + first.stderr
        assert positions(second.stdout + second.stderr) == [7, 0]     # not stopped at 0x80000004
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 130
        assert "Traceback" not in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
