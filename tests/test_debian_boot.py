"""The real Debian guest booted on chrono through the CLI, end to end.

`chrono run debian --disk COPY --commit` with a piped script: the guest's own
tools report what chrono's board gives it (riscv64, rv64imafdc, ext4 on /mnt,
the wall clock, timers, floating point in busybox awk, /dev/hwrng fed by the
virtio entropy device), a file written and synced in the guest survives
`poweroff` and --commit, and the host's e2fsprogs find the committed image clean.  A second boot from that image reads the file
back and drives the monitor from the script (savevm at the prompt, a command,
loadvm); `run --from` then brings the saved machine back in a new process.

Marked `network` (the guest comes from the shared test cache, built once by
test_guest_debian.py's fixture).  Each boot takes about 20-40 s.
"""
import os
import re
import subprocess
import sys
import time

import pytest

from test_guest_debian import PI_AWK, debian, xdg_cache  # noqa: F401 - fixtures

pytestmark = pytest.mark.network

from chronocmd import CHRONO
BOOT_TIMEOUT = 300
READY = "chrono-debian: shell ready"
MONITOR = "\x01c"
HOST_TOOLS = {"PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}


def wrapped(n: int, command: str) -> str:
    """A script line whose output is framed by markers the typed echo cannot match
    (the shell computes them: the echo shows `$((n))`, the output shows n)."""
    return f"echo @B$(({n}))@; {command}; echo @E$(({n}))@\n"


def framed(out: str, n: int) -> str:
    found = re.search(rf"@B{n}@\n(.*?)@E{n}@\n", out, re.S)
    assert found, f"no output framed @B{n}@..@E{n}@; the console ends with:\n{out[-3000:]}"
    return found.group(1)


def chrono_run(args, script: str, xdg_cache, cwd):
    proc = subprocess.run(CHRONO + ["run", *args], input=script.encode(), capture_output=True,
                          timeout=BOOT_TIMEOUT, cwd=cwd,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg_cache)})
    out = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    return proc, out, proc.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def committed_boot(debian, xdg_cache, tmp_path_factory):
    """One boot on a copy of the guest's disk: the script's output, the image."""
    work = tmp_path_factory.mktemp("debian-boot")
    disk = work / "disk.img"
    disk.write_bytes((debian.path / debian.manifest.disk).read_bytes())
    commands = [
        "uname -m",
        "cat /proc/cpuinfo",
        "mount",
        "date -u +%Y; date +%s",
        "cat /proc/uptime; sleep 1 && echo slept; cat /proc/uptime",
        PI_AWK,
        "echo written-in-the-guest > /mnt/proof.txt && sync && cat /mnt/proof.txt",
        "cat /sys/class/misc/hw_random/rng_current",
        "head -c 16 /dev/hwrng | od -x; head -c 16 /dev/hwrng | od -x",
    ]
    script = "".join(wrapped(i, c) for i, c in enumerate(commands, 1)) + "poweroff\n"
    before = time.time()
    proc, out, err = chrono_run(["debian", "--disk", str(disk), "--commit"], script,
                                xdg_cache, work)
    after = time.time()
    return {"proc": proc, "out": out, "err": err, "disk": disk, "before": before,
            "after": after, "pristine": debian.path / debian.manifest.disk}


def test_boots_to_the_shell_and_powers_off_with_status_0(committed_boot):
    proc, out, err = committed_boot["proc"], committed_boot["out"], committed_boot["err"]
    assert READY in out, (out[-3000:], err)
    assert proc.returncode == 0, (out[-3000:], err)
    assert "reboot: Power down" in out
    committed = re.search(r"committed (\d+) bytes of guest writes to", err)
    assert committed and int(committed.group(1)) > 0, err


def test_uname_cpuinfo_and_mount(committed_boot):
    out = committed_boot["out"]
    assert framed(out, 1).strip() == "riscv64"
    isa = re.search(r"^isa\s*:\s*(\S+)$", framed(out, 2), re.M)
    assert isa, framed(out, 2)
    base = isa.group(1).split("_")[0]
    assert base.startswith("rv64i") and {"m", "a", "f", "d", "c"} <= set(base[5:]), isa.group(1)
    assert re.search(r"^/dev/vda on /mnt type ext4 \(rw", framed(out, 3), re.M), framed(out, 3)


def test_wall_clock_is_the_hosts_and_sleep_advances_guest_time(committed_boot):
    out = committed_boot["out"]
    year, seconds = framed(out, 4).split()
    assert int(year) >= 2025
    # The RTC starts at the host's clock when chrono starts; the guest has run
    # a few seconds of virtual time since (idle time jumps, so allow slack).
    assert committed_boot["before"] - 5 <= int(seconds) <= committed_boot["after"] + 60, \
        (seconds, committed_boot["before"], committed_boot["after"])
    lines = framed(out, 5).split("\n")
    first, slept, second = lines[0], lines[1], lines[2]
    assert slept == "slept"
    # /proc/uptime has hundredths: compare them as integers (4.31 - 3.31 < 1.0 in floats).
    up0, up1 = (round(float(line.split()[0]) * 100) for line in (first, second))
    assert 100 <= up1 - up0 < 300, (first, second)


def test_busybox_awk_floating_point_machin_pi(committed_boot):
    assert framed(committed_boot["out"], 6).strip() == "3.141593"


def test_file_written_in_the_guest_is_committed_to_a_clean_image(committed_boot):
    out, disk = committed_boot["out"], committed_boot["disk"]
    assert framed(out, 7).strip() == "written-in-the-guest"
    fsck = subprocess.run(["e2fsck", "-fn", disk], capture_output=True, text=True, env=HOST_TOOLS)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    cat = subprocess.run(["debugfs", "-R", "cat /proof.txt", disk], capture_output=True,
                         text=True, env=HOST_TOOLS)
    assert cat.stdout == "written-in-the-guest\n", cat.stderr
    # The guest's cache copy is untouched (the run used a copy of it).
    pristine = subprocess.run(["debugfs", "-R", "cat /proof.txt", committed_boot["pristine"]],
                              capture_output=True, text=True, env=HOST_TOOLS)
    assert pristine.stdout == ""


def test_the_entropy_device_drives_dev_hwrng(committed_boot):
    """virtio_rng is loaded, is the kernel's current hardware RNG, and /dev/hwrng
    gives bytes (the host's: two reads differ)."""
    out = committed_boot["out"]
    assert framed(out, 8).strip() == "virtio_rng.0"
    dumps = framed(out, 9).strip().split("\n")
    assert len(dumps) == 4 and dumps[1].strip() == dumps[3].strip() == "0000020", dumps
    first, second = dumps[0].split(), dumps[2].split()
    for words in (first, second):
        assert words[0] == "0000000" and len(words) == 9, words
        assert all(re.fullmatch(r"[0-9a-f]{4}", w) for w in words[1:]), words
    assert first[1:] != second[1:]


@pytest.fixture(scope="module")
def snapshot_boot(committed_boot, xdg_cache, tmp_path_factory):
    """A second boot, from the committed image (without --commit), with savevm and
    loadvm at the monitor in the piped script."""
    work = tmp_path_factory.mktemp("debian-snap")
    disk, store = committed_boot["disk"], work / "store"
    image_before = disk.read_bytes()
    script = (wrapped(1, "cat /mnt/proof.txt")
              + MONITOR + "savevm booted\n" + MONITOR
              + wrapped(2, "echo after-save > /mnt/later.txt && sync && ls /mnt")
              + MONITOR + "loadvm booted\n" + MONITOR
              + wrapped(3, "ls /mnt; cat /mnt/proof.txt")
              + "poweroff\n")
    proc, out, err = chrono_run(["debian", "--disk", str(disk), "--store", str(store)], script,
                                xdg_cache, work)
    return {"proc": proc, "out": out, "err": err, "store": store, "work": work,
            "image_unchanged": disk.read_bytes() == image_before}


def test_second_boot_reads_the_committed_file_back(snapshot_boot):
    proc, out = snapshot_boot["proc"], snapshot_boot["out"]
    assert proc.returncode == 0, (out[-3000:], snapshot_boot["err"])
    assert framed(out, 1).strip() == "written-in-the-guest"
    assert "EXT4-fs error" not in out
    assert snapshot_boot["image_unchanged"]           # no --commit: the image is untouched


def test_piped_loadvm_after_a_shell_command_undoes_it(snapshot_boot):
    out = snapshot_boot["out"]
    assert re.search(r"saved booted \(", out), out[-3000:]
    assert "later.txt" in framed(out, 2).split()       # the command ran before loadvm
    assert re.search(r"restored booted at instruction [\d,]+", out), out[-3000:]
    listing = framed(out, 3).split()
    assert "proof.txt" in listing and "later.txt" not in listing, listing
    assert "written-in-the-guest" in listing


def test_run_from_snapshot_answers_at_once_in_a_new_process(snapshot_boot, xdg_cache):
    """Fast boot: the machine saved at the shell prompt, in a new process."""
    assert "saved booted" in snapshot_boot["out"], snapshot_boot["out"][-3000:]
    script = "echo @R$((40+2))@\ncat /mnt/proof.txt\npoweroff\n"
    start = time.monotonic()
    proc, out, err = chrono_run(["--from", "booted", "--store", str(snapshot_boot["store"])],
                                script, xdg_cache, snapshot_boot["work"])
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, (out[-3000:], err)
    note = re.search(r"restored booted in ([0-9.]+) ms", err)
    assert note, err
    assert "@R42@" in out and "written-in-the-guest" in out, out[-3000:]
    assert "EXT4-fs error" not in out
    assert "reboot: Power down" in out
    assert elapsed < 60, elapsed
