"""Lazy RAM: a machine can resume before its RAM is filled in; each page is
materialized on first touch (by the CPU, the page walker or device DMA) and
the run is identical to one with all of RAM in place."""
import numpy as np
import pytest

from chrono.core.console import Console
from chrono.core.digest import state_digest
from chrono.core.disk import Disk
from chrono.core.launch import GuestSpec, launch
from chrono.core.machine import Machine
from chrono.core.session import Session
from chrono.errors import GuestError

EPOCH = 1_764_000_000 * 10**9
PAGE = 4096


def booted_demo(tmp_path, commands: bytes):
    """The demo guest after running `commands` (a blank disk, fixed epoch)."""
    script = tmp_path / "input"
    script.write_bytes(commands)
    out = tmp_path / "out"
    guest = launch(GuestSpec(rtc_epoch_ns=EPOCH))
    with open(script, "rb") as stdin, open(out, "wb") as stdout:
        Session(guest.machine).run(Console(stdin=stdin, stdout=stdout), max_steps=3_000_000,
                                   paced=False)
    return guest


def clone_lazily(source: Machine, ram: np.ndarray, disk) -> tuple[Machine, list[int]]:
    """A fresh machine with source's CPU/device state and every RAM page
    absent, served from `ram` on demand; returns it and the served pages."""
    clone = Machine(source.ram_size, rtc_epoch_ns=source.rtc_epoch_ns)
    clone.attach_disk(disk)
    clone.load_state(source.save_state())
    served = []

    def provide(page):
        served.append(page)
        clone.fill_page(page, ram[page * PAGE:(page + 1) * PAGE])

    clone.set_page_provider(provide)
    clone.mark_absent(slice(None))
    return clone, served


def test_lazily_restored_machine_runs_identically_and_touches_few_pages(tmp_path):
    guest = booted_demo(tmp_path, b"write a hello\nsync\n")
    m = guest.machine
    ram = m.ram.copy()
    disk = Disk.blank(guest.disk.size)
    disk.data[:] = guest.disk.data

    clone, served = clone_lazily(m, ram, disk)
    for machine in (m, clone):
        machine.console_write(b"cat a\r")
    for _ in range(20):
        r1, r2 = m.run(50_000), clone.run(50_000)
        assert (r1.reason, r1.executed) == (r2.reason, r2.executed)
        assert m.console_read() == clone.console_read()
    assert 0 < len(served) < m.ram_size // PAGE // 10  # lazy: only what was touched
    assert state_digest(clone) == state_digest(m)      # digest materializes the rest


def test_a_provider_failure_stops_the_run_with_its_error():
    m = Machine(16 << 20)
    m.write_phys(0x8000_0000, bytes.fromhex("6f000000"))    # j .
    m.reset(0x8000_0000)

    def broken(page):
        raise GuestError("page store unavailable")

    m.set_page_provider(broken)
    m.mark_absent(slice(None))
    with pytest.raises(GuestError, match="page store unavailable"):
        m.run(100)


def test_prefetch_fills_in_absent_pages_without_changing_the_run(tmp_path):
    guest = booted_demo(tmp_path, b"write a hello\nsync\n")
    m = guest.machine
    disk = Disk.blank(guest.disk.size)
    disk.data[:] = guest.disk.data
    clone, served = clone_lazily(m, m.ram.copy(), disk)
    loaded = clone.prefetch(100)
    assert loaded == 100 and len(served) == 100
    while clone.prefetch(5000):
        pass
    assert clone.ram_present.all()
    for machine in (m, clone):
        machine.console_write(b"cat a\r")
        machine.run(2_000_000)
    assert state_digest(clone) == state_digest(m)
