"""Dirty tracking, which incremental snapshots depend on.

ram_dirty has one byte per 4 KiB page: after clear_ram_dirty() exactly the
pages written since are marked, however they were written: guest stores
(also to a page whose write translation was cached before the clear),
misaligned stores over two pages, AMOs, SC, hardware A/D updates of page
tables, virtio-blk DMA, host write_phys.  Loads mark nothing.  On the disk
side, virtio-blk writes mark 4 KiB blocks in disk.dirty (since the last
clear) and disk.written (the overlay), the image file is never written
behind the user's back, and Disk.commit() writes exactly the overlay blocks.
"""

import numpy as np
import pytest

import rvasm
from blkguest import BlkGuest, dirty_pages, run_to
from chrono.core.disk import Disk
from chrono.core.machine import Stop
from chrono.errors import DiskError

PAGE = 4096


# Each phase runs from its label to the next; the dirty set it should leave,
# as indices into the 8 pages at `pages`.
PHASES = [
    ("store", {0}),
    ("store_again", {0}),               # its write translation was cached before the clear
    ("byte_store_and_loads", {1}),
    ("amo_first", {2}),
    ("amo_again", {2}),
    ("store_then", {3}),
    ("amo_after_store", {3}),           # AMO on a page whose store path was cached
    ("lr_sc", {4}),
    ("sc_again", {4}),
    ("misaligned_over_two_pages", {5, 6}),
    ("compressed_sp_store", {7}),
    ("loads_only", set()),
]


def test_each_kind_of_store_marks_exactly_its_page():
    g = rvasm.boot("""
main:
        la s1, pages
        li s2, 4096
        li t0, 1
store:
        sd t0, 0(s1)
store_again:
        sd t0, 8(s1)
byte_store_and_loads:
        add t1, s1, s2
        sb t0, 5(t1)
        add t2, t1, s2
        ld t3, 0(t2)                    // loads never mark
        ld t3, 0(s1)
amo_first:
        add t1, t2, zero                // page 2
        amoadd.w t3, t0, (t1)
amo_again:
        amoadd.w t3, t0, (t1)
store_then:
        add t1, t1, s2                  // page 3
        sd t0, 16(t1)
amo_after_store:
        amoor.d t3, t0, (t1)
lr_sc:
        add t1, t1, s2                  // page 4
        lr.d t3, (t1)
        sc.d t4, t0, (t1)
sc_again:
        lr.d t3, (t1)
        sc.d t4, t0, (t1)
misaligned_over_two_pages:
        add t1, t1, s2                  // page 5, 3 bytes from its end
        add t1, t1, s2
        addi t1, t1, -3
        sd t0, 0(t1)
compressed_sp_store:
        add sp, t1, s2                  // page 7 (t1 + 4 KiB is in page 6, + 3 -> 7)
        addi sp, sp, 3
        c.sdsp t0, 0(sp)
loads_only:
        ld t3, 0(s1)
        lw t3, 0(sp)
        lbu t3, 100(s1)
end:
        POWEROFF 0x5555                 // MMIO: writes no RAM

        .bss
        .balign 4096
pages:  .skip 8 * 4096
""")
    m = g.machine
    labels = [name for name, _ in PHASES] + ["end"]
    for label in labels:
        m.add_breakpoint(g.sym(label))
    base = g.page_of("pages")
    run_to(g, labels[0])
    for (label, expected), following in zip(PHASES, labels[1:]):
        m.clear_ram_dirty()
        assert not m.ram_dirty.any()
        run_to(g, following)
        assert dirty_pages(m) == {base + i for i in expected}, f"phase {label}"
        if label in ("lr_sc", "sc_again"):
            assert m.reg(29) == 0, "sc.d failed"                # t4
    m.clear_ram_dirty()
    r = g.run(1000)
    assert (r.reason, r.code) == (Stop.POWEROFF, 0)
    assert dirty_pages(m) == set()


def test_supervisor_stores_through_page_tables():
    """First store through a fresh PTE: the data page and the page table page
    (hardware sets A and D).  After a clear, the same store marks only the data
    page: the PTE is already A/D, and the cached translation is not trusted."""
    pool, data_pa, va = rvasm.RAM_BASE + 0x40_0000, rvasm.RAM_BASE + 0x60_0000, 0x4000_0000
    g = rvasm.boot(f"""
main:
        PMP_ALLOW_ALL
        la t0, satp_value
        ld t0, 0(t0)
        csrw satp, t0
        ENTER_S s_main
s_main:
        li s1, {va:#x}
        li t0, 7
first:
        sd t0, 0(s1)
second:
        sd t0, 8(s1)
end:
        POWEROFF 0x5555
        .data
        .balign 8
satp_value: .dword 0
""")
    m = g.machine
    pt = rvasm.PageTables(m, pool, rvasm.SATP_SV39)
    flags = rvasm.PTE_R | rvasm.PTE_W | rvasm.PTE_X | rvasm.PTE_A | rvasm.PTE_D
    pt.map(rvasm.RAM_BASE, rvasm.RAM_BASE, flags, level=2)
    leaf = pt.map(va, data_pa, rvasm.PTE_R | rvasm.PTE_W)
    g.set_u64("satp_value", pt.satp)
    for label in ("first", "second", "end"):
        m.add_breakpoint(g.sym(label))
    run_to(g, "first")
    m.clear_ram_dirty()
    run_to(g, "second")
    data_page, table_page = g.page_of(data_pa), g.page_of(leaf)
    assert dirty_pages(m) == {data_page, table_page}
    m.clear_ram_dirty()
    run_to(g, "end")
    assert dirty_pages(m) == {data_page}


def test_write_phys_marks_pages_and_clear_resets_them():
    g = rvasm.boot("main: EXIT 0")
    m = g.machine
    m.clear_ram_dirty()
    m.write_phys(rvasm.RAM_BASE + 0x10_0FFE, b"abcd")       # straddles two pages
    assert dirty_pages(m) == {0x100, 0x101}
    m.write_phys(rvasm.RAM_BASE + 0x20_0000, b"")
    assert dirty_pages(m) == {0x100, 0x101}
    m.clear_ram_dirty()
    assert dirty_pages(m) == set()


# ---- virtio-blk -------------------------------------------------------------

def pattern(n, seed):
    return bytes((i * 13 + seed + (i >> 9)) & 0xFF for i in range(n))


def test_virtio_blk_read_dma_marks_the_destination_pages():
    disk = Disk.blank(1 << 20)
    disk.data[:] = np.frombuffer(pattern(1 << 20, 5), dtype=np.uint8)
    b = BlkGuest(disk)
    # 8 KiB from sector 3 into buffer pages 1 and 2; the guest itself never
    # stores there, so only the device's DMA can mark them.
    status, dirty = b.request(0, 3, b.buffer(1), 8192)
    assert status == 0
    assert b.m.read_phys(b.buffer(1), 8192) == bytes(disk.data[3 * 512:3 * 512 + 8192])
    buf_pages = [b.g.page_of(b.buffer(i)) for i in range(4)]
    assert {buf_pages[1], buf_pages[2]} <= dirty
    assert buf_pages[0] not in dirty and buf_pages[3] not in dirty
    # Anything else dirtied is the driver's own bookkeeping (queue, request, stack).
    allowed = {b.g.page_of("vq"), b.g.page_of("req"), b.g.page_of("last_used"), *range(b.g.page_of("__rv_stack"),
                                                            b.g.page_of("__rv_stack_top"))}
    assert dirty - {buf_pages[1], buf_pages[2]} <= allowed
    assert not disk.dirty.any() and not disk.written.any()     # reads mark no disk blocks


def test_virtio_blk_read_of_a_partial_page_marks_that_page():
    disk = Disk.blank(64 * 1024)
    b = BlkGuest(disk)
    status, dirty = b.request(0, 0, b.buffer(3) + 1024, 512)
    assert status == 0
    assert b.g.page_of(b.buffer(3)) in dirty


@pytest.mark.parametrize("sector, count, blocks", [
    (9, 2, {1}),                # inside block 1
    (7, 2, {0, 1}),             # straddles blocks 0 and 1
    (16, 8, {2}),               # exactly block 2
    (127, 1, {15}),             # the last sector of a 64 KiB disk
])
def test_virtio_blk_write_marks_disk_blocks(sector, count, blocks):
    disk = Disk.blank(64 * 1024)
    b = BlkGuest(disk)
    data = pattern(count * 512, sector)
    b.m.write_phys(b.buffer(0), data)
    status, dirty = b.request(1, sector, b.buffer(0), count * 512)
    assert status == 0
    assert bytes(disk.data[sector * 512:(sector + count) * 512]) == data
    assert set(np.flatnonzero(disk.dirty).tolist()) == blocks
    assert set(np.flatnonzero(disk.written).tolist()) == blocks
    assert set(disk.overlay_blocks().tolist()) == blocks
    assert b.g.page_of(b.buffer(0)) not in dirty        # reading RAM marks nothing

    b.m.clear_disk_dirty()
    assert not disk.dirty.any()
    assert set(disk.overlay_blocks().tolist()) == blocks       # the overlay stays


def test_blank_disk_has_nothing_to_commit_to():
    disk = Disk.blank(64 * 1024)
    b = BlkGuest(disk)
    b.m.write_phys(b.buffer(0), b"x" * 512)
    assert b.request(1, 0, b.buffer(0), 512)[0] == 0
    with pytest.raises(DiskError):
        disk.commit()
    assert disk.overlay_blocks().tolist() == [0]        # still there


def test_virtio_blk_write_past_the_end_fails_and_marks_nothing():
    disk = Disk.blank(64 * 1024)
    b = BlkGuest(disk)
    status, _ = b.request(1, 127, b.buffer(0), 1024)
    assert status == 1                                  # VIRTIO_BLK_S_IOERR
    assert not disk.written.any()


def test_disk_image_is_untouched_until_commit_and_commit_writes_only_the_overlay(tmp_path):
    image = tmp_path / "disk.img"
    original = pattern(64 * 1024, 99)
    image.write_bytes(original)
    disk = Disk.open(image)
    b = BlkGuest(disk)

    # Reads come from the file.
    status, _ = b.request(0, 3, b.buffer(0), 1024)
    assert status == 0
    assert b.m.read_phys(b.buffer(0), 1024) == original[1536:2560]

    # A guest write to sector 21 (block 2) stays in memory.
    new = pattern(512, 1)
    b.m.write_phys(b.buffer(1), new)
    status, _ = b.request(1, 21, b.buffer(1), 512)
    assert status == 0
    assert bytes(disk.data[21 * 512:22 * 512]) == new
    assert image.read_bytes() == original
    assert disk.overlay_blocks().tolist() == [2]

    # Changed in memory without a guest write: not part of the overlay.
    disk.data[5 * PAGE] ^= 0xFF

    assert disk.commit() == PAGE
    on_file = image.read_bytes()
    expected = bytearray(original)
    expected[21 * 512:22 * 512] = new
    assert on_file == bytes(expected)
    assert disk.overlay_blocks().tolist() == []
