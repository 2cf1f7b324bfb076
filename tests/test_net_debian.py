"""The Debian guest on `--net user`: DHCP, a download from the host, a server in
the guest reached through hostfwd, and a snapshot of the networked guest
brought back in a new process.

One chrono session (stdin kept open, so the guest waits at its prompt while
the host connects to it): the guest takes its lease at boot, fetches a file
of random bytes from a `python3 -m http.server` on the host's 127.0.0.1
through 10.0.2.2 and prints its SHA-256, runs busybox httpd on port 7777,
which the host reaches on a forwarded port, and is saved with savevm; a
loadvm of it at the monitor gives the guest a fresh network (said once), on
which it downloads again.  Then `chrono run --from` that snapshot, with a
fresh network too, downloads again in a new process.

Marked `network` (the guest comes from the shared test cache, as in
test_debian_boot.py).
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.request

import pytest

from nethelp import HttpServer, LiveChrono, free_port
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures

pytestmark = pytest.mark.network

READY = "chrono-debian: shell ready"
BLOB = 3 << 20
GUEST_PORT = 7777
PAGE = "hello from the guest's httpd\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("www")
    data = os.urandom(BLOB)
    (folder / "blob").write_bytes(data)
    server = HttpServer(folder)
    yield server, hashlib.sha256(data).hexdigest()
    server.stop()


@pytest.fixture(scope="module")
def session(debian, xdg_cache, site, tmp_path_factory):
    """The guest's answers, and the host's view of its forwarded port."""
    server, _ = site
    work = tmp_path_factory.mktemp("net-session")
    host_port = free_port()
    chrono = LiveChrono(["run", "debian", "--net",
                         f"user,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_PORT}",
                         "--store", work / "store"], cwd=work,
                        env={"XDG_CACHE_HOME": str(xdg_cache)})
    try:
        chrono.wait_for(READY)
        result = {
            "boot": chrono.out,
            "ifconfig": chrono.command("ifconfig eth0"),
            "route": chrono.command("route -n"),
            "resolv": chrono.command("cat /etc/resolv.conf"),
            "download": chrono.command(
                f"wget -q -O /tmp/blob http://10.0.2.2:{server.port}/blob && sha256sum /tmp/blob"),
        }
        chrono.command(f"mkdir -p /www && printf \"{PAGE.strip()}\\n\" > /www/index.html && "
                       f"httpd -p {GUEST_PORT} -h /www && echo serving")
        with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/index.html", timeout=60) as r:
            result["fetched"] = r.read().decode()
        chrono.save_change_load("networked", "rm /tmp/blob")
        result["reloaded"] = chrono.command(
            f"wget -q -O /tmp/blob2 http://10.0.2.2:{server.port}/blob && sha256sum /tmp/blob2 "
            f"&& ls /tmp/blob")
        result["status"] = chrono.finish()
        result["stderr"] = chrono.err
    finally:
        chrono.kill()
    result["work"] = work
    return result


def test_the_guest_takes_10_0_2_15_by_dhcp_with_qemus_gateway_and_dns(session):
    assert "lease of 10.0.2.15 obtained from 10.0.2.2" in session["boot"]
    assert re.search(r"inet addr:10\.0\.2\.15\s+Bcast:10\.0\.2\.255\s+Mask:255\.255\.255\.0",
                     session["ifconfig"]), session["ifconfig"]
    assert "HWaddr 52:54:00:12:34:56" in session["ifconfig"]
    assert re.search(r"^0\.0\.0\.0\s+10\.0\.2\.2\s+0\.0\.0\.0\s+UG", session["route"], re.M), \
        session["route"]
    assert session["resolv"].strip() == "nameserver 10.0.2.3"


def test_a_file_from_the_hosts_http_server_arrives_intact(session, site):
    _, digest = site
    assert session["download"].split() == [digest, "/tmp/blob"], session["download"]


def test_hostfwd_reaches_a_server_in_the_guest(session):
    assert session["fetched"] == PAGE


def test_the_session_ends_cleanly(session):
    assert session["status"] == 0, session["stderr"]


def test_after_loadvm_the_guest_has_a_fresh_network_and_downloads_again(session, site):
    """The restored guest has its /tmp/blob back (RAM and devices came back
    together) and a new slirp, said once."""
    _, digest = site
    lines = session["reloaded"].split("\n")
    assert lines[0].split() == [digest, "/tmp/blob2"], session["reloaded"]
    assert lines[1] == "/tmp/blob", session["reloaded"]
    assert session["stderr"].count("the network is new: connections open before this point "
                                   "are gone") == 1, session["stderr"]


def test_a_snapshot_of_the_networked_guest_runs_on_with_a_fresh_network(session, site, xdg_cache):
    """run --from in a new process: the device state comes back, slirp is new
    (said once), and the guest downloads again."""
    server, digest = site
    chrono = LiveChrono(["run", "--from", "networked", "--net", "user", "--store",
                         session["work"] / "store"], cwd=session["work"],
                        env={"XDG_CACHE_HOME": str(xdg_cache)})
    try:
        chrono.type("\n")
        out = chrono.command(f"rm /tmp/blob; wget -q -O /tmp/blob "
                             f"http://10.0.2.2:{server.port}/blob && sha256sum /tmp/blob")
        assert chrono.finish() == 0, chrono.err
    finally:
        chrono.kill()
    assert out.split() == [digest, "/tmp/blob"], out
    assert chrono.err.count("the network is new: connections open before this point are gone") == 1
