"""Every device's state survives a snapshot through the store.

A small guest (tests/rvasm.py) puts each device of the board in a
non-trivial state, then stops at `snap_point` (a breakpoint) in S-mode:

- UART: LCR/IER/MCR/SCR/FCR and the divisor latch set, a THRE interrupt
  pending, and (put there by the host right before the snapshot) bytes in
  the receive FIFO;
- CLINT: mtimecmp set, msip set;
- PLIC: priorities, enables and thresholds of both contexts, source 10
  (UART) claimed and not completed, source 8 (virtio-blk) pending;
- fw_cfg: the file directory selected and read part way;
- goldfish RTC: the time set by the guest, an alarm armed 3 ms ahead, its
  interrupt enabled;
- virtio-blk: VERSION_1 negotiated, one queue configured, two requests done
  (last_avail_idx = 2), an interrupt not acknowledged;
- virtio-rng: VERSION_1 negotiated, one request answered by the host, a second
  one notified and not answered yet (the host leaves that stop unanswered);
- the hart: S-mode with satp = Sv39 (identity gigapages), SSIP/MSIP/MEIP
  pending but masked, an LR reservation held.

The snapshot is saved into a store, restored into a fresh machine (in this
process, and in a new one with guest_from_snapshot), and then
(a) save_state() is byte-identical to the original's at the snapshot, and
(b) continuing gives what the uninterrupted machine gives: the guest reads
every register back, uses each device once more (takes the SSIP, completes
the SC, waits for the alarm, claims what is pending, runs a third virtio
request) and exits through HTIF with a checksum of everything it saw.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import rvasm
from chrono.core.launch import GuestSpec, launch
from chrono.core.machine import Stop
from chrono.store import Store
from chrono.store.capture import Snapshots
from snapshot_driver import EPOCH, Driver, digest_dict, fixed_entropy

CHILD = Path(__file__).parent / "snapshot_driver.py"
RAM = 16 << 20
DISK_SIZE = 1 << 20
RX_BYTES = b"snapshot!"

ASM = r"""
main:
        PMP_ALLOW_ALL
        call setup                      // M-mode: every device, the S-mode CSRs, paging
        ENTER_S s_main
s_main:
        la t0, resv_word
        lr.d t1, (t0)                   // the reservation the snapshot must keep
        addi t1, t1, 0x77
        .globl snap_point
snap_point:
        sc.d t2, t1, (t0)
        mv a0, t2
        call after                      // S-mode: read everything back, exit with a checksum
1:      j 1b

        .globl take_ssip
take_ssip:                              // let the pending (delegated) SSIP in, here
        csrsi sstatus, 2
        nop
        csrci sstatus, 2
        ret

        .globl s_trap
        .align 2
s_trap:
        la t0, s_trap_rec
        csrr t1, scause
        sd t1, 0(t0)
        ld t1, 8(t0)
        addi t1, t1, 1
        sd t1, 8(t0)
        csrci sip, 2
        sret

        .data
        .balign 8
        .globl resv_word, s_trap_rec
resv_word:  .dword 0x1234
s_trap_rec: .dword 0, 0
"""

C = r"""
#include <stdint.h>

#define UART 0x10000000ul
#define CLINT 0x02000000ul
#define PLIC 0x0c000000ul
#define RTC 0x00101000ul
#define FW_CFG 0x10100000ul
#define BLK 0x10008000ul                /* virtio-mmio slot 7: PLIC source 8 */
#define RNG 0x10007000ul                /* virtio-mmio slot 6: PLIC source 7 */

#define R8(a) (*(volatile uint8_t *)(uintptr_t)(a))
#define R32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define R16(a) (*(volatile uint16_t *)(uintptr_t)(a))
#define R8(a) (*(volatile uint8_t *)(uintptr_t)(a))
#define R64(a) (*(volatile uint64_t *)(uintptr_t)(a))
#define CSRR(n) ({ uint64_t v_; __asm__ volatile("csrr %0, " #n : "=r"(v_)); v_; })
#define CSRW(n, v) __asm__ volatile("csrw " #n ", %0" :: "r"((uint64_t)(v)))
#define CSRS(n, v) __asm__ volatile("csrs " #n ", %0" :: "r"((uint64_t)(v)))

extern volatile uint64_t tohost;
extern volatile uint64_t resv_word;
extern volatile uint64_t s_trap_rec[2];
extern void s_trap(void);
extern void take_ssip(void);

volatile uint64_t results[128];
volatile uint64_t nresults;
volatile uint64_t before[4];

static void put(uint64_t v) { results[nresults] = v; nresults = nresults + 1; }

/* ---- virtio-blk: one queue of 8, chains at heads 0 (0-1-2) and 3 (3-4-5) */
struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct vq {
    struct desc desc[8];
    uint16_t avail_flags, avail_idx, avail_ring[8], used_event;
    uint16_t pad;
    uint16_t used_flags, used_idx;
    struct { uint32_t id, len; } used_ring[8];
    uint16_t avail_event;
};
static volatile struct vq vq __attribute__((aligned(4096)));
static volatile struct { uint32_t type, reserved; uint64_t sector; } hdr[2];
static volatile uint8_t status[2];
static volatile uint8_t buf[4][512] __attribute__((aligned(512)));
static volatile struct vq rq __attribute__((aligned(4096)));     /* the rng's queue */
static volatile uint8_t rbuf[2][64];
static uint64_t pt[512] __attribute__((aligned(4096)));

static uint32_t blk_request(int chain, uint32_t type, uint64_t sector, volatile uint8_t *data)
{
    int h = 3 * chain;
    hdr[chain].type = type;
    hdr[chain].reserved = 0;
    hdr[chain].sector = sector;
    status[chain] = 0xff;
    vq.desc[h] = (struct desc){ (uintptr_t)&hdr[chain], 16, 1, h + 1 };
    vq.desc[h + 1] = (struct desc){ (uintptr_t)data, 512, 1 | (type == 0 ? 2 : 0), h + 2 };
    vq.desc[h + 2] = (struct desc){ (uintptr_t)&status[chain], 1, 2, 0 };
    vq.avail_ring[vq.avail_idx % 8] = h;
    __sync_synchronize();
    vq.avail_idx = vq.avail_idx + 1;
    __sync_synchronize();
    R32(BLK + 0x50) = 0;                /* QueueNotify: served synchronously */
    __sync_synchronize();
    return status[chain];
}

/* virtio-rng: one writable buffer per request, at heads 0 and 1. */
static void rng_request(int n, uint32_t len)
{
    rq.desc[n] = (struct desc){ (uintptr_t)rbuf[n], len, 2, 0 };
    rq.avail_ring[rq.avail_idx % 8] = n;
    __sync_synchronize();
    rq.avail_idx = rq.avail_idx + 1;
    __sync_synchronize();
    R32(RNG + 0x50) = 0;                /* QueueNotify: the host answers, or not */
    __sync_synchronize();
}

static uint64_t sum(volatile uint8_t *p, int n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void setup(void)
{
    /* UART: divisor 0x010c, 8 data bits + even parity, FIFO on, IER = RDA | THRE */
    R8(UART + 3) = 0x80;
    R8(UART + 0) = 0x0c;
    R8(UART + 1) = 0x01;
    R8(UART + 3) = 0x1b;
    R8(UART + 2) = 0x01;
    R8(UART + 4) = 0x0b;
    R8(UART + 7) = 0x5a;
    R8(UART + 1) = 0x03;                /* enabling THRE with THR empty: THRE pending */

    /* CLINT */
    R64(CLINT + 0x4000) = 0x123456789abcull;
    R32(CLINT) = 1;

    /* PLIC: source 8 prio 6, 10 prio 3, 11 prio 5, 5 prio 2 */
    R32(PLIC + 4 * 5) = 2;
    R32(PLIC + 4 * 8) = 6;
    R32(PLIC + 4 * 10) = 3;
    R32(PLIC + 4 * 11) = 5;
    R32(PLIC + 0x2000) = (1u << 8) | (1u << 10) | (1u << 11);
    R32(PLIC + 0x2080) = (1u << 10) | (1u << 11);
    R32(PLIC + 0x200000) = 1;
    R32(PLIC + 0x201000) = 4;
    before[0] = R32(PLIC + 0x200004);   /* claims 10 (UART THRE), not completed */

    /* goldfish RTC: set the time, arm an alarm 3 ms ahead, enable its irq */
    R32(RTC + 0x04) = 0x17;
    R32(RTC + 0x00) = 0x89abcdefu;
    uint32_t lo = R32(RTC + 0x00);
    uint64_t now = ((uint64_t)R32(RTC + 0x04) << 32) | lo;
    uint64_t alarm = now + 3000000;
    R32(RTC + 0x0c) = (uint32_t)(alarm >> 32);
    R32(RTC + 0x08) = (uint32_t)alarm;
    R32(RTC + 0x10) = 1;
    before[1] = now;

    /* fw_cfg: the file directory selected, its first 8 bytes read */
    R16(FW_CFG + 8) = 0x1900;           /* key 0x19, big-endian */
    for (int i = 0; i < 8; i++)
        (void)R8(FW_CFG);

    /* virtio-blk: VERSION_1 only, queue 0 of 8, two requests, interrupt left unacknowledged */
    R32(BLK + 0x70) = 0;
    R32(BLK + 0x70) = 1;
    R32(BLK + 0x70) = 3;
    R32(BLK + 0x24) = 1;
    R32(BLK + 0x20) = 1;
    R32(BLK + 0x24) = 0;
    R32(BLK + 0x20) = 0;
    R32(BLK + 0x70) = 11;
    R32(BLK + 0x30) = 0;
    R32(BLK + 0x38) = 8;
    R32(BLK + 0x80) = (uint32_t)(uintptr_t)vq.desc;
    R32(BLK + 0x84) = 0;
    R32(BLK + 0x90) = (uint32_t)(uintptr_t)&vq.avail_flags;
    R32(BLK + 0x94) = 0;
    R32(BLK + 0xa0) = (uint32_t)(uintptr_t)&vq.used_flags;
    R32(BLK + 0xa4) = 0;
    R32(BLK + 0x44) = 1;
    R32(BLK + 0x70) = 15;
    for (int i = 0; i < 512; i++)
        buf[0][i] = (uint8_t)(i * 7 + 3);
    before[2] = blk_request(0, 1, 3, buf[0]);                   /* write sector 3 */
    before[3] = blk_request(1, 0, 3, buf[1]) << 8 | vq.used_idx; /* read it back */

    /* virtio-rng: VERSION_1 only, queue 0 of 8, a request answered, one pending */
    R32(RNG + 0x70) = 0;
    R32(RNG + 0x70) = 3;
    R32(RNG + 0x24) = 1;
    R32(RNG + 0x20) = 1;
    R32(RNG + 0x70) = 11;
    R32(RNG + 0x38) = 8;
    R32(RNG + 0x80) = (uint32_t)(uintptr_t)rq.desc;
    R32(RNG + 0x90) = (uint32_t)(uintptr_t)&rq.avail_flags;
    R32(RNG + 0xa0) = (uint32_t)(uintptr_t)&rq.used_flags;
    R32(RNG + 0x44) = 1;
    R32(RNG + 0x70) = 15;
    rng_request(0, 64);
    rng_request(1, 48);

    /* hart: SSIP pending (delegated, masked by sstatus.SIE), MSIP and MEIP pending
     * (mie masks them), counters for S-mode, Sv39 identity paging. */
    CSRW(mcounteren, 7);
    CSRW(mideleg, (1 << 1) | (1 << 5) | (1 << 9));
    CSRW(mie, 1 << 1);
    CSRS(mip, 1 << 1);
    CSRW(stvec, (uintptr_t)s_trap);
    CSRW(sscratch, 0x5c5c5c5cull);
    pt[0] = 0xc7;                                       /* 0 - 1 GiB: devices, RW */
    pt[2] = ((0x80000000ull >> 12) << 10) | 0xcf;       /* RAM, RWX */
    CSRW(satp, (8ull << 60) | ((uintptr_t)pt >> 12));
    __asm__ volatile("sfence.vma");
}

void after(uint64_t sc)
{
    put(sc);                                    /* 0: the reservation survived */
    put(resv_word);
    put(CSRR(sstatus)); put(CSRR(sie)); put(CSRR(sip)); put(CSRR(satp));
    put(CSRR(stvec)); put(CSRR(sscratch));

    /* UART */
    put(R8(UART + 2));                          /* IIR: received data */
    uint64_t rx = 0, n = 0;
    while ((R8(UART + 5) & 1) && n < 32) {
        rx = rx << 8 | R8(UART + 0);
        n++;
    }
    put(n); put(rx);
    put(R8(UART + 2));                          /* IIR: THRE (reading acknowledges it) */
    put(R8(UART + 2));                          /* IIR: nothing */
    put(R8(UART + 1)); put(R8(UART + 3)); put(R8(UART + 4)); put(R8(UART + 7)); put(R8(UART + 6));
    R8(UART + 3) = 0x9b;
    put(R8(UART + 0)); put(R8(UART + 1));       /* the divisor latch */
    R8(UART + 3) = 0x1b;

    /* CLINT */
    put(R32(CLINT)); put(R64(CLINT + 0x4000));

    /* PLIC */
    for (int i = 1; i <= 11; i++)
        put(R32(PLIC + 4 * i));
    put(R32(PLIC + 0x1000));                    /* pending: 8, not the claimed 10 */
    put(R32(PLIC + 0x2000)); put(R32(PLIC + 0x2080));
    put(R32(PLIC + 0x200000)); put(R32(PLIC + 0x201000));
    uint32_t c = R32(PLIC + 0x200004);          /* claim: 8 */
    put(c);
    R32(PLIC + 0x200004) = c;
    R32(PLIC + 0x200004) = 10;                  /* complete the claim made before the snapshot */
    put(R32(PLIC + 0x1000));

    /* virtio-blk */
    put(R32(BLK + 0x70)); put(R32(BLK + 0x44)); put(R32(BLK + 0x60));
    put(R32(BLK + 0x80)); put(R32(BLK + 0x90)); put(R32(BLK + 0xa0));
    R32(BLK + 0x70) = R32(BLK + 0x70);          /* FEATURES_OK stays only if the features did */
    put(R32(BLK + 0x70));
    R32(BLK + 0x64) = R32(BLK + 0x60);
    put(R32(BLK + 0x60));
    vq.desc[4].addr = (uintptr_t)buf[3];        /* a replayed old request would land in buf[3] */
    for (int i = 0; i < 512; i++)
        buf[2][i] = (uint8_t)(i ^ 0x5a);
    put(blk_request(0, 1, 4, buf[2]));          /* write sector 4 */
    put(vq.used_idx);
    put(sum(buf[3], 512));                      /* still zero: no old request was replayed */
    put(blk_request(1, 0, 4, buf[3]));          /* read sector 4 */
    put(vq.used_idx);
    put(sum(buf[1], 512));                      /* sector 3, read before the snapshot */
    put(sum(buf[3], 512) == sum(buf[2], 512)); put(R32(BLK + 0x60));

    /* virtio-rng: the pending request was answered as the run resumed */
    put(R32(RNG + 0x70)); put(R32(RNG + 0x60)); put(rq.used_idx);
    put(rq.used_ring[0].len); put(rq.used_ring[1].id); put(rq.used_ring[1].len);
    put(sum(rbuf[0], 64)); put(sum(rbuf[1], 64));

    /* fw_cfg: the directory reads on from where it was */
    uint64_t dir = 0;
    for (int i = 0; i < 8; i++)
        dir = dir << 8 | R8(FW_CFG);
    put(dir);

    /* RTC */
    put(R32(RTC + 0x08)); put(R32(RTC + 0x0c)); put(R32(RTC + 0x18)); put(R32(RTC + 0x10));
    uint32_t lo = R32(RTC + 0x00);
    put((uint64_t)R32(RTC + 0x04) << 32 | lo);

    /* the pending SSIP is taken as soon as S-mode enables it */
    take_ssip();
    put(s_trap_rec[0]); put(s_trap_rec[1]); put(CSRR(sip));

    /* the alarm fires: PLIC source 11 pending, SEIP for S-mode */
    uint64_t polls = 0;
    while (R32(RTC + 0x18))
        polls++;
    put(polls);
    put(R32(PLIC + 0x1000)); put(CSRR(sip));
    c = R32(PLIC + 0x201004);                   /* claim (S context): 11 */
    put(c);
    R32(RTC + 0x1c) = 1;
    R32(PLIC + 0x201004) = c;
    put(R32(PLIC + 0x1000)); put(CSRR(sip));
    put(CSRR(time)); put(CSRR(instret));

    uint64_t h = 0xcbf29ce484222325ull;
    for (uint64_t i = 0; i < nresults; i++)
        h = (h ^ results[i]) * 0x100000001b3ull;
    tohost = ((h & 0xffffffffu) << 1) | 1;
    for (;;)
        ;
}
"""

# What after() puts, in order.
NAMES = (
    "sc", "resv_word", "sstatus", "sie", "sip", "satp", "stvec", "sscratch",
    "uart_iir_rx", "uart_rx_count", "uart_rx", "uart_iir_thre", "uart_iir_none",
    "uart_ier", "uart_lcr", "uart_mcr", "uart_scr", "uart_msr", "uart_dll", "uart_dlm",
    "clint_msip", "clint_mtimecmp",
    *[f"plic_prio_{i}" for i in range(1, 12)],
    "plic_pending", "plic_enable_m", "plic_enable_s", "plic_threshold_m", "plic_threshold_s",
    "plic_claim_m", "plic_pending_after_complete",
    "blk_status", "blk_queue_ready", "blk_isr", "blk_desc", "blk_avail", "blk_used",
    "blk_status_rewritten", "blk_isr_acked", "blk_write_status", "blk_used_idx_3",
    "blk_no_replay", "blk_read_status", "blk_used_idx_4", "blk_sector_3", "blk_read_back",
    "blk_isr_end",
    "rng_status", "rng_isr", "rng_used_idx", "rng_len_0", "rng_id_1", "rng_len_1",
    "rng_buffer_0", "rng_buffer_1",
    "fw_cfg_dir",
    "rtc_alarm_low", "rtc_alarm_high", "rtc_alarm_armed", "rtc_irq_enabled", "rtc_time",
    "ssip_cause", "ssip_count", "sip_after_ssip",
    "alarm_polls", "plic_pending_alarm", "sip_alarm", "plic_claim_s", "plic_pending_end",
    "sip_end", "time", "instret",
)

MIP_SSIP, MIP_MSIP, MIP_SEIP, MIP_MEIP = 1 << 1, 1 << 3, 1 << 9, 1 << 11


def fnv(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & (2**64 - 1)
    return h


def u64s(machine, address, count):
    return list(struct.unpack(f"<{count}Q", machine.read_phys(address, 8 * count)))


class DeviceGuest:
    """The device guest stopped at snap_point, with RX bytes in the UART."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.elf = rvasm.build(ASM, c_source=C)
        self.image = tmp_path / "disk.img"
        self.image.write_bytes(bytes(DISK_SIZE))
        self.guest = launch(self.spec())
        self.m = self.guest.machine
        self.sym = self.guest.boot.symbols
        self.m.add_breakpoint(self.sym["snap_point"])
        r = self.m.run(1_000_000)
        assert r.reason == Stop.ENTROPY and r.code == 64, r         # the first rng request
        assert self.m.entropy_write(fixed_entropy(64)) == 64
        r = self.m.run(1_000_000)
        assert r.reason == Stop.ENTROPY and r.code == 48, r         # the second: left unanswered
        r = self.m.run(1_000_000)
        assert r.reason == Stop.BREAKPOINT and self.m.pc == self.sym["snap_point"], (
            r, hex(self.m.pc), u64s(self.m, self.sym["trap_record"], 5))
        self.m.remove_breakpoint(self.sym["snap_point"])
        assert self.m.console_write(RX_BYTES) == len(RX_BYTES)

    def spec(self):
        return GuestSpec(kernel=self.elf, disk=self.image, ram_size=RAM, rtc_epoch_ns=EPOCH)

    def finish(self, machine, tag):
        """Run on to the guest's HTIF exit; returns (exit code, results, digest)."""
        driver = Driver(machine, b"", self.tmp, tag)
        outcome = driver.run(100_000_000)
        driver.close()
        assert outcome.kind == "exit", (outcome, u64s(machine, self.sym["trap_record"], 5))
        n = u64s(machine, self.sym["nresults"], 1)[0]
        assert n == len(NAMES), n
        results = dict(zip(NAMES, u64s(machine, self.sym["results"], n)))
        return outcome.exit_code, results, digest_dict(machine)


@pytest.fixture
def saved(tmp_path):
    """The device guest at snap_point, saved as `devices`; yields (guest, state, store)."""
    dg = DeviceGuest(tmp_path)
    state = dg.m.save_state()
    with Store.open(tmp_path / "store", create=True) as store:
        snaps = Snapshots(store, dg.guest)
        snaps.save("devices")
        snaps.close()
    assert dg.m.save_state() == state
    yield dg, state


def test_the_guest_puts_every_device_in_a_non_trivial_state(saved):
    """The uninterrupted run: what the restored ones must reproduce, and proof
    that the state at the snapshot was not a trivial one."""
    dg, _ = saved
    assert dg.m.priv == 1 and dg.m.csr(0x180) >> 60 == 8        # S-mode, Sv39
    before = u64s(dg.m, dg.sym["before"], 4)
    assert before[0] == 10                                      # the UART claim
    assert before[2] == 0 and before[3] == 2                    # two requests, status OK
    assert dg.m.entropy_wanted() == 48                          # the rng request pending
    _, r, _ = dg.finish(dg.m, "uninterrupted")
    assert r["sc"] == 0 and r["resv_word"] == 0x1234 + 0x77
    assert r["sip"] & MIP_SSIP and r["satp"] >> 60 == 8
    assert r["uart_iir_rx"] == 0xc4 and r["uart_rx_count"] == len(RX_BYTES)
    assert r["uart_rx"] == int.from_bytes(RX_BYTES[-8:], "big")
    assert (r["uart_iir_thre"], r["uart_iir_none"]) == (0xc2, 0xc1)
    assert (r["uart_ier"], r["uart_lcr"], r["uart_mcr"], r["uart_scr"]) == (3, 0x1b, 0x0b, 0x5a)
    assert (r["uart_dll"], r["uart_dlm"]) == (0x0c, 0x01)
    assert (r["clint_msip"], r["clint_mtimecmp"]) == (1, 0x123456789abc)
    assert [r[f"plic_prio_{i}"] for i in (5, 8, 10, 11)] == [2, 6, 3, 5]
    assert r["plic_pending"] & (1 << 8) and not r["plic_pending"] & (1 << 10)
    assert (r["plic_threshold_m"], r["plic_threshold_s"]) == (1, 4)
    assert r["plic_claim_m"] == 8
    assert r["blk_status"] == 15 and r["blk_status_rewritten"] == 15 and r["blk_isr"] == 1
    assert (r["blk_write_status"], r["blk_used_idx_3"]) == (0, 3)
    assert r["blk_no_replay"] == fnv(bytes(512))
    assert (r["blk_read_status"], r["blk_used_idx_4"], r["blk_read_back"]) == (0, 4, 1)
    assert r["blk_sector_3"] == fnv(bytes((i * 7 + 3) & 0xFF for i in range(512)))
    assert r["rtc_alarm_armed"] == 1 and r["rtc_irq_enabled"] == 1
    assert r["rtc_time"] >> 32 == 0x17
    assert (r["ssip_cause"], r["ssip_count"]) == ((1 << 63) | 1, 1)
    assert r["alarm_polls"] > 1000
    assert r["plic_pending_alarm"] & (1 << 11) and r["sip_alarm"] & MIP_SEIP
    assert r["plic_claim_s"] == 11
    assert (r["rng_status"], r["rng_isr"], r["rng_used_idx"]) == (15, 1, 2)
    assert (r["rng_len_0"], r["rng_id_1"], r["rng_len_1"]) == (64, 1, 48)
    assert r["rng_buffer_0"] == fnv(fixed_entropy(64))
    assert r["rng_buffer_1"] == fnv(fixed_entropy(48) + bytes(16))
    # the first file's key, then its name: the read went on at byte 8
    assert r["fw_cfg_dir"] == int.from_bytes(b"\x00\x20\x00\x00bios", "big")


def assert_same(got, expected, where):
    code, results, digest = got
    e_code, e_results, e_digest = expected
    differ = {k: (hex(results[k]), hex(e_results[k])) for k in NAMES if results[k] != e_results[k]}
    assert not differ, f"{where}: the guest read different values (got, expected): {differ}"
    assert code == e_code
    for part in ("position", "state", "ram", "disk"):
        assert digest[part] == e_digest[part], f"{where}: {part} differs at the exit"


def test_a_fresh_machine_in_this_process_restores_every_device(saved):
    dg, state = saved
    expected = dg.finish(dg.m, "uninterrupted")
    other = launch(dg.spec())                   # at reset, boot image in RAM
    with Store.open(dg.tmp / "store") as store:
        snaps = Snapshots(store, other)
        snaps.load("devices")
        assert other.machine.save_state() == state
        got = dg.finish(other.machine, "restored-here")
        snaps.close()
    assert_same(got, expected, "restored in this process")


def test_the_same_machine_restores_every_device_after_running_on(saved):
    """Delta restore over the machine that ran to its exit (devices, RAM and
    disk all moved on)."""
    dg, state = saved
    expected = dg.finish(dg.m, "uninterrupted")
    with Store.open(dg.tmp / "store") as store:
        snaps = Snapshots(store, dg.guest)
        snaps.load("devices")
        assert dg.m.save_state() == state
        got = dg.finish(dg.m, "restored-over-itself")
        snaps.close()
    assert_same(got, expected, "restored over the same machine")


def test_a_new_process_restores_every_device(saved):
    dg, state = saved
    expected = dg.finish(dg.m, "uninterrupted")
    (dg.tmp / "empty.in").write_bytes(b"")
    proc = subprocess.run([sys.executable, str(CHILD), str(dg.tmp / "store"), "devices",
                           "100000000", str(dg.tmp / "empty.in"), str(dg.tmp / "child.out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    restored = bytes.fromhex(result["state_after_restore"])
    assert len(restored) == len(state)
    if restored != state:
        first = next(i for i in range(len(state)) if restored[i] != state[i])
        pytest.fail(f"save_state() after the restore differs from the original, first at byte {first}")
    assert result["kind"] == "exit"
    code, _, digest = expected
    assert result["exit_code"] == code, "the guest's checksum of the device registers differs"
    for part in ("position", "state", "ram", "disk"):
        assert result["digest"][part] == digest[part], f"{part} differs at the exit"
