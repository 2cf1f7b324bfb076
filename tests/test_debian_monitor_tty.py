"""The fast-boot story at a real terminal, on Debian: a line typed ahead while
it boots, boot, Ctrl-A c `savevm booted`, quit; then `chrono run --from booted`
is at a live shell at once.  Marked `network`: it needs the fetched Debian guest."""
import os
import re
import shutil

import pytest
from test_console_tty import Terminal
from test_guest_debian import debian, xdg_cache  # noqa: F401 - fixtures

pytestmark = pytest.mark.network


@pytest.fixture
def home(tmp_path, xdg_cache, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_savevm_at_the_terminal_then_run_from_gives_a_live_shell(debian, home):
    disk = home / "disk.img"
    shutil.copyfile(debian.path / debian.manifest.disk, disk)
    first = Terminal(["run", "debian", "--disk", str(disk), "--store", str(home / "store")])
    try:
        first.type(b"echo ear''ly-$((6*7))\r")       # typed ahead, while the guest boots
        first.expect(b"chrono-debian: shell ready", timeout=180)
        first.expect(b"\nearly-42\r\n")              # the shell got the whole line
        first.type(b"\r")
        first.expect(b"/ # ")
        first.type(b"echo before-save > /tmp/mark; echo SA\"\"VED\r")
        first.expect(b"SAVED\r\n")              # the command ran: now save
        first.type(b"\x01c")
        first.expect(b"(chrono) ")
        first.type(b"savevm booted\r")
        first.expect(b"saved booted (", timeout=60)
        first.type(b"\x01x")
        assert first.proc.wait(timeout=30) == 0
    finally:
        first.close()

    second = Terminal(["run", "--from", "booted", "--store", str(home / "store")])
    try:
        note = second.expect(b"RAM pages load as the guest touches them", timeout=30)
        restore_ms = float(re.search(rb"restored booted in ([0-9.]+) ms", note).group(1))
        assert restore_ms < 500          # the note reports it; the bench measures it properly
        second.type(b"cat /tmp/mark\r")
        second.expect(b"before-save\r\n", timeout=30)
        second.type(b"\x01x")
        assert second.proc.wait(timeout=30) == 0
    finally:
        second.close()
    assert os.path.getsize(disk) == os.path.getsize(debian.path / debian.manifest.disk)
