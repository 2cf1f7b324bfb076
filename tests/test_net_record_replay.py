"""A recorded download replays bit for bit with no network at all.

`chrono record debian --net user` while the guest fetches a file of random
bytes from the host's `python3 -m http.server` and prints its SHA-256; then
the server is stopped and the recording replays (every frame the guest
received comes from the log, every frame it sends is checked against the
log's hashes), also after `chrono export` and `chrono import` into a fresh
store.  A log whose record of one sent frame is changed, or one received
frame, makes the replay fail naming the network frame or the state.  Going
live from the recording (at a savevm made at the prompt, before the download)
with --net user gives the guest a fresh network, said once, and it downloads
again from a new server.

Marked `network` (the guest comes from the shared test cache).
"""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from chrono.replay.events import NET_RX, NET_TX, Event, decode_events, encode_events, pack_chunk
from chrono.replay.events import chunk_base, unpack_chunk
from chrono.store import Store
from chrono.store.traces import read_trace
from nethelp import HttpServer
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures
from tracehelp import DIVERGED, MON, chrono

pytestmark = pytest.mark.network

BLOB = 2 << 20
RESTARTED = "the network is new: connections open before this point are gone"


@pytest.fixture(scope="module")
def recorded(debian, xdg_cache, tmp_path_factory):
    work = tmp_path_factory.mktemp("net-record")
    (work / "www").mkdir()
    data = os.urandom(BLOB)
    (work / "www" / "blob").write_bytes(data)
    server = HttpServer(work / "www")
    try:
        # The savevm runs once the guest settled at its prompt: a keyframe there.
        script = (f"{MON}savevm prompt\n{MON}"
                  f"wget -q -O /tmp/blob http://10.0.2.2:{server.port}/blob && "
                  f"sha256sum /tmp/blob\npoweroff\n")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("XDG_CACHE_HOME", str(xdg_cache))     # the test cache's guest
            proc = chrono(work, "record", "debian", "--net", "user", "--name", "dl",
                          "--store", work / "store", script=script, timeout=600)
    finally:
        server.stop()
    assert not server.running
    return {"work": work, "proc": proc, "digest": hashlib.sha256(data).hexdigest()}


def test_the_recording_saw_the_download_and_logged_its_frames(recorded):
    proc = recorded["proc"]
    assert proc.returncode == 0, proc.stderr
    assert f"{recorded['digest']}  /tmp/blob" in proc.stdout
    frames = int(proc.stderr.split(" network frames")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert frames > BLOB // 1514, proc.stderr          # at least one frame per segment


def test_it_replays_bit_for_bit_with_the_server_gone(recorded):
    proc = chrono(recorded["work"], "replay", "dl", "--store", recorded["work"] / "store",
                  timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "replay of dl matched the recording" in proc.stderr
    assert f"{recorded['digest']}  /tmp/blob" in proc.stdout


def test_it_replays_from_a_bundle_imported_into_a_fresh_store(recorded, tmp_path):
    """... where libslirp cannot even be loaded: a replay never opens a network."""
    work = recorded["work"]
    bundle = tmp_path / "dl.chrono"
    proc = chrono(work, "export", "dl", "-o", bundle, "--store", work / "store")
    assert proc.returncode == 0, proc.stderr
    fresh = tmp_path / "fresh"
    proc = chrono(tmp_path, "import", bundle, "--store", fresh)
    assert proc.returncode == 0, proc.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHRONO_LIBSLIRP", "libslirp-missing.so.0")   # no network to be had at all
        proc = chrono(tmp_path, "replay", "dl", "--store", fresh, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "replay of dl matched the recording" in proc.stderr
    assert f"{recorded['digest']}  /tmp/blob" in proc.stdout


def test_going_live_from_the_recording_gives_a_fresh_network(recorded, tmp_path):
    work = recorded["work"]
    store = tmp_path / "store"
    shutil.copytree(work / "store", store)
    with Store(store, readonly=True) as s, s.reader() as r:
        prompt = r.resolve("prompt")
        manifest = read_trace(r, "dl")
    position = next(k.position for k in manifest.keyframes if k.snapshot == prompt)
    data = os.urandom(BLOB // 2)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "again").write_bytes(data)
    server = HttpServer(tmp_path / "www")
    try:
        proc = chrono(tmp_path, "replay", "dl", "--store", store, "--to", position, "--live",
                      "--net", "user", "--name", "online", timeout=600,
                      script=f"wget -q -O /tmp/again http://10.0.2.2:{server.port}/again && "
                             f"sha256sum /tmp/again\npoweroff\n")
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stderr
    assert f"{hashlib.sha256(data).hexdigest()}  /tmp/again" in proc.stdout
    assert proc.stderr.count(RESTARTED) == 1, proc.stderr


def _alter(store_path, kind: int, index: int, change) -> int:
    """Change the data of the index-th event of `kind` in recording dl; its position."""
    with Store(store_path) as store, store.writer() as w:
        manifest = read_trace(w, "dl")
        seen = 0
        for key, value in w.chunks(manifest.id_bytes):
            base, _ = chunk_base(key)
            events = decode_events(unpack_chunk(value), base)
            for i, e in enumerate(events):
                if e.kind != kind:
                    continue
                if seen == index:
                    events[i] = Event(e.position, kind, change(e.data))
                    w.put_chunk(key, pack_chunk(encode_events(events, base)))
                    return e.position
                seen += 1
    raise AssertionError(f"recording dl has fewer than {index + 1} events of kind {kind}")


def test_a_sent_frame_that_differs_from_the_log_is_a_divergence_naming_it(recorded, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(recorded["work"] / "store", store)
    position = _alter(store, NET_TX, 20, lambda data: data[:4] + bytes(8))
    proc = chrono(tmp_path, "replay", "dl", "--store", store, "-q", timeout=600)
    assert proc.returncode == 9, proc.stderr
    found = DIVERGED.search(proc.stderr)
    assert found, proc.stderr
    assert "where the recording saw it send one of" in found.group(3)
    assert f"at instruction {position} (same length, other content)" in found.group(3)


def test_a_received_frame_that_differs_from_the_log_is_a_divergence(recorded, tmp_path):
    """One byte of the payload of a data segment changes: the guest trusts the
    checksum (the device says slirp's are right), so the file it writes, and
    the SHA-256 it prints, are not the recording's."""
    store = tmp_path / "store"
    shutil.copytree(recorded["work"] / "store", store)
    _alter(store, NET_RX, 40, lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]))
    proc = chrono(tmp_path, "replay", "dl", "--store", store, "-q", timeout=600)
    assert proc.returncode == 9, proc.stderr
    assert DIVERGED.search(proc.stderr), proc.stderr
