/* A minimal virtio-net driver (virtio 1.2 section 5.1, MMIO transport version
 * 2) for tests/test_core_net.py: receiveq (queue 0) and transmitq (queue 1),
 * 8 entries each, in pages of their own; buffers in pages of their own.
 *
 * The host drives it command by command (net_command, from the test's `ready`
 * loop) and reads the rings and buffers back from RAM.  Interrupts are taken
 * by polling, as in virtio_rng.c: the PLIC source is enabled for hart 0's M
 * context, mie.MEIE set with mstatus.MIE clear, so WFI wakes on it. */
#include "virtio_mmio.h"

#define NET_BASE 0x10006000ul            /* virtio-mmio slot 5 */
#define NET_IRQ 6                        /* PLIC source 1 + slot */
#define PLIC 0x0c000000ul
#define REG(off) (*(volatile uint32_t *)(NET_BASE + (off)))
#define CFG8(off) (*(volatile uint8_t *)(NET_BASE + 0x100 + (off)))
#define CFG16(off) (*(volatile uint16_t *)(NET_BASE + 0x100 + (off)))
#define R32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define MIP_MEIP (1ul << 11)

#define F_GUEST_CSUM (1u << 1)
#define F_MAC (1u << 5)
#define F_STATUS (1u << 16)
#define HDR 12


volatile struct vq rxq __attribute__((aligned(4096), section(".bss.net_rxq")));
volatile struct vq txq __attribute__((aligned(4096), section(".bss.net_txq")));
volatile uint8_t rxbufs[QN][4096] __attribute__((aligned(4096), section(".bss.net_rxbufs")));
volatile uint8_t txbuf[4096] __attribute__((aligned(4096), section(".bss.net_txbuf")));

/* What the driver accepts (the host may change it before the driver starts). */
volatile uint32_t accepted_features = F_MAC;

enum { CMD_NONE, CMD_POST_RX, CMD_SEND, CMD_WAIT_IRQ, CMD_CONFIG, CMD_QUEUES };

extern void net_kick_tx(void);      /* the QueueNotify stores, in the test's assembly */
extern void net_kick_rx(void);

#define set_addr(low, high, a) set_addr_at(NET_BASE, (low), (high), (uint64_t)(uintptr_t)(a))

static int queue_init(uint32_t index, volatile struct vq *q)
{
    REG(QUEUE_SEL) = index;
    if (REG(QUEUE_NUM_MAX) < QN)
        return 1;
    for (unsigned i = 0; i < sizeof *q; i++)
        ((volatile uint8_t *)q)[i] = 0;
    REG(QUEUE_NUM) = QN;
    set_addr(QUEUE_DESC_LOW, QUEUE_DESC_HIGH, (uintptr_t)q->desc);
    set_addr(QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, (uintptr_t)&q->avail_flags);
    set_addr(QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, (uintptr_t)&q->used_flags);
    REG(QUEUE_READY) = 1;
    return 0;
}

/* 0 on success, otherwise the step that failed. */
int net_init(void)
{
    if (REG(MAGIC) != 0x74726976u || REG(VERSION) != 2 || REG(DEVICE_ID) != 1)
        return 1;
    REG(STATUS) = 0;
    REG(STATUS) = ST_ACKNOWLEDGE;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER;
    REG(DEVICE_FEATURES_SEL) = 0;
    uint32_t low = REG(DEVICE_FEATURES);
    REG(DEVICE_FEATURES_SEL) = 1;
    uint32_t high = REG(DEVICE_FEATURES);
    if (low != (F_GUEST_CSUM | F_MAC | F_STATUS) || high != 1)  /* ... and VERSION_1 */
        return 2;
    REG(DRIVER_FEATURES_SEL) = 0;
    REG(DRIVER_FEATURES) = accepted_features;
    REG(DRIVER_FEATURES_SEL) = 1;
    REG(DRIVER_FEATURES) = 1;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK;
    if (!(REG(STATUS) & ST_FEATURES_OK))
        return 3;
    if (queue_init(0, &rxq) || queue_init(1, &txq))
        return 4;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK;

    R32(PLIC + 4 * NET_IRQ) = 1;                 /* priority */
    R32(PLIC + 0x2000) = 1u << NET_IRQ;          /* enabled for context 0 (hart 0, M) */
    R32(PLIC + 0x200000) = 0;                    /* threshold */
    __asm__ volatile("csrs mie, %0" :: "r"(MIP_MEIP));
    return 0;
}

static void make_available(volatile struct vq *q, uint16_t head)
{
    uint16_t idx = q->avail_idx;
    q->avail_ring[idx % QN] = head;
    __sync_synchronize();
    q->avail_idx = idx + 1;
    __sync_synchronize();
}

uint64_t net_command(uint64_t command, uint64_t arg)
{
    switch (command) {
    case CMD_POST_RX: {                 /* arg: count | buffer length << 32 */
        uint32_t count = (uint32_t)arg, len = (uint32_t)(arg >> 32);
        for (uint32_t i = 0; i < count; i++) {
            uint16_t slot = (uint16_t)(rxq.avail_idx % QN);
            rxq.desc[slot] = (struct desc){ (uintptr_t)rxbufs[slot], len, DESC_F_WRITE, 0 };
            make_available(&rxq, slot);
        }
        net_kick_rx();
        return 0;
    }
    case CMD_SEND: {                    /* arg: frame length; txbuf + HDR holds the frame */
        /* Two descriptors, the header then the frame (devices must not care
         * where the borders fall), in descriptor slots 2k and 2k+1. */
        uint16_t head = (uint16_t)((txq.avail_idx % (QN / 2)) * 2);
        for (int i = 0; i < HDR; i++)
            txbuf[i] = 0;
        txq.desc[head] = (struct desc){ (uintptr_t)txbuf, HDR, DESC_F_NEXT, (uint16_t)(head + 1) };
        txq.desc[head + 1] = (struct desc){ (uintptr_t)txbuf + HDR, (uint32_t)arg, 0, 0 };
        make_available(&txq, head);
        net_kick_tx();
        return txq.used_idx;
    }
    case CMD_WAIT_IRQ: {
        while (!(mip() & MIP_MEIP))
            __asm__ volatile("wfi");
        uint32_t claim = R32(PLIC + 0x200004);
        uint32_t isr = REG(INTERRUPT_STATUS);
        REG(INTERRUPT_ACK) = isr;
        R32(PLIC + 0x200004) = claim;
        return claim | (uint64_t)isr << 8;
    }
    case CMD_CONFIG: {                  /* mac bytes 0..5, status in bits 48..63 */
        uint64_t v = 0;
        for (int i = 0; i < 6; i++)
            v |= (uint64_t)CFG8(i) << (8 * i);
        return v | (uint64_t)CFG16(6) << 48;
    }
    case CMD_QUEUES: {                  /* QueueNumMax of queues 0, 1, 2 (8 bits each, /2) */
        uint64_t v = 0;
        for (uint32_t i = 0; i < 3; i++) {
            REG(QUEUE_SEL) = i;
            v |= (uint64_t)(REG(QUEUE_NUM_MAX) >> 1) << (8 * i);
        }
        return v;
    }
    default:
        return 0;
    }
}
