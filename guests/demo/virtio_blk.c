/* virtio_blk.c: virtio 1.x block device over virtio-mmio (Version 2 only).
 *
 * All eight virtio-mmio slots are probed; the first block device (DeviceID 2)
 * wins.  Feature negotiation accepts VIRTIO_F_VERSION_1 and nothing else (no
 * event index, no indirect descriptors).  One split virtqueue of 8 entries;
 * each request is a 3-descriptor chain (header, one 512-byte sector, status)
 * and is completed by polling the used ring, so it finishes before
 * disk_read/disk_write returns.  The device interrupt is never enabled in the
 * PLIC, and its interrupt status is acknowledged after every request. */
#include "demo.h"

#define MMIO_MAGIC              0x000
#define MMIO_VERSION            0x004
#define MMIO_DEVICE_ID          0x008
#define MMIO_DEVICE_FEATURES    0x010
#define MMIO_DEVICE_FEATURES_SEL 0x014
#define MMIO_DRIVER_FEATURES    0x020
#define MMIO_DRIVER_FEATURES_SEL 0x024
#define MMIO_QUEUE_SEL          0x030
#define MMIO_QUEUE_NUM_MAX      0x034
#define MMIO_QUEUE_NUM          0x038
#define MMIO_QUEUE_READY        0x044
#define MMIO_QUEUE_NOTIFY       0x050
#define MMIO_INTERRUPT_STATUS   0x060
#define MMIO_INTERRUPT_ACK      0x064
#define MMIO_STATUS             0x070
#define MMIO_QUEUE_DESC_LOW     0x080
#define MMIO_QUEUE_DESC_HIGH    0x084
#define MMIO_QUEUE_DRIVER_LOW   0x090
#define MMIO_QUEUE_DRIVER_HIGH  0x094
#define MMIO_QUEUE_DEVICE_LOW   0x0a0
#define MMIO_QUEUE_DEVICE_HIGH  0x0a4
#define MMIO_CONFIG_GENERATION  0x0fc
#define MMIO_CONFIG             0x100

#define VIRTIO_MAGIC            0x74726976u     /* "virt" */
#define VIRTIO_ID_BLOCK         2

#define STATUS_ACKNOWLEDGE      1
#define STATUS_DRIVER           2
#define STATUS_DRIVER_OK        4
#define STATUS_FEATURES_OK      8
#define STATUS_FAILED           128

#define F_BLK_RO                5               /* device feature bit (word 0) */
#define F_VERSION_1_HI          (1u << 0)       /* bit 32 = bit 0 of word 1 */

#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

#define BLK_T_IN                0
#define BLK_T_OUT               1
#define BLK_S_OK                0

#define QSZ 8

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[QSZ];
    uint16_t used_event;
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[QSZ];
    uint16_t avail_event;
};

struct blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static struct virtq_desc desc[QSZ] __attribute__((aligned(16)));
static struct virtq_avail avail __attribute__((aligned(16)));
static struct virtq_used used __attribute__((aligned(16)));
static struct blk_req_hdr req_hdr __attribute__((aligned(16)));
static volatile uint8_t req_status;

static uintptr_t base;          /* 0 = no disk */
static uint64_t capacity;       /* sectors */
static uint16_t last_used;
static int read_only;

static inline uint32_t r32(unsigned off) { return mmio_r32(base + off); }
static inline void w32(unsigned off, uint32_t v) { mmio_w32(base + off, v); }

static int setup(int slot)
{
    uint32_t status = 0;

    w32(MMIO_STATUS, 0);                        /* reset */
    status |= STATUS_ACKNOWLEDGE;
    w32(MMIO_STATUS, status);
    status |= STATUS_DRIVER;
    w32(MMIO_STATUS, status);

    w32(MMIO_DEVICE_FEATURES_SEL, 0);
    uint32_t f_lo = r32(MMIO_DEVICE_FEATURES);
    w32(MMIO_DEVICE_FEATURES_SEL, 1);
    uint32_t f_hi = r32(MMIO_DEVICE_FEATURES);
    if (!(f_hi & F_VERSION_1_HI)) {
        kprintf("virtio-blk: slot %d does not offer VIRTIO_F_VERSION_1\n", slot);
        goto fail;
    }
    read_only = (f_lo >> F_BLK_RO) & 1;

    w32(MMIO_DRIVER_FEATURES_SEL, 0);
    w32(MMIO_DRIVER_FEATURES, 0);
    w32(MMIO_DRIVER_FEATURES_SEL, 1);
    w32(MMIO_DRIVER_FEATURES, F_VERSION_1_HI);
    status |= STATUS_FEATURES_OK;
    w32(MMIO_STATUS, status);
    if (!(r32(MMIO_STATUS) & STATUS_FEATURES_OK)) {
        kprintf("virtio-blk: slot %d rejected our features\n", slot);
        goto fail;
    }

    w32(MMIO_QUEUE_SEL, 0);
    if (r32(MMIO_QUEUE_READY) != 0) {
        kprintf("virtio-blk: slot %d queue 0 already in use\n", slot);
        goto fail;
    }
    uint32_t max = r32(MMIO_QUEUE_NUM_MAX);
    if (max < QSZ) {
        kprintf("virtio-blk: slot %d queue too small (%u)\n", slot, max);
        goto fail;
    }
    memset(desc, 0, sizeof(desc));
    memset(&avail, 0, sizeof(avail));
    memset(&used, 0, sizeof(used));
    avail.flags = VIRTQ_AVAIL_F_NO_INTERRUPT;   /* we poll */
    last_used = 0;
    fence();

    w32(MMIO_QUEUE_NUM, QSZ);
    w32(MMIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)desc);
    w32(MMIO_QUEUE_DESC_HIGH, (uint32_t)((uintptr_t)desc >> 32));
    w32(MMIO_QUEUE_DRIVER_LOW, (uint32_t)(uintptr_t)&avail);
    w32(MMIO_QUEUE_DRIVER_HIGH, (uint32_t)((uintptr_t)&avail >> 32));
    w32(MMIO_QUEUE_DEVICE_LOW, (uint32_t)(uintptr_t)&used);
    w32(MMIO_QUEUE_DEVICE_HIGH, (uint32_t)((uintptr_t)&used >> 32));
    w32(MMIO_QUEUE_READY, 1);

    status |= STATUS_DRIVER_OK;
    w32(MMIO_STATUS, status);

    uint32_t gen, lo, hi;
    do {
        gen = r32(MMIO_CONFIG_GENERATION);
        lo = r32(MMIO_CONFIG + 0);
        hi = r32(MMIO_CONFIG + 4);
    } while (gen != r32(MMIO_CONFIG_GENERATION));
    capacity = ((uint64_t)hi << 32) | lo;
    return 0;

fail:
    w32(MMIO_STATUS, status | STATUS_FAILED);
    return -1;
}

int vblk_init(void)
{
    for (int slot = 0; slot < VIRTIO_SLOTS; slot++) {
        base = VIRTIO_BASE + 0x1000UL * (uintptr_t)slot;
        if (r32(MMIO_MAGIC) != VIRTIO_MAGIC || r32(MMIO_DEVICE_ID) != VIRTIO_ID_BLOCK)
            continue;
        uint32_t version = r32(MMIO_VERSION);
        if (version != 2) {
            kprintf("virtio-blk: slot %d is legacy virtio-mmio (version %u), not supported\n",
                    slot, version);
            continue;
        }
        if (setup(slot) == 0) {
            kprintf("virtio-blk: slot %d, %lu sectors (%lu KiB)%s\n", slot,
                    (unsigned long)capacity, (unsigned long)(capacity / 2),
                    read_only ? ", read-only" : "");
            return 0;
        }
    }
    base = 0;
    capacity = 0;
    kputs("virtio-blk: no disk found\n");
    return -1;
}

int vblk_present(void)
{
    return base != 0;
}

uint64_t vblk_capacity(void)
{
    return capacity;
}

static int do_request(uint32_t type, uint64_t sector, void *buf)
{
    if (!base || sector >= capacity)
        return -1;

    req_hdr.type = type;
    req_hdr.reserved = 0;
    req_hdr.sector = sector;
    req_status = 0xff;

    desc[0].addr = (uintptr_t)&req_hdr;
    desc[0].len = sizeof(req_hdr);
    desc[0].flags = VIRTQ_DESC_F_NEXT;
    desc[0].next = 1;
    desc[1].addr = (uintptr_t)buf;
    desc[1].len = BLOCK_SIZE;
    desc[1].flags = VIRTQ_DESC_F_NEXT | (type == BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0);
    desc[1].next = 2;
    desc[2].addr = (uintptr_t)&req_status;
    desc[2].len = 1;
    desc[2].flags = VIRTQ_DESC_F_WRITE;
    desc[2].next = 0;

    volatile struct virtq_avail *av = &avail;
    volatile struct virtq_used *us = &used;
    av->ring[av->idx % QSZ] = 0;
    fence();
    av->idx = (uint16_t)(av->idx + 1);
    fence();
    w32(MMIO_QUEUE_NOTIFY, 0);

    /* Poll for completion (a real request, so this is not idling). */
    uint64_t start = mtime();
    while (us->idx == last_used) {
        if (mtime() - start > 5 * TIMEBASE_HZ) {
            kputs("virtio-blk: request timed out\n");
            return -1;
        }
    }
    fence();
    last_used = (uint16_t)(last_used + 1);

    uint32_t isr = r32(MMIO_INTERRUPT_STATUS);
    if (isr)
        w32(MMIO_INTERRUPT_ACK, isr);

    if (req_status != BLK_S_OK) {
        kprintf("virtio-blk: %s of sector %lu failed (status %u)\n",
                type == BLK_T_IN ? "read" : "write", (unsigned long)sector, req_status);
        return -1;
    }
    return 0;
}

int disk_read(uint32_t block, void *buf)
{
    return do_request(BLK_T_IN, block, buf);
}

int disk_write(uint32_t block, const void *buf)
{
    return do_request(BLK_T_OUT, block, (void *)buf);
}
