"""Leases: a running guest's baseline snapshot survives gc even without a
name; the leases of processes that are gone do not keep anything."""
import socket

import storehelp
from chrono.store.gc import gc
from chrono.store.store import Store, lease_holder


def one_snapshot(store: Store) -> str:
    """A snapshot with no name left (its pages would be garbage)."""
    sid, _ = storehelp.save(store, {1: storehelp.page(1), 7: storehelp.page(7)}, name="tmp")
    store.delete_ref("tmp")
    return sid


def test_a_live_lease_keeps_a_nameless_snapshot(tmp_path):
    with Store(tmp_path / "s", create=True) as store:
        sid = one_snapshot(store)
        with store.writer() as w:
            w.set_lease(lease_holder("guest"), sid)
        report = gc(store)
        assert report.snapshots_removed == 0
        assert store.get_snapshot(sid).id == sid
        assert store.refs() == {}                       # leases are not names


def test_gc_drops_the_leases_of_dead_processes(tmp_path):
    with Store(tmp_path / "s", create=True) as store:
        sid = one_snapshot(store)
        with store.writer() as w:
            w.set_lease(f"{socket.gethostname()}/999999999/guest", sid)
        report = gc(store)
        assert report.snapshots_removed == 1
        with store.reader() as r:
            assert r.refs(leases=True) == {}


# ---- the leases of `chrono run --from` and `chrono record` end with them ----------------

import os
import signal
import subprocess
import time

import pytest

from chronocmd import CHRONO


def _chrono(store, *args, stdin=b""):
    return subprocess.run(CHRONO + list(args), input=stdin, capture_output=True, timeout=120,
                          env={**os.environ, "CHRONO_STORE": str(store)})


@pytest.fixture
def saved(tmp_path):
    store = tmp_path / "store"
    done = _chrono(store, "run", stdin=b"write a x\n\x01csavevm s1\n\x01cpoweroff\n")
    assert done.returncode == 0, done.stderr
    return store


def _leases(store):
    with Store(store, readonly=True) as s, s.reader() as r:
        return [n for n in r.refs(leases=True) if n.startswith("lease/")]


@pytest.mark.parametrize("args", [("run", "--from", "s1"),
                                  ("run", "--from", "s1", "--max-insns", "1000"),
                                  ("record", "--from", "s1", "--name", "r1")],
                         ids=["run-input-ends", "run-max-insns", "record"])
def test_a_guest_releases_its_lease_when_it_ends(saved, args):
    done = _chrono(saved, *args, stdin=b"ls\n")
    assert done.returncode in (0, 124), done.stderr
    assert _leases(saved) == []
    verified = _chrono(saved, "store", "verify")
    assert b", 1 name," in verified.stdout, verified.stdout


def test_sigterm_releases_the_lease(saved):
    proc = subprocess.Popen(CHRONO + ["run", "--from", "s1"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "CHRONO_STORE": str(saved)})
    try:
        deadline = time.monotonic() + 60
        while not _leases(saved) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _leases(saved), "the guest never took its lease"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.stderr.close()
    assert _leases(saved) == []


def test_verify_does_not_count_leases_as_names(tmp_path):
    with Store(tmp_path / "s", create=True) as store:
        sid, _ = storehelp.save(store, {1: storehelp.page(1)}, name="kept")
        with store.writer() as w:
            w.set_lease(lease_holder("guest"), sid)
    done = _chrono(tmp_path / "s", "store", "verify")
    assert done.returncode == 0, done.stderr
    assert b", 1 name," in done.stdout, done.stdout
