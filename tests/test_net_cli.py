"""`--net`: what a user types, and the one-line errors when the network cannot be
had (no libslirp, a busy host port, a snapshot without a network device).

These use the demo guest (it has no network driver: the device just sits
there), so they run in seconds; the Debian guest's network is in
test_net_debian.py.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from chrono.errors import UsageError
from chrono.net.config import Forward, NetConfig, parse_net
from chronocmd import CHRONO

MON = "\x01c"


def chrono(*args, script: str = "", env: dict | None = None, cwd=None, timeout: float = 60):
    proc = subprocess.run(CHRONO + [str(a) for a in args], input=script, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("chrono: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the option's syntax -------------------------------------------------------------

def test_net_values_in_qemus_syntax():
    assert parse_net("none") == NetConfig()
    assert parse_net("user") == NetConfig("user", ())
    assert parse_net("user,hostfwd=tcp:127.0.0.1:2222-:22") == NetConfig(
        "user", (Forward(False, "127.0.0.1", 2222, "10.0.2.15", 22),))
    both = parse_net("user,hostfwd=tcp::8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-:53")
    assert both.forwards == (Forward(False, "127.0.0.1", 8080, "10.0.2.15", 80),
                             Forward(True, "127.0.0.1", 5353, "10.0.2.15", 53))


@pytest.mark.parametrize("value, says", [
    ("tap", "unknown network 'tap'"),
    ("user,smb=/tmp", "unknown option 'smb=/tmp'"),
    ("user,hostfwd=tcp:127.0.0.1:2222", "is not [tcp|udp]:[HOSTADDR]:HOSTPORT-"),
    ("user,hostfwd=sctp:127.0.0.1:2222-:22", "is not [tcp|udp]"),
    ("user,hostfwd=tcp:127.0.0.1:99999-:22", "host port '99999' is not a port number"),
    ("user,hostfwd=tcp:localhost:2222-:22", "host address 'localhost' is not an IPv4 address"),
    ("user,hostfwd=tcp::2222-192.168.1.5:22", "is not on the guest's network 10.0.2.0/24"),
    ("user,hostfwd=tcp::2222-:22,hostfwd=tcp::2222-:23", "host port 2222 is forwarded twice"),
    ("none,hostfwd=tcp::2222-:22", "--net none takes no options"),
])
def test_bad_net_values_are_refused_with_what_is_wrong(value, says):
    with pytest.raises(UsageError) as e:
        parse_net(value)
    assert says in e.value.message, e.value.message
    proc = chrono("run", "--net", value)
    assert proc.returncode == 2 and says in error_line(proc)


# --- when the network cannot be had --------------------------------------------------

def test_a_missing_libslirp_is_one_line_saying_to_install_libslirp0():
    """CHRONO_LIBSLIRP names the library to dlopen; a name that does not exist
    takes the same path as a machine without libslirp0."""
    proc = chrono("run", "--net", "user", env={"CHRONO_LIBSLIRP": "libslirp-missing.so.0"})
    assert proc.returncode == 10, proc.stderr
    line = error_line(proc)
    assert "libslirp-missing.so.0 could not be loaded" in line
    assert "install Debian's libslirp0" in line
    assert proc.stdout == ""                    # said before the guest started


def test_a_busy_host_port_for_hostfwd_is_one_line_and_nothing_runs():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = chrono("run", "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:22")
    assert proc.returncode == 10, proc.stderr
    line = error_line(proc)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use by another program" in line
    assert proc.stdout == ""


def test_a_busy_port_when_recording_leaves_no_recording(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = chrono("record", "--store", tmp_path / "store", "--name", "r",
                      "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:22")
    assert proc.returncode == 10 and "in use by another program" in error_line(proc)
    listing = chrono("trace", "list", "--store", tmp_path / "store")
    assert "no recordings" in listing.stdout, listing.stdout + listing.stderr


def test_the_demo_guest_runs_with_a_network_and_its_forward_listens(tmp_path):
    """The device is there (the demo guest ignores it) and slirp listens on the
    forwarded port while the guest runs (the guest has nothing on that port)."""
    port = free_port()
    proc = subprocess.Popen(CHRONO + ["run", "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:80"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        proc.stdin.write("help\n")
        proc.stdin.flush()
        connected = False
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                connected = True
                break
            except OSError:
                time.sleep(0.1)
        assert connected
        proc.stdin.write("poweroff\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_from_a_snapshot_without_a_network_device_net_user_is_refused(tmp_path):
    store = tmp_path / "store"
    saved = chrono("run", "--store", store, script=f"{MON}savevm plain\n{MON}poweroff\n")
    assert saved.returncode == 0, saved.stderr
    proc = chrono("run", "--store", store, "--from", "plain", "--net", "user")
    assert proc.returncode == 2
    assert "was taken on a machine without a network device" in error_line(proc)


def test_replay_takes_net_only_to_go_live(tmp_path):
    proc = chrono("replay", "whatever", "--net", "user", cwd=tmp_path)
    assert proc.returncode == 2 and "--net is for --live" in error_line(proc)
