"""Trace bundles: `chrono export`, `chrono import`, `chrono replay FILE`, trimming,
`chrono trace verify`, and bundles that are damaged or hostile.

A bundle made in one process is imported and replayed in another (a real
subprocess, a fresh store) and must reproduce the recorded console output.
Bad bundles get one line, exit status 7 (2 for a bad --name), no traceback,
and leave every database of the store exactly as it was.  A mutation test
feeds thousands of damaged bundles to import_bundle in-process.

The helpers below read and write the bundle format from its description
(docs/bundle.md), independently of chrono.replay.bundle.
"""
import copy
import hashlib
import json
import random
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from click.testing import CliRunner

from chrono.cli import main
from chrono.errors import BundleError, DivergenceError
from chrono.store.capture import core_state_size
from chrono.store.store import Store
from chrono.store.traces import TraceManifest, read_trace
from chrono.replay import bundle as bundle_module
from chrono.replay.bundle import export_bundle, import_bundle
from chrono.replay.catalog import remove_trace
from chrono.replay.events import LOAD
from chrono.replay.replay import Replayer, trace_events
from chrono.replay.verify import verify_traces

from chronocmd import CHRONO
SESSION = b"write a hello\nsync\nbench 1\nls\npoweroff\n"
MON = b"\x01c"               # Ctrl-A c: to the monitor and back (see test_monitor.py)
LOADING = (b"write a one\n" + MON + b"savevm s1\n" + MON + b"write b two\n" + MON
           + b"loadvm s1\n" + MON + b"ls\npoweroff\n")
KEYFRAME_INTERVAL = 2_000_000


# ---- the format, from its description -------------------------------------------

MAGIC = b"CHRONO-TRACE\n"
KEY_SIZES = {b"TRCE": 0, b"CHNK": 28, b"SNAP": 32, b"BLOB": 32}


@dataclass
class Parsed:
    version: int
    header: dict
    sections: dict          # tag -> [(key, value)]
    fields: list            # (offset, struct format) of every length and count field
    section_at: dict        # tag -> offset of its section header


def parse(data: bytes) -> Parsed:
    version = struct.unpack_from("<H", data, 13)[0]
    (hlen,) = struct.unpack_from("<I", data, 15)
    fields = [(15, "<I")]
    header = json.loads(data[19:19 + hlen])
    at = 19 + hlen
    sections, section_at = {}, {}
    for tag, keysize in KEY_SIZES.items():
        section_at[tag] = at
        got, count, length = struct.unpack_from("<4sQQ", data, at)
        assert got == tag
        fields += [(at + 4, "<Q"), (at + 12, "<Q")]
        at += 20
        records = []
        for _ in range(count):
            key = data[at:at + keysize]
            (vlen,) = struct.unpack_from("<I", data, at + keysize)
            fields.append((at + keysize, "<I"))
            at += keysize + 4
            records.append((key, data[at:at + vlen]))
            at += vlen
        sections[tag] = records
    assert data[at:at + 4] == b"END." and at + 36 == len(data)
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    return Parsed(version, header, sections, fields, section_at)


def build(p: Parsed, fix_header: bool = True) -> bytes:
    """A bundle from parts, with a fresh checksum (and, unless told not to, the
    header's counts and sizes brought up to date)."""
    header = json.loads(json.dumps(p.header))
    body = b""
    for tag, records in p.sections.items():
        payload = b"".join(k + struct.pack("<I", len(v)) + v for k, v in records)
        body += struct.pack("<4sQQ", tag, len(records), len(payload)) + payload
        if fix_header:
            name = {b"TRCE": "trace", b"CHNK": "chunks", b"SNAP": "snapshots", b"BLOB": "blobs"}[tag]
            header["sizes"][name] = len(payload)
            if tag != b"TRCE":
                header["counts"][name] = len(records)
    if fix_header:
        m = TraceManifest.parse(p.sections[b"TRCE"][0][1])
        header["trace"] = m.name
    while True:
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        data = MAGIC + struct.pack("<H", p.version) + struct.pack("<I", len(text)) + text + body + b"END."
        if not fix_header or header["sizes"]["bundle"] == len(data) + 32:
            return resum(data + bytes(32))
        header["sizes"]["bundle"] = len(data) + 32


def resum(data: bytes) -> bytes:
    """`data` with its last 32 bytes replaced by the checksum of the rest."""
    return data[:-32] + hashlib.sha256(data[:-32]).digest()


# ---- fixtures ----------------------------------------------------------------------

@dataclass
class Recorded:
    store: Path
    bundle: Path
    output: bytes               # the guest's console output, as recorded
    manifest: TraceManifest


def record(root: Path, name: str, session: bytes, *options) -> Recorded:
    store = root / "store"
    proc = subprocess.run(CHRONO + ["record", "--name", name, "--store", str(store), *options],
                          input=session, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    bundle = root / f"{name}.chrono"
    exported = chrono("export", name, "-o", bundle, "--store", store)
    assert exported.returncode == 0, exported.stderr
    with Store(store, readonly=True) as s, s.reader() as r:
        manifest = read_trace(r, name)
    return Recorded(store, bundle, proc.stdout, manifest)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo guest: a file written, a benchmark, several keyframes."""
    return record(tmp_path_factory.mktemp("demo"), "demo", SESSION,
                  "--keyframe-interval", str(KEYFRAME_INTERVAL))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small recording that loads a snapshot: write, savevm, write, loadvm, power
    off (three keyframes, a load, a few dozen blobs)."""
    return record(tmp_path_factory.mktemp("tiny"), "tiny", LOADING)


def chrono(*args, cwd=None, binary=False):
    proc = subprocess.run(CHRONO + [str(a) for a in args], capture_output=True, timeout=120,
                          cwd=cwd, text=not binary)
    err = proc.stderr.decode(errors="replace") if binary else proc.stderr
    out = proc.stdout.decode(errors="replace") if binary else proc.stdout
    assert "Traceback" not in err + out, err
    return proc


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("chrono: error: ")]
    assert len(lines) == 1 and len(stderr.strip().splitlines()) == 1, stderr
    return lines[0]


DATABASES = ("meta", "blobs", "snapshots", "refs", "traces", "events")


def keys(path: Path) -> dict:
    """Every key of every database of the store at `path`."""
    with Store(path, readonly=True) as s, s.reader() as r:
        return {name: {bytes(k) for k in r._txn.cursor(db=getattr(s, "_" + name)).iternext(values=False)}
                for name in DATABASES}


def entries(store: Store) -> dict:
    with store.reader() as r:
        return {name: r._txn.stat(getattr(store, "_" + name))["entries"] for name in DATABASES}


# ---- export, import, replay ---------------------------------------------------------

def test_bundle_imported_in_another_process_replays_the_recorded_console_output(demo, tmp_path):
    store = tmp_path / "elsewhere"
    imported = chrono("import", demo.bundle, "--store", store)
    assert imported.returncode == 0, imported.stderr
    assert "imported recording demo" in imported.stdout
    replayed = chrono("replay", "demo", "--store", store, binary=True)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == demo.output
    assert b"hello" in demo.output and b"Powering off" in demo.output
    assert b"console output identical" in replayed.stderr
    verified = chrono("trace", "verify", "--store", store)
    assert verified.returncode == 0 and "recording demo is sound" in verified.stdout


def test_a_format_1_bundle_of_an_older_chrono_still_imports_and_replays(demo, tmp_path):
    """Before the LZ4 codec, bundles were format 1 with zstd blobs: one made
    that way (every LZ4 blob re-encoded as the older chrono wrote it) imports
    and replays exactly."""
    def as_format_1(b):
        b.version, b.header["format"] = 1, 1
        for i, (key, value) in enumerate(b.sections[b"BLOB"]):
            if value[0] == 2:
                content = fuzz.blob_content(value)
                frame = zstandard.ZstdCompressor(level=-1, write_content_size=True).compress(content)
                b.sections[b"BLOB"][i] = (key, b"\x01" + frame)
    old = tmp_path / "old.chrono"
    old.write_bytes(rehashed(demo.bundle.read_bytes(), as_format_1))
    p = parse(old.read_bytes())
    assert p.version == 1 and any(v[0] == 1 for _, v in p.sections[b"BLOB"])
    assert not any(v[0] == 2 for _, v in p.sections[b"BLOB"])
    store = tmp_path / "store"
    imported = chrono("import", old, "--store", store)
    assert imported.returncode == 0, imported.stderr
    replayed = chrono("replay", "demo", "--store", store)
    assert replayed.returncode == 0, replayed.stderr
    assert "console output identical" in replayed.stderr


def test_the_bundle_describes_itself_and_holds_what_the_recording_needs(demo):
    p = parse(demo.bundle.read_bytes())
    m = demo.manifest
    assert p.version == 2
    h = p.header
    assert h["format"] == 2
    assert (h["trace"], h["positions"], h["counts"]["keyframes"]) == (
        "demo", {"start": 0, "end": m.end_position}, len(m.keyframes))
    assert h["machine"] == m.config and h["isa"] == m.config["isa"]
    assert h["core"]["state_size"] == m.config["state_size"] and h["core"]["state_version"] >= 1
    assert h["sizes"]["bundle"] == demo.bundle.stat().st_size
    assert {k.hex() for k, _ in p.sections[b"SNAP"]} == m.snapshot_ids()
    assert len(p.sections[b"CHNK"]) == m.chunks
    assert TraceManifest.parse(p.sections[b"TRCE"][0][1]).encode() == m.encode()


def test_replay_takes_a_bundle_file_directly_and_leaves_no_store_behind(demo, tmp_path):
    replayed = chrono("replay", demo.bundle, cwd=tmp_path, binary=True)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == demo.output
    assert not (tmp_path / ".chrono").exists()


def test_replay_of_a_bundle_to_a_position_can_be_repeated(tiny, tmp_path):
    store = tmp_path / "store"
    for _ in range(2):
        proc = chrono("replay", tiny.bundle, "--to", 1000, "--store", store)
        assert proc.returncode == 0, proc.stderr
        assert "saved snapshot tiny@1000" in proc.stderr
    again = chrono("import", tiny.bundle, "--store", store)
    assert again.returncode == 0 and "already" in again.stdout


def test_import_under_a_taken_name_asks_for_another_name(demo, tiny, tmp_path):
    store = tmp_path / "store"
    assert chrono("import", demo.bundle, "--store", store).returncode == 0
    before = keys(store)
    clash = chrono("import", tiny.bundle, "--name", "demo", "--store", store)
    assert clash.returncode == 2
    assert "--name" in one_error_line(clash.stderr)
    assert keys(store) == before
    renamed = chrono("import", demo.bundle, "--name", "demo-2", "--store", store)
    assert renamed.returncode == 0, renamed.stderr
    with Store(store, readonly=True) as s, s.reader() as r:
        first, second = read_trace(r, "demo"), read_trace(r, "demo-2")
    assert first.id != second.id        # the second copy's chunks got a fresh id
    assert all(r.ok for r in verify_traces(Store(store, readonly=True)))


# ---- trimming ---------------------------------------------------------------------

def trimmed(demo, tmp_path, *window) -> tuple[Path, TraceManifest, Parsed]:
    path = tmp_path / "window.chrono"
    proc = chrono("export", "demo", "-o", path, "--store", demo.store, *window)
    assert proc.returncode == 0, proc.stderr
    p = parse(path.read_bytes())
    return path, TraceManifest.parse(p.sections[b"TRCE"][0][1]), p


def test_trimmed_bundle_starts_at_the_keyframe_before_from_and_replays_to_the_end(demo, tmp_path):
    start = demo.manifest.keyframes[3].position + 12345
    path, m, p = trimmed(demo, tmp_path, "--from", start)
    assert m.start_position == demo.manifest.keyframes[3].position
    assert [k.snapshot for k in m.keyframes[:-1]] == \
        [k.snapshot for k in demo.manifest.keyframes[3:-1]]
    assert m.end_position == demo.manifest.end_position and m.complete
    assert m.origin == {"trace": "demo", "from": start, "to": demo.manifest.end_position}
    assert path.stat().st_size < demo.bundle.stat().st_size
    assert len(p.sections[b"SNAP"]) == len(m.keyframes)
    replayed = chrono("replay", path, binary=True)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout and demo.output.endswith(replayed.stdout)
    assert replayed.stdout != demo.output
    assert re.search(rf"\b{len(m.keyframes) - 1} keyframes? and".encode(), replayed.stderr)


def test_trimmed_bundle_ends_at_to_with_a_keyframe_and_the_windows_output(demo, tmp_path):
    end = demo.manifest.keyframes[2].position + 777
    path, m, _ = trimmed(demo, tmp_path, "--to", end)
    assert (m.start_position, m.end_position) == (0, end)
    assert m.keyframes[-1].position == end and len(m.keyframes) == 4
    replayed = chrono("replay", path, binary=True)
    assert replayed.returncode == 0, replayed.stderr
    assert demo.output.startswith(replayed.stdout) and len(replayed.stdout) == m.output_bytes
    assert b"hello" in replayed.stdout and b"Powering off" not in replayed.stdout


def test_replay_of_a_trimmed_bundle_checks_its_end(demo, tmp_path):
    """The window's end keyframe and output hash are checked: change the hash
    and the replay diverges."""
    store = Store(tmp_path / "store", create=True)
    window = tmp_path / "w.chrono"
    with Store(demo.store) as source:
        info = export_bundle(source, "demo", window, start=KEYFRAME_INTERVAL + 1,
                             end=3 * KEYFRAME_INTERVAL + 5)
    assert info.start == KEYFRAME_INTERVAL and info.origin["to"] == 3 * KEYFRAME_INTERVAL + 5
    m = import_bundle(store, window, name="w")
    replayer = Replayer(store, "w")
    try:
        report = replayer.replay()
    finally:
        replayer.close()
    assert report.keyframes == len(m.keyframes) - 1 and report.output_matches
    m.output_sha256 = hashlib.sha256(b"something else").hexdigest()
    with store.writer() as w:
        w.put_trace("w", m.encode())
    replayer = Replayer(store, "w")
    try:
        with pytest.raises(DivergenceError, match="console output differs"):
            replayer.replay()
    finally:
        replayer.close()
        store.close()


def test_export_outside_the_recording_is_refused(demo, tmp_path):
    proc = chrono("export", "demo", "-o", tmp_path / "x.chrono", "--to",
                  demo.manifest.end_position + 1, "--store", demo.store)
    assert proc.returncode == 2 and "not a window" in one_error_line(proc.stderr)
    assert not list(tmp_path.iterdir())


def test_a_recording_that_loads_a_snapshot_replays_whole_and_trimmed_around_the_load(tiny, tmp_path):
    m = tiny.manifest
    assert len(m.loads) == 1
    with Store(tiny.store, readonly=True) as source:
        load_at = next(e.position for e in trace_events(source, m) if e.kind == LOAD)
    windows = {"whole": (None, None), "across the load": (load_at - 1, load_at + 1000),
               "from the last keyframe": (m.keyframes[-1].position, None)}
    with Store(tiny.store) as source, Store(tmp_path / "store", create=True) as store:
        for name, (start, end) in windows.items():
            path = tmp_path / f"{name}.chrono"
            export_bundle(source, "tiny", path, start, end)
            t = import_bundle(store, path, name=name)
            sids = {k.hex() for k, _ in parse(path.read_bytes()).sections[b"SNAP"]}
            assert sids == t.snapshot_ids()
            assert t.loads == ([] if name == "from the last keyframe" else m.loads), name
            replayer = Replayer(store, name)
            try:
                report = replayer.replay()
            finally:
                replayer.close()
            assert report.output_matches and report.end == t.end_position
            assert report.inputs >= (1 if t.loads else 0)


# ---- export writes whole files or nothing -----------------------------------------

def test_export_that_fails_midway_leaves_the_old_file_and_no_temporary(tiny, tmp_path, monkeypatch):
    target = tmp_path / "tiny.chrono"
    target.write_bytes(b"the old bundle")
    calls = []

    def failing_write(self, data):
        calls.append(len(data))
        if len(calls) == 10:
            raise OSError(28, "No space left on device")
        self.file.write(data)

    monkeypatch.setattr(bundle_module._AtomicFile, "write", failing_write)
    with Store(tiny.store, readonly=True) as store:
        with pytest.raises(Exception) as raised:
            export_bundle(store, "tiny", target)
    assert "No space left" in raised.value.message and "nothing was written" in raised.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.chrono"]
    assert target.read_bytes() == b"the old bundle"


def test_export_to_a_directory_or_a_missing_one_is_one_line(tiny, tmp_path):
    for where in (tmp_path, tmp_path / "no" / "such" / "x.chrono"):
        proc = chrono("export", "tiny", "-o", where, "--store", tiny.store)
        assert proc.returncode == 2
        assert "cannot write bundle" in one_error_line(proc.stderr)
    assert list(tmp_path.iterdir()) == []


# ---- bad bundles, the way a user meets them ----------------------------------------

def with_manifest(data: bytes, **changes) -> bytes:
    p = parse(data)
    m = TraceManifest.parse(p.sections[b"TRCE"][0][1])
    for field, value in changes.items():
        setattr(m, field, value)
    p.sections[b"TRCE"] = [(b"", m.encode())]
    return build(p)


def zstd_bomb(data: bytes, size: int = 64 << 20) -> tuple[bytes, bytes]:
    """The bundle with its last page blob replaced by a zstd frame of `size` zero
    bytes (header and checksum left consistent: only the blob check can refuse it)."""
    p = parse(data)
    key, _ = p.sections[b"BLOB"][-1]
    frame = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(bytes(size))
    p.sections[b"BLOB"][-1] = (key, b"\x01" + frame)
    return build(p), key


def absurd_count(data: bytes) -> bytes:
    at = parse(data).section_at[b"BLOB"] + 4
    return resum(data[:at] + struct.pack("<Q", 1 << 60) + data[at + 8:])


def absurd_value_length(data: bytes) -> bytes:
    p = parse(data)
    offset, fmt = p.fields[-1]              # the last blob's value length
    return resum(data[:offset] + struct.pack(fmt, 0xFFFFFFF0) + data[offset + 4:])


BAD = {
    "truncated": (lambda d: d[:len(d) // 2], "truncated"),
    "cut inside its checksum": (lambda d: d[:-20], "bytes its header declares"),
    "bit-flipped": (lambda d: d[:len(d) // 3] + bytes([d[len(d) // 3] ^ 4]) + d[len(d) // 3 + 1:],
                    "checksum does not match"),
    "of a newer format": (lambda d: d[:13] + struct.pack("<H", 3) + d[15:], "format 3"),
    "not a bundle": (lambda d: b"PK\x03\x04" + d[4:], "not a chrono trace bundle"),
    "absurd record count": (absurd_count, "claims 1152921504606846976 records"),
    "absurd value length": (absurd_value_length, "claims 4294967280 bytes"),
    "a zstd bomb": (lambda d: zstd_bomb(d)[0], "claims 67108864 bytes where a page has 4096"),
    "named with a path": (lambda d: with_manifest(d, name="../x"), "contains '/'"),
    "named a/b": (lambda d: with_manifest(d, name="a/b"), "contains '/'"),
    "named with a control character": (lambda d: with_manifest(d, name="x\x1b[2J"), "control"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_bundle_is_one_line_exit_7_and_changes_nothing(tiny, demo, tmp_path, case):
    damage, words = BAD[case]
    store = tmp_path / "store"
    with Store(store, create=True) as s:
        import_bundle(s, demo.bundle)
    before = keys(store)
    bad = tmp_path / "bad.chrono"
    bad.write_bytes(damage(tiny.bundle.read_bytes()))
    commands = [["import", bad]]
    if case in ("truncated", "a zstd bomb", "named with a path"):
        commands.append(["replay", bad, "--to", "5"])      # replay imports it the same way
    for command in commands:
        proc = chrono(*command, "--store", store)
        assert proc.returncode == 7, (case, proc.stderr)
        line = one_error_line(proc.stderr)
        assert words in line and str(bad) in line, line
        assert keys(store) == before


def test_a_bundle_with_an_unusable_name_imports_under_another(tiny, tmp_path):
    bad = tmp_path / "bad.chrono"
    bad.write_bytes(with_manifest(tiny.bundle.read_bytes(), name="../x"))
    store = tmp_path / "store"
    proc = chrono("import", bad, "--name", "a/b", "--store", store)
    assert proc.returncode == 2 and "cannot name" in one_error_line(proc.stderr)
    proc = chrono("import", bad, "--name", "x", "--store", store)
    assert proc.returncode == 0, proc.stderr
    assert chrono("replay", "x", "--store", store, "-q").returncode == 0


def test_a_zstd_bomb_is_refused_without_being_inflated(tiny, tmp_path, monkeypatch):
    data, bomb = zstd_bomb(tiny.bundle.read_bytes(), size=200 << 20)
    path = tmp_path / "bomb.chrono"
    path.write_bytes(data)
    decoded = []
    real = bundle_module.decode_blob
    monkeypatch.setattr(bundle_module, "decode_blob",
                        lambda key, value, *a: decoded.append(key) or real(key, value, *a))
    with Store(tmp_path / "store", create=True) as store:
        with pytest.raises(BundleError, match="claims 209715200 bytes"):
            import_bundle(store, path)
    assert decoded and bomb not in decoded


def test_a_bundle_missing_a_snapshot_or_carrying_a_stray_blob_is_refused(tiny, tmp_path):
    data = tiny.bundle.read_bytes()
    p = parse(data)
    p.sections[b"SNAP"] = p.sections[b"SNAP"][:-1]
    stray = parse(data)
    junk = b"not part of any snapshot"
    stray.sections[b"BLOB"].append((hashlib.sha256(junk).digest(), b"\x00" + junk))
    with Store(tmp_path / "store", create=True) as store:
        for bad, words in ((build(p), "which its recording needs, is not in it"),
                           (build(stray), "none of its snapshots uses")):
            path = tmp_path / "bad.chrono"
            path.write_bytes(bad)
            with pytest.raises(BundleError, match=words):
                import_bundle(store, path)
        assert sum(entries(store).values()) == entries(store)["meta"]


# ---- the mutation test -----------------------------------------------------------

def mutate(data: bytes, fields: list, rng: random.Random) -> tuple[str, bytes]:
    """A damaged copy of `data`: (what was done, bytes).  Most get a recomputed
    checksum, so that the parser, not the checksum, has to find the damage."""
    while True:
        what, mutant = _mutate(data, fields, rng)
        if mutant != data:
            return what, mutant


def _mutate(data: bytes, fields: list, rng: random.Random) -> tuple[str, bytes]:
    body = bytearray(data[:-32])
    kind = rng.choice(["flip", "flips", "truncate", "insert", "delete", "field", "field"])
    if kind == "flip":
        at = rng.randrange(len(body))
        body[at] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(rng.randint(2, 16)):
            body[rng.randrange(len(body))] = rng.randrange(256)
    elif kind == "truncate":
        del body[rng.randrange(len(body)):]
    elif kind == "insert":
        at = rng.randrange(len(body) + 1)
        body[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == "delete":
        at = rng.randrange(len(body))
        del body[at:at + rng.randint(1, 64)]
    else:                                   # a count or length field
        at, fmt = rng.choice(fields)
        width = struct.calcsize(fmt)
        (old,) = struct.unpack_from(fmt, body, at)
        new = rng.choice([0, 1, old + 1, max(old - 1, 0), old + rng.randint(2, 1000),
                          (1 << (8 * width)) - 1, 1 << (8 * width - 2), rng.getrandbits(8 * width)])
        struct.pack_into(fmt, body, at, new % (1 << (8 * width)))
        kind = f"field at {at} {old} -> {new}"
    if rng.random() < 0.8:
        return kind + " (checksum recomputed)", bytes(body) + hashlib.sha256(body).digest()
    return kind, bytes(body) + data[-32:]


def test_thousands_of_damaged_bundles_are_refused_with_bundle_error_and_change_nothing(tiny, tmp_path):
    data = tiny.bundle.read_bytes()
    fields = parse(data).fields
    rng = random.Random(20261126)
    path = tmp_path / "mutant.chrono"
    imported = 0
    kinds = set()
    with Store(tmp_path / "store", create=True) as store:
        import_bundle(store, tiny.bundle, name="original")     # shared blobs, snapshots
        before = entries(store)
        for i in range(3000):
            what, mutant = mutate(data, fields, rng)
            path.write_bytes(mutant)
            try:
                m = import_bundle(store, path)
            except BundleError as e:
                assert str(path) in e.message and "\n" not in e.message
                kinds.add(e.message.split(":")[1].split()[0] if ":" in e.message else e.message)
                assert entries(store) == before, (i, what)
                continue
            except Exception as e:          # noqa: BLE001 -- the point of the test
                pytest.fail(f"mutant {i} ({what}) raised {type(e).__name__}: {e}")
            # Every byte is covered by a check, but a zstd frame can have variants
            # that decode the same: such a copy must be sound.  It is removed again.
            imported += 1
            assert [r.ok for r in verify_traces(store, [m.name])] == [True], what
            remove_trace(store, m.name)
            before = entries(store)
    # Accepted copies are sound (checked above) and must stay rare: nearly every
    # byte is covered by a check (a few per thousand mutants were seen accepted).
    assert imported <= 3000 // 100, imported
    assert len(kinds) > 5, kinds


# ---- trace verify ----------------------------------------------------------------

def test_trace_verify_names_each_damaged_part(tiny, tmp_path):
    path = tmp_path / "store"
    with Store(path, create=True) as store:
        import_bundle(store, tiny.bundle)
        import_bundle(store, tiny.bundle, name="other")
    runner = CliRunner()
    sound = runner.invoke(main, ["trace", "verify", "--store", str(path)])
    assert sound.exit_code == 0, sound.output
    assert "recording tiny is sound" in sound.output and "recording other is sound" in sound.output
    with Store(path) as store:
        with store.reader() as r:
            m = read_trace(r, "tiny")
            chunk_key, chunk = next(iter(r.chunks(m.id_bytes)))
            snap = r.get_snapshot(m.keyframes[-1].snapshot)
            page = next(iter(snap.ram.items(r)))[1]
        with store.writer() as w:
            w.put_chunk(chunk_key, chunk[:-3] + bytes([chunk[-3] ^ 1]) + chunk[-2:])
            w.delete_blob(page)
    damaged = runner.invoke(main, ["trace", "verify", "--store", str(path), "tiny"])
    assert damaged.exit_code == 7, damaged.output
    lines = damaged.output.splitlines()
    assert any(line.startswith("recording tiny: event chunk 0 does not decode") for line in lines)
    assert any(f"page {page.hex()}" in line and "is missing" in line for line in lines)
    assert "recording other" not in damaged.output
    unknown = runner.invoke(main, ["trace", "verify", "--store", str(path), "nope"])
    assert unknown.exit_code == 3


# ---- hostile bundles that pass every checksum (found by tools/fuzz/bundle_mutate.py) --

def _fuzzer():
    """tools/fuzz/bundle_mutate.py, whose helpers change a bundle and recompute every
    hash above the change (blob keys, leaves, snapshot ids, references, header)."""
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "tools" / "fuzz" / "bundle_mutate.py"
    spec = importlib.util.spec_from_file_location("bundle_mutate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bundle_mutate", module)
    spec.loader.exec_module(module)
    return module


fuzz = _fuzzer()


def rehashed(data: bytes, change) -> bytes:
    """`data` parsed, changed by change(bundle), rebuilt with every hash recomputed."""
    b, _ = fuzz.parse(data)
    change(b)
    fuzz.sort_bundle(b)
    return fuzz.build(b)


def snapshot_manifests(b):
    from chrono.store.manifest import Manifest
    return [Manifest.decode(v) for _, v in b.sections[b"SNAP"]]


def set_config(b, index: int, cfg: dict) -> None:
    """Snapshot `index`'s machine configuration replaced (its id and references follow)."""
    value = b.sections[b"SNAP"][index][1]
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    config_len = struct.unpack_from("<I", value, 128)[0]
    fuzz.replace_snapshot(b, index, value[:128] + struct.pack("<I", len(text)) + text
                          + value[132 + config_len:])


def everywhere(**changes):
    """The machine configuration changed alike in the recording and every snapshot."""
    def change(b):
        m = fuzz.trace_json(b)
        for key, value in changes.items():
            if value is KeyError:
                m["config"].pop(key)
            else:
                m["config"][key] = value
        fuzz.set_trace_json(b, m)
        for i in range(len(b.sections[b"SNAP"])):
            set_config(b, i, m["config"])
    return change


def bigger_ram(b):
    """The last keyframe's snapshot on a machine with twice the RAM (tables to match)."""
    from chrono.store.pagetable import PageTable
    m = fuzz.trace_json(b)
    sid = bytes.fromhex(m["keyframes"][-1]["snapshot"])
    index = [k for k, _ in b.sections[b"SNAP"]].index(sid)
    snap = snapshot_manifests(b)[index]
    pages = 2 * snap.ram.npages
    grown = copy.copy(snap)
    object.__setattr__(grown, "ram", PageTable(pages, list(snap.ram.leaves) + [bytes(32)] * len(snap.ram.leaves)))
    object.__setattr__(grown, "config", dict(snap.config, ram_size=pages * 4096))
    fuzz.replace_snapshot(b, index, grown.encode())


def shared_leaf(b) -> tuple[int, bytes]:
    """(snapshot index, leaf key) of a RAM leaf another snapshot has too: replacing it in
    the one leaves every blob of the bundle used."""
    snaps = snapshot_manifests(b)
    for i, snap in enumerate(snaps):
        for leaf in snap.ram.leaf_keys:
            if any(leaf in other.ram.leaf_keys for j, other in enumerate(snaps) if j != i):
                return i, leaf
    raise AssertionError("no shared leaf")


def state_as_leaf(b):
    """A snapshot's RAM leaf replaced by its own CPU/device state."""
    i, leaf = shared_leaf(b)
    state = snapshot_manifests(b)[i].state
    fuzz.replace_snapshot(b, i, b.sections[b"SNAP"][i][1].replace(leaf, state))


def state_part_size(b):
    """A CPU/device state whose header declares another size for a part."""
    snap = snapshot_manifests(b)[0]
    index = [k for k, _ in b.sections[b"BLOB"]].index(snap.state)
    state = bytearray(fuzz.blob_content(b.sections[b"BLOB"][index][1]))
    state[24:28] = struct.pack("<I", 0xFFFFFFFF)
    fuzz.replace_blob(b, index, bytes(state))


HOSTILE = {
    "a keyframe on a machine with more RAM": (bigger_ram, "is not its recording's"),
    "a machine without HTIF addresses": (everywhere(htif=KeyError), "has no 'htif'"),
    "a machine with a bad ISA extension": (
        everywhere(isa_extensions=["i", "m", "a", "f", "d", "c", -1]), "ISA extension -1"),
    "a machine of an MMU that is no text": (everywhere(mmu={}), "wrong type"),
    "a machine of another state layout": (everywhere(state_size=999), "state layout differs"),
    "a snapshot naming its state as a leaf": (
        state_as_leaf, f"claims {core_state_size()} bytes where a page-table leaf has 16384"),
    "a state this core cannot load": (state_part_size, "is not one this chrono loads"),
    "an end past 2^63": (lambda b: fuzz.set_trace_json(b, dict(fuzz.trace_json(b), end_position=1 << 64)),
                         "from 0 to 2^63 - 1"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_self_consistent_bundle_replay_could_not_use_is_refused(tiny, demo, tmp_path, case):
    """Every checksum, id and header agrees: only the checks of meaning can refuse it
    (before, these were imported and then replay failed with a traceback or an error)."""
    change, words = HOSTILE[case]
    store = tmp_path / "store"
    with Store(store, create=True) as s:
        import_bundle(s, demo.bundle)
    before = keys(store)
    bad = tmp_path / "bad.chrono"
    bad.write_bytes(rehashed(tiny.bundle.read_bytes(), change))
    proc = chrono("import", bad, "--store", store)
    assert proc.returncode == 7, (case, proc.stderr, proc.stdout)
    line = one_error_line(proc.stderr)
    assert words in line and str(bad) in line, line
    assert keys(store) == before


def test_a_leaf_the_store_has_as_a_page_is_the_bundles_error_not_the_stores(tiny, tmp_path):
    """A snapshot names, as a leaf, a page the bundle leaves out and the store has:
    the message blames the bundle, not the (sound) store."""
    store = tmp_path / "store"
    with Store(store, create=True) as s:
        import_bundle(s, tiny.bundle, name="first")
    pages = fuzz._page_keys(fuzz.parse(tiny.bundle.read_bytes())[0])

    def change(b):
        page = sorted(pages)[0]
        b.sections[b"BLOB"] = [(k, v) for k, v in b.sections[b"BLOB"] if k != page]
        i, leaf = shared_leaf(b)
        fuzz.replace_snapshot(b, i, b.sections[b"SNAP"][i][1].replace(leaf, page))

    bad = tmp_path / "bad.chrono"
    bad.write_bytes(rehashed(tiny.bundle.read_bytes(), change))
    before = keys(store)
    proc = chrono("import", bad, "--store", store)
    assert proc.returncode == 7, proc.stderr
    line = one_error_line(proc.stderr)
    assert str(bad) in line and "as a page-table leaf, and it is not one" in line, line
    assert keys(store) == before
    assert chrono("store", "verify", "--store", store).returncode == 0


def test_a_skip_past_what_the_clock_can_count_is_a_divergence(tiny, tmp_path):
    """An idle skip of 2^64 - 1 (the log's counts agreeing): import cannot know the
    clock, replay must say it diverged (before: an OverflowError traceback)."""
    import random
    from chrono.replay.events import SKIP, Event

    def change(b):
        events = fuzz.log_events(b)
        events.insert(2, Event(events[2].position, SKIP, b"", (1 << 64) - 1))
        fuzz.set_log(b, events, random.Random(1), fix_counts=True)

    path = tmp_path / "skip.chrono"
    path.write_bytes(rehashed(tiny.bundle.read_bytes(), change))
    store = tmp_path / "store"
    assert chrono("import", path, "--store", store).returncode == 0
    proc = chrono("replay", "tiny", "-q", "--store", store)
    assert proc.returncode == 9, proc.stderr
    assert "skips the virtual clock" in one_error_line(proc.stderr)
