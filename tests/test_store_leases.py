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
