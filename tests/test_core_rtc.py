"""The goldfish RTC: the guest's wall clock is the configured epoch plus
virtual time, never the host's clock; setting it and its alarm work."""
import struct

import rvasm
from chrono.core.loader import load_elf
from chrono.core.machine import Machine, Stop

RTC = 0x0010_1000
EPOCH = 1_700_000_000_123_456_789          # ns since 1970


def boot(source: str, epoch: int = EPOCH) -> tuple[Machine, dict]:
    image = load_elf(rvasm.build(source))
    m = Machine(16 << 20, tohost=image.tohost, fromhost=image.fromhost, rtc_epoch_ns=epoch)
    for address, data in image.segments:
        m.write_phys(address, data)
    m.reset(image.entry)
    return m, image.symbols


def u64(m: Machine, address: int) -> int:
    return struct.unpack("<Q", m.read_phys(address, 8))[0]


READ_TIME = f"""
        li t0, {RTC:#x}
        lw t1, 0(t0)                    // TIME_LOW latches TIME_HIGH
        lw t2, 4(t0)
        slli t2, t2, 32
        slli t1, t1, 32
        srli t1, t1, 32
        or a0, t1, t2
"""


def test_rtc_reads_epoch_plus_virtual_time():
    m, sym = boot(f"""
main:
{READ_TIME}
        la t3, result
        sd a0, 0(t3)
        EXIT 0
        .data
        .balign 8
result: .dword 0
""")
    assert m.run(10_000).reason == Stop.HTIF_EXIT
    seen = u64(m, sym["result"])
    # One step of virtual clock is one nanosecond; the read happened a few
    # steps after reset.
    assert EPOCH <= seen < EPOCH + 100


def test_rtc_follows_idle_time_jumps_not_the_host_clock():
    m, sym = boot(f"""
main:
        li t0, 0x2004000                // mtimecmp = now + 2 s
        li t1, 0x200bff8
        ld t2, 0(t1)
        li t3, 20000000
        add t2, t2, t3
        sd t2, 0(t0)
        li t0, 1 << 7                   // MTIE, with MIE off: wfi just wakes
        csrs mie, t0
        wfi
{READ_TIME}
        la t3, result
        sd a0, 0(t3)
        EXIT 0
        .data
        .balign 8
result: .dword 0
""")
    r = m.run(10_000)
    assert r.reason == Stop.IDLE
    m.skip_to(r.deadline)
    assert m.run(10_000).reason == Stop.HTIF_EXIT
    seen = u64(m, sym["result"])
    assert EPOCH + 2_000_000_000 <= seen < EPOCH + 2_000_000_000 + 200


def test_guest_can_set_the_rtc_and_it_keeps_counting():
    target = 1_800_000_000 * 10**9
    m, sym = boot(f"""
main:
        li t0, {RTC:#x}
        li t1, {target >> 32}
        sw t1, 4(t0)                    // TIME_HIGH
        li t1, {target & 0xffffffff}
        sw t1, 0(t0)                    // TIME_LOW
{READ_TIME}
        la t3, result
        sd a0, 0(t3)
        EXIT 0
        .data
        .balign 8
result: .dword 0
""")
    assert m.run(10_000).reason == Stop.HTIF_EXIT
    assert target <= u64(m, sym["result"]) < target + 100


def test_rtc_alarm_raises_its_interrupt_through_the_plic():
    m, sym = boot(f"""
main:
        li t0, 0x0c000000 + 4 * 11      // PLIC priority of source 11
        li t1, 1
        sw t1, 0(t0)
        li t0, 0x0c002000               // context 0 (M) enables
        li t1, 1 << 11
        sw t1, 0(t0)
        li t0, 1 << 11                  // MEIE, with MIE off: wfi just wakes
        csrs mie, t0
{READ_TIME}
        li t0, {RTC:#x}
        li t1, 1
        sw t1, 0x10(t0)                 // IRQ_ENABLED
        li t1, 500000000                // alarm 0.5 s from now
        add a1, a0, t1
        srli t2, a1, 32
        sw t2, 0x0c(t0)                 // ALARM_HIGH
        sw a1, 0x08(t0)                 // ALARM_LOW arms it
        wfi
{READ_TIME}
        la t3, result
        sd a0, 0(t3)
        li t0, 0x0c200004               // claim
        lw t1, 0(t0)
        la t3, claimed
        sd t1, 0(t3)
        EXIT 0
        .data
        .balign 8
result: .dword 0
claimed: .dword 0
""")
    r = m.run(10_000)
    assert r.reason == Stop.IDLE
    m.skip_to(r.deadline)
    assert m.run(10_000).reason == Stop.HTIF_EXIT
    assert u64(m, sym["claimed"]) == 11
    assert u64(m, sym["result"]) >= EPOCH + 500_000_000
