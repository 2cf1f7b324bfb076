"""A Debian recording made with the JIT replays with the interpreter
(--no-jit) and the reverse: the same console bytes, every digest and keyframe
verified.  The JIT runs Linux's own code there (OpenSBI, the kernel patching
its text at boot, user space under Sv39), so this is the whole-system check
that it changes speed only.

Marked `network` (the guest comes from the shared test cache, built once by
test_guest_debian.py's fixture).  Each recording and replay takes 10-40 s.
"""
from __future__ import annotations

import pytest

from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures
from test_trace_debian import SCRIPT, TIMEOUT     # the same typed session
from tracehelp import chrono, trace_manifest

pytestmark = pytest.mark.network


@pytest.mark.parametrize("record_args, replay_args", [
    ((), ("--no-jit",)),
    (("--no-jit",), ()),
], ids=["jit-then-interpreter", "interpreter-then-jit"])
def test_debian_recording_replays_exactly_on_the_other_path(debian, xdg_cache, tmp_path,
                                                              monkeypatch, record_args, replay_args):
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    monkeypatch.setenv("CHRONO_JIT", "1")           # the side without --no-jit uses the JIT
    store = tmp_path / "store"
    recorded = chrono(tmp_path, "record", "debian", "--store", store, "--name", "deb",
                      *record_args, script=SCRIPT, timeout=TIMEOUT)
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    assert "typed-42" in recorded.stdout
    replayed = chrono(tmp_path, "replay", "--store", store, "deb", *replay_args, timeout=TIMEOUT)
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert replayed.stdout == recorded.stdout
    m = trace_manifest(store, "deb")
    assert len(m.keyframes) >= 3
    assert f"{m.length:,} instructions, {len(m.keyframes) - 1} keyframes" in replayed.stderr
