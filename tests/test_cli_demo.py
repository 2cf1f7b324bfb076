"""`chrono run` with the built-in demo guest, through the real command line.

Every test starts chrono as a subprocess the way a script would: input piped
into stdin, guest output read from stdout, chrono's own messages from stderr,
the exit status checked.  Nothing here needs a terminal.
"""

import hashlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronocmd import CHRONO
BENCH_1_CHECKSUM = "checksum 0x293f286cb41ca541"
PROMPT = "demo> "
DISK_SIZE = 4 << 20
# Rejecting bad input takes well under a second; a run still going after this
# long has booted something it should have refused.
BAD_INPUT_TIMEOUT = 10


def chrono(*args, input="", timeout=60):
    """Run `chrono ARGS` with `input` piped in; returns the CompletedProcess (text)."""
    try:
        return _decode(subprocess.run(CHRONO + [str(a) for a in args], input=input.encode(),
                                      capture_output=True, timeout=timeout, check=False))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`chrono {' '.join(map(str, args))}` did not finish within {timeout} s "
                    f"(stdout so far: {e.stdout!r:.300}, stderr: {e.stderr!r:.300})")


def _decode(proc):
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def lines(text):
    """Guest output lines (the guest ends lines with CR LF)."""
    return text.replace("\r\n", "\n").split("\n")


def blank_image(path, size=DISK_SIZE):
    path.write_bytes(bytes(size))
    return path


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_no_traceback(proc):
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, proc.stderr


# --- Booting and the shell ------------------------------------------------------------

def test_scripted_session_shows_banner_prompt_and_powers_off_cleanly():
    proc = chrono("run", input="help\npoweroff\n")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert "chrono demo guest 1.0 (RV64IMAC, M-mode, single hart)" in out
    assert "Type 'help' for a list of commands." in out
    assert f"{PROMPT}help" in out
    assert "Commands:" in out
    for command in ("help", "echo", "uptime", "bench", "ls", "cat", "write", "rm", "sync",
                    "fsck", "crash", "poweroff"):
        assert any(line.startswith(f"  {command} ") for line in out), command
    assert f"{PROMPT}poweroff" in out
    assert out[-2:] == ["Powering off.", ""]
    assert proc.stderr == ""
    assert_no_traceback(proc)


def test_echo_and_unknown_command():
    proc = chrono("run", input="echo hello, world\nfrobnicate\npoweroff\n")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert "hello, world" in out
    assert "unknown command 'frobnicate' (type 'help' for a list of commands)" in out


def test_bench_1_prints_the_known_checksum():
    proc = chrono("run", input="bench 1\npoweroff\n")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert BENCH_1_CHECKSUM in out
    # chrono counts real instructions (QEMU -icount shift=0 measured 9,732,365).
    instructions = [int(line.split()[1]) for line in out if line.startswith("instructions ")]
    assert len(instructions) == 1 and 9_000_000 < instructions[0] < 10_500_000


def test_file_commands_write_ls_cat_rm_sync_fsck():
    script = ("write alpha first file\n"
              "write beta the second file\n"
              "ls\n"
              "cat alpha\n"
              "cat beta\n"
              "rm alpha\n"
              "ls\n"
              "cat alpha\n"
              "sync\n"
              "fsck\n"
              "poweroff\n")
    proc = chrono("run", input=script)
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    i = out.index(f"{PROMPT}ls")
    assert out[i + 1].split() == ["11", "alpha"]
    assert out[i + 2].split() == ["16", "beta"]
    assert out[i + 3].startswith("2 files, 27 bytes;")
    assert out[out.index(f"{PROMPT}cat alpha") + 1] == "first file"
    assert out[out.index(f"{PROMPT}cat beta") + 1] == "the second file"
    j = out.index(f"{PROMPT}ls", i + 1)
    assert out[j + 1].split() == ["16", "beta"]
    assert out[j + 2].startswith("1 file, 16 bytes;")
    # after rm, cat of the removed file does not print its old contents
    k = out.index(f"{PROMPT}cat alpha", j)
    assert out[k + 1] != "first file"
    assert re.fullmatch(r"synced \d+ blocks", out[out.index(f"{PROMPT}sync") + 1])
    assert out[out.index(f"{PROMPT}fsck") + 1] == "CLEAN"


# --- Disks --------------------------------------------------------------------------------

def test_commit_keeps_files_for_the_next_run(tmp_path):
    image = blank_image(tmp_path / "demo.img")
    first = chrono("run", "--disk", image, "--commit",
                   input="write keep me please\nwrite other 12345\npoweroff\n")
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(rf"chrono: committed \d+ bytes of guest writes to {re.escape(str(image))}\n",
                        first.stderr), first.stderr
    assert image.stat().st_size == DISK_SIZE

    second = chrono("run", "--disk", image, input="ls\ncat keep\ncat other\nfsck\npoweroff\n")
    assert second.returncode == 0, second.stderr
    out = lines(second.stdout)
    assert not any(line.startswith("fs: no file system found") for line in out)
    assert "fs: mounted: 2 files, " in second.stdout
    i = out.index(f"{PROMPT}ls")
    assert out[i + 1].split() == ["10", "keep"]
    assert out[i + 2].split() == ["6", "other"]
    assert out[out.index(f"{PROMPT}cat keep") + 1] == "me please"
    assert out[out.index(f"{PROMPT}cat other") + 1] == "12345"
    assert out[out.index(f"{PROMPT}fsck") + 1] == "CLEAN"


def test_without_commit_the_image_is_untouched_and_writes_are_gone(tmp_path):
    image = blank_image(tmp_path / "demo.img")
    setup = chrono("run", "--disk", image, "--commit", input="write base original\npoweroff\n")
    assert setup.returncode == 0, setup.stderr
    before = sha256(image)
    mtime = image.stat().st_mtime_ns

    scratch = chrono("run", "--disk", image,
                     input="write scratch temporary\nrm base\nsync\nls\npoweroff\n")
    assert scratch.returncode == 0, scratch.stderr
    out = lines(scratch.stdout)
    i = out.index(f"{PROMPT}ls")
    assert out[i + 1].split() == ["10", "scratch"]          # the guest saw its own writes
    assert "committed" not in scratch.stderr
    assert sha256(image) == before, "the image changed without --commit"
    assert image.stat().st_mtime_ns == mtime

    again = chrono("run", "--disk", image, input="ls\npoweroff\n")
    assert again.returncode == 0, again.stderr
    out = lines(again.stdout)
    i = out.index(f"{PROMPT}ls")
    assert out[i + 1].split() == ["9", "base"]
    assert out[i + 2].startswith("1 file, 9 bytes;")


def test_blank_disk_without_commit_is_formatted_afresh_each_run(tmp_path):
    image = blank_image(tmp_path / "blank.img")
    for _ in range(2):
        proc = chrono("run", "--disk", image, input="ls\nwrite f data\npoweroff\n")
        assert proc.returncode == 0, proc.stderr
        assert "fs: no file system found; formatting 8192 blocks..." in lines(proc.stdout)
        assert f"{PROMPT}ls\r\n0 files, 0 bytes;" in proc.stdout
    assert image.read_bytes() == bytes(DISK_SIZE)


# --- How runs end -----------------------------------------------------------------------

def test_crash_reports_the_trap_and_exits_1():
    proc = chrono("run", input="echo before\ncrash\necho never\n")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    out = lines(proc.stdout)
    traps = [line for line in out if line.startswith("TRAP: ")]
    assert len(traps) == 1, out
    assert re.fullmatch(r"TRAP: cause=5 \(load access fault\) pc=0x8[0-9a-f]{7} tval=0x[0-9a-f]+",
                        traps[0]), traps[0]
    assert "Fatal exception: powering off with failure code 1." in out
    assert "never" not in out                    # the run ended at the trap
    assert_no_traceback(proc)


def test_max_insns_stops_with_124_and_one_line_message():
    proc = chrono("run", "--max-insns", "1000", input="poweroff\n")
    assert proc.returncode == 124
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n")
    assert proc.stderr.startswith("chrono: ")
    assert "1000" in proc.stderr
    assert_no_traceback(proc)


def test_input_ending_while_the_guest_waits_ends_the_run():
    proc = chrono("run", input="echo last words\n", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "last words" in lines(proc.stdout)
    assert proc.stdout.endswith(PROMPT)               # the guest was waiting at the prompt
    note = proc.stderr.splitlines()
    assert len(note) == 1 and note[0].startswith("chrono: ") and "input" in note[0], proc.stderr
    assert_no_traceback(proc)


def test_empty_input_ends_the_run():
    proc = chrono("run", input="", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(PROMPT)
    assert len(proc.stderr.splitlines()) == 1


def test_pace_and_no_pace_give_the_same_output():
    script = "uptime\necho timing\nbench 1\nuptime\npoweroff\n"
    paced = chrono("run", "--pace", input=script)
    unpaced = chrono("run", "--no-pace", input=script)
    assert paced.returncode == unpaced.returncode == 0, (paced.stderr, unpaced.stderr)
    assert paced.stdout == unpaced.stdout        # uptime included: virtual time is the same


def test_ctrl_c_stops_the_run_with_status_130():
    """SIGINT (Ctrl-C at a terminal, or `kill -INT`) while the guest waits for input."""
    proc = subprocess.Popen(CHRONO + ["run"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"echo ready\n")
        proc.stdin.flush()
        seen = b""
        deadline = time.monotonic() + 30
        while b"ready\r\ndemo> " not in seen:
            assert time.monotonic() < deadline, f"no prompt after echo: {seen!r}"
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, f"chrono exited early: {seen!r}"
                seen += chunk
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode(errors="replace")
    assert proc.returncode == 130, (proc.returncode, err)
    assert err == "chrono: interrupted\n"
    assert b"Traceback" not in seen + out


# --- Bad input: one line, non-zero exit, no traceback -----------------------------------

def chrono_bad_input(*args):
    """`chrono run ARGS` that must be refused before the guest starts."""
    return chrono("run", *args, input="poweroff\n", timeout=BAD_INPUT_TIMEOUT)


def assert_one_line_error(proc, *mentions):
    """chrono's own error: exactly one `chrono: error: ...` line on stderr."""
    assert_no_traceback(proc)
    assert proc.returncode not in (0, None), proc.stdout[-500:]
    err = proc.stderr.splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("chrono: error: "), proc.stderr
    for text in mentions:
        assert text in err[0], (text, err[0])
    assert proc.stdout == "", "the guest ran although the command was rejected"


def assert_usage_error(proc, option):
    """click's option parsing error: usage, then `Error: Invalid value for 'OPTION'`."""
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert f"Error: Invalid value for '{option}'" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_missing_kernel_file(tmp_path):
    missing = tmp_path / "no-such-kernel.elf"
    assert_one_line_error(chrono_bad_input("--kernel", missing), str(missing))


def test_x86_elf_as_kernel_is_refused():
    true = shutil.which("true") or "/bin/true"
    assert_one_line_error(chrono_bad_input("--kernel", true), true, "RISC-V")


def test_text_file_as_kernel_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("These are my notes, not a kernel.\nSecond line of plain text.\n")
    assert_one_line_error(chrono_bad_input("--kernel", notes), str(notes))


@pytest.mark.parametrize("size", ["3K", "100G"])
def test_ram_size_out_of_range(size):
    proc = chrono_bad_input("--ram", size)
    assert_no_traceback(proc)
    if proc.stderr.startswith("chrono: error: "):
        assert_one_line_error(proc, "16 MiB", "64 GiB")
    else:
        assert_usage_error(proc, "--ram")


@pytest.mark.parametrize("size", ["10T", "lots", "-5M", ""])
def test_ram_size_that_is_not_a_size(size):
    proc = chrono_bad_input("--ram", size)
    assert_no_traceback(proc)
    if proc.stderr.startswith("chrono: error: "):
        assert_one_line_error(proc, "--ram")
    else:
        assert_usage_error(proc, "--ram")


def test_missing_disk_image(tmp_path):
    missing = tmp_path / "missing.img"
    assert_one_line_error(chrono_bad_input("--disk", missing), str(missing))
    assert not missing.exists(), "a missing --disk must not be created"


def test_directory_as_disk(tmp_path):
    assert_one_line_error(chrono_bad_input("--disk", tmp_path), str(tmp_path), "directory")


def test_disk_size_not_a_multiple_of_512(tmp_path):
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(1000))
    assert_one_line_error(chrono_bad_input("--disk", odd), str(odd), "512")
    assert odd.read_bytes() == bytes(1000)


def test_empty_disk_image(tmp_path):
    empty = tmp_path / "empty.img"
    empty.touch()
    assert_one_line_error(chrono_bad_input("--disk", empty), str(empty))


def test_commit_without_disk():
    assert_one_line_error(chrono_bad_input("--commit"), "--commit", "--disk")


def test_initrd_without_kernel(tmp_path):
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"\x07" * 4096)
    assert_one_line_error(chrono_bad_input("--initrd", initrd), "--initrd", "--kernel")


def test_append_without_kernel():
    assert_one_line_error(chrono_bad_input("--append", "console=ttyS0"), "--append", "--kernel")


def test_max_insns_zero_is_a_usage_error():
    proc = chrono_bad_input("--max-insns", "0")
    assert proc.returncode == 2
    assert_one_line_error(proc, "--max-insns 0", "at least 1")


# --- Help ---------------------------------------------------------------------------------

def _entry_point():
    beside = Path(sys.executable).with_name("chrono")
    found = str(beside) if beside.exists() else shutil.which("chrono")
    assert found, "the `chrono` command is not installed (pip install .)"
    return found


def test_top_level_help_describes_the_tool():
    proc = _decode(subprocess.run([_entry_point(), "--help"], capture_output=True, timeout=60))
    assert proc.returncode == 0, proc.stderr
    assert "RISC-V" in proc.stdout
    assert "deterministic" in proc.stdout
    assert re.search(r"^\s+run\s+\S", proc.stdout, re.M), proc.stdout   # lists the run command
    assert proc.stderr == ""


def test_version():
    proc = chrono("--version")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"\bversion \d+\.\d+", proc.stdout), proc.stdout


def test_run_help_describes_every_option():
    proc = chrono("run", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--kernel", "--bios", "--initrd", "--append", "--disk", "--commit",
                   "--ram", "--max-insns", "--pace", "--no-pace"):
        assert option in proc.stdout, option
    assert "124" in proc.stdout                 # the --max-insns exit status is documented
    assert "demo guest" in proc.stdout
    assert proc.stderr == ""
