"""A guest with a polled virtio-blk driver (tests/guests/virtio_blk.c),
driven request by request from the host through breakpoints."""


import numpy as np

import rvasm
from chrono.core.machine import Stop

PAGE = 4096
DRIVER = rvasm.guest_c("virtio_blk.c")


def dirty_pages(m):
    return set(np.flatnonzero(m.ram_dirty).tolist())


def run_to(g, label):
    r = g.run(1_000_000)
    assert r.reason == Stop.BREAKPOINT, f"expected to stop at {label}: {r}"
    assert g.machine.pc == g.sym(label)


BLK_GUEST = """
main:
        call blk_init
        bnez a0, failed
ready:                                  // breakpoint: the host sets `request`
        la t0, request
        lw a0, 0(t0)
        ld a1, 8(t0)
        ld a2, 16(t0)
        lw a3, 24(t0)
        call blk_rw
        mv s1, a0
        j ready
failed:
        addi a0, a0, 100
        EXIT_REG a0

        .data
        .balign 8
request: .dword 0, 0, 0, 0              // type, sector, buffer, length
        .bss
        .balign 4096
buffers: .skip 4 * 4096
"""


class BlkGuest:
    def __init__(self, disk):
        self.g = rvasm.boot(BLK_GUEST, c_source=DRIVER)
        self.m = self.g.machine
        self.m.attach_disk(disk)
        self.m.add_breakpoint(self.g.sym("ready"))
        run_to(self.g, "ready")
        assert self.m.reg(10) == 0, "blk_init failed"

    def buffer(self, page=0):
        return self.g.sym("buffers") + page * PAGE

    def request(self, kind, sector, address, length):
        """Run one request; returns its status byte and the pages it dirtied."""
        self.g.set_u64("request", kind, 0)
        self.g.set_u64("request", sector, 1)
        self.g.set_u64("request", address, 2)
        self.g.set_u64("request", length, 3)
        self.m.clear_ram_dirty()
        run_to(self.g, "ready")
        return self.m.reg(9), dirty_pages(self.m)


