"""A port or address that cannot be listened on is one line naming it and what
to do, for every command that listens for gdb (`chrono debug --port`,
`chrono run --gdb`), never an OSError traceback."""
from __future__ import annotations

import socket

import pytest

from tracehelp import chrono, record_demo


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("ports")
    record_demo(work, "g", "poweroff\n", 1 << 20)
    return work


@pytest.fixture
def taken():
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chrono: error: "), proc.stderr
    return lines[0]


def test_debug_on_a_busy_port(work, taken):
    proc = chrono(work, "debug", "--store", work / "store", "g", "--port", taken)
    assert one_line_error(proc) == (f"chrono: error: port {taken} on 127.0.0.1 is in use; choose "
                                    f"another with --port (--port 0 picks a free one)")


def test_run_gdb_on_a_busy_port(work, taken):
    proc = chrono(work, "run", "--gdb", taken, script="poweroff\n")
    assert f"port {taken} on 127.0.0.1 is in use; choose another with --gdb" in one_line_error(proc)
    assert "Powering off" not in proc.stdout                  # refused before the guest started


def test_debug_on_an_address_that_is_not_this_machines(work):
    proc = chrono(work, "debug", "--store", work / "store", "g", "--port", 0, "--host", "10.9.9.9")
    assert "cannot listen on 10.9.9.9: it is not an address of this machine" in one_line_error(proc)


def test_debug_on_a_host_name_that_does_not_resolve(work):
    proc = chrono(work, "debug", "--store", work / "store", "g", "--port", 0,
                  "--host", "no-such-host.invalid")
    assert "cannot listen on 'no-such-host.invalid'" in one_line_error(proc)
