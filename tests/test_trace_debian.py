"""Record and replay the real Debian guest through the CLI.

A session with typed commands (boot, `echo hi > /mnt/x; sync; ls /mnt`,
poweroff) is recorded, then replayed in a new process: the same console
bytes, every light digest and keyframe verified.  The same recording with
one typed byte changed must fail, right after that byte.

Marked `network` (the guest comes from the shared test cache, built once by
test_guest_debian.py's fixture).  Recording and each replay take 20-40 s.
"""
from __future__ import annotations

import os
import shutil

import pytest

from chrono.replay.recorder import DIGEST_INTERVAL
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures
from tracehelp import DIVERGED, alter_console_input, chrono, trace_manifest

pytestmark = pytest.mark.network

SCRIPT = "echo hi > /mnt/x; sync; ls /mnt\necho typed-$((6*7))\npoweroff\n"
TIMEOUT = 600


@pytest.fixture(scope="module")
def recorded(debian, xdg_cache, tmp_path_factory):
    work = tmp_path_factory.mktemp("debian-record")
    os.environ["XDG_CACHE_HOME"] = str(xdg_cache)
    proc = chrono(work, "record", "debian", "--store", work / "store", "--name", "deb",
                  script=SCRIPT, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"work": work, "proc": proc, "manifest": trace_manifest(work / "store", "deb")}


def test_the_recorded_session_ran_the_commands(recorded):
    out = recorded["proc"].stdout
    assert "typed-42" in out
    assert "/ # " + SCRIPT.split("\n")[0] + "\n" in out     # the first typed line, whole
    assert "lost+found" in out and "\nx" in out.replace("  ", "\n")
    m = recorded["manifest"]
    assert m.complete and m.outcome == "poweroff"
    assert m.length > 1_000_000_000 and len(m.keyframes) >= 3
    assert m.inputs["console"] >= len(SCRIPT)
    assert m.inputs["entropy"] > 0              # the kernel seeds itself from virtio-rng
    # The log stays tiny: at most 1 byte per 1,000 instructions (measured ~0.3).
    assert m.log_bytes * 1000 < m.length


def test_it_replays_bit_exactly_in_a_new_process(recorded):
    work = recorded["work"]
    replayed = chrono(work, "replay", "--store", work / "store", "deb", timeout=TIMEOUT)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert replayed.stdout == recorded["proc"].stdout
    m = recorded["manifest"]
    assert f"{m.length:,} instructions, {len(m.keyframes) - 1} keyframes" in replayed.stderr


def test_a_changed_typed_byte_is_caught_right_after_it(recorded, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(recorded["work"] / "store", store)
    position = alter_console_input(store, "deb", b"typed", b"tyqed")
    replayed = chrono(tmp_path, "replay", "--store", store, "--quiet", "deb", timeout=TIMEOUT)
    assert replayed.returncode == 9, replayed.stderr[-2000:]
    match = DIVERGED.search(replayed.stderr)
    assert match, replayed.stderr
    matched, differs = int(match[1]), int(match[2])
    # Narrowed to one digest interval, soon after the changed byte (the guest
    # may hold it in a buffer for a while before it changes anything checked).
    assert matched < differs <= matched + DIGEST_INTERVAL
    assert position < differs <= position + 16 * DIGEST_INTERVAL


def test_its_bundle_replays_bit_exactly_in_a_fresh_store(recorded, tmp_path):
    work = recorded["work"]
    bundle = tmp_path / "deb.chrono"
    exported = chrono(work, "export", "--store", work / "store", "deb", "-o", bundle,
                      timeout=TIMEOUT)
    assert exported.returncode == 0, exported.stderr
    fresh = tmp_path / "fresh"
    imported = chrono(tmp_path, "import", "--store", fresh, bundle, timeout=TIMEOUT)
    assert imported.returncode == 0, imported.stderr
    replayed = chrono(tmp_path, "replay", "--store", fresh, "deb", timeout=TIMEOUT)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert replayed.stdout == recorded["proc"].stdout
    assert "matched the recording" in replayed.stderr


def test_a_reboot_in_a_recording_replays(debian, xdg_cache, tmp_path):
    """The guest reboots mid-recording: the reset state is a logged machine load
    (the boot images are host files), so the replay needs nothing but the store."""
    os.environ["XDG_CACHE_HOME"] = str(xdg_cache)
    # Typed input after `reboot` could reach the old kernel as it goes down; the
    # Ctrl-A x (scripted: once the guest settles) ends it at the new prompt.
    script = "echo before-$((2*21))\nreboot\n\x01x"
    proc = chrono(tmp_path, "record", "debian", "--store", tmp_path / "store", "--name", "rb",
                  script=script, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("chrono-debian: shell ready") == 2 and "before-42" in proc.stdout
    m = trace_manifest(tmp_path / "store", "rb")
    assert m.inputs["loads"] == 1 and len(m.loads) == 1
    replayed = chrono(tmp_path, "replay", "--store", tmp_path / "store", "rb", timeout=TIMEOUT)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert replayed.stdout == proc.stdout and "matched the recording" in replayed.stderr
