/* A minimal virtio-rng driver (virtio 1.2 section 5.4, MMIO transport version
 * 2) for tests/test_core_rng.py.  One split virtqueue of 8 entries in a page of
 * its own (vq), buffers in pages of their own (bufs).
 *
 * The host drives it command by command (rng_command, called from the test's
 * `ready` loop): it describes the chains to post in `post` (descriptors and
 * avail entries, written as given, malformed or not), and reads the used ring,
 * the buffers and the command results back from RAM.  Interrupts are taken
 * by polling: the rng's PLIC source is enabled for hart 0's M context and
 * mie.MEIE is set with mstatus.MIE clear, so WFI wakes up on it and the
 * driver claims it from the PLIC. */
#include "virtio_mmio.h"

#define RNG_BASE 0x10007000ul            /* virtio-mmio slot 6 */
#define RNG_IRQ 7                        /* PLIC source 1 + slot */
#define PLIC 0x0c000000ul
#define REG(off) (*(volatile uint32_t *)(RNG_BASE + (off)))
#define R32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define MIP_MEIP (1ul << 11)



volatile struct vq vq __attribute__((aligned(4096), section(".bss.rng_vq")));
volatile uint8_t bufs[4][4096] __attribute__((aligned(4096), section(".bss.rng_bufs")));

/* What POST puts on the queue (written by the host). */
struct post {
    uint64_t ndesc;                 /* descriptors copied to vq.desc[0..ndesc) */
    struct desc desc[QN];
    uint64_t nheads;                /* avail entries appended */
    uint16_t heads[QN];
    uint64_t idx_extra;             /* added to avail.idx on top: a bogus jump */
};
volatile struct post post;

enum { CMD_NONE, CMD_POST, CMD_NOTIFY, CMD_WAIT_IRQ, CMD_STATUS, CMD_SET_USED_ADDR,
       CMD_SET_AVAIL_FLAGS, CMD_SET_DESC_ADDR, CMD_REINIT };

extern void rng_kick(void);         /* the QueueNotify store, in the test's assembly */

#define set_addr(low, high, a) set_addr_at(RNG_BASE, (low), (high), (uint64_t)(uintptr_t)(a))

/* 0 on success, otherwise the step that failed. */
int rng_init(void)
{
    if (REG(MAGIC) != 0x74726976u || REG(VERSION) != 2 || REG(DEVICE_ID) != 4)
        return 1;
    REG(STATUS) = 0;
    REG(STATUS) = ST_ACKNOWLEDGE;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER;
    REG(DEVICE_FEATURES_SEL) = 0;
    uint32_t low = REG(DEVICE_FEATURES);
    REG(DEVICE_FEATURES_SEL) = 1;
    uint32_t high = REG(DEVICE_FEATURES);
    if (low != 0 || high != 1)                   /* VIRTIO_F_VERSION_1 and nothing else */
        return 2;
    REG(DRIVER_FEATURES_SEL) = 0;
    REG(DRIVER_FEATURES) = 0;
    REG(DRIVER_FEATURES_SEL) = 1;
    REG(DRIVER_FEATURES) = 1;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK;
    if (!(REG(STATUS) & ST_FEATURES_OK))
        return 3;
    REG(QUEUE_SEL) = 0;
    if (REG(QUEUE_NUM_MAX) < QN)
        return 4;
    for (unsigned i = 0; i < sizeof vq; i++)
        ((volatile uint8_t *)&vq)[i] = 0;
    REG(QUEUE_NUM) = QN;
    set_addr(QUEUE_DESC_LOW, QUEUE_DESC_HIGH, (uintptr_t)vq.desc);
    set_addr(QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, (uintptr_t)&vq.avail_flags);
    set_addr(QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, (uintptr_t)&vq.used_flags);
    REG(QUEUE_READY) = 1;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK;

    R32(PLIC + 4 * RNG_IRQ) = 1;                 /* priority */
    R32(PLIC + 0x2000) = 1u << RNG_IRQ;          /* enabled for context 0 (hart 0, M) */
    R32(PLIC + 0x200000) = 0;                    /* threshold */
    __asm__ volatile("csrs mie, %0" :: "r"(MIP_MEIP));
    return 0;
}

uint64_t rng_command(uint64_t command, uint64_t arg)
{
    switch (command) {
    case CMD_POST: {
        for (uint64_t i = 0; i < post.ndesc && i < QN; i++)
            vq.desc[i] = post.desc[i];
        uint16_t idx = vq.avail_idx;
        for (uint64_t i = 0; i < post.nheads && i < QN; i++)
            vq.avail_ring[(uint16_t)(idx + i) % QN] = post.heads[i];
        __sync_synchronize();
        vq.avail_idx = idx + post.nheads + post.idx_extra;
        __sync_synchronize();
        rng_kick();
        return 0;
    }
    case CMD_NOTIFY:
        rng_kick();
        return 0;
    case CMD_WAIT_IRQ: {
        while (!(mip() & MIP_MEIP))
            __asm__ volatile("wfi");
        uint32_t claim = R32(PLIC + 0x200004);
        uint32_t isr = REG(INTERRUPT_STATUS);
        REG(INTERRUPT_ACK) = isr;
        R32(PLIC + 0x200004) = claim;
        return claim | (uint64_t)isr << 8 | (mip() & MIP_MEIP) << 5;   /* MEIP after: bit 16 */
    }
    case CMD_STATUS:
        return REG(STATUS) | (uint64_t)REG(INTERRUPT_STATUS) << 16 |
               (mip() & MIP_MEIP ? 1ull << 32 : 0);
    case CMD_SET_USED_ADDR:
        set_addr(QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, arg);
        return 0;
    case CMD_SET_AVAIL_FLAGS:
        vq.avail_flags = (uint16_t)arg;
        return 0;
    case CMD_SET_DESC_ADDR:
        set_addr(QUEUE_DESC_LOW, QUEUE_DESC_HIGH, arg);
        return 0;
    case CMD_REINIT:
        return rng_init();
    default:
        return 0;
    }
}
