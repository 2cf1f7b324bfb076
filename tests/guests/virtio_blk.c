/* A minimal polled virtio-blk driver (virtio 1.2, MMIO transport version 2)
 * for the core's dirty-tracking tests.  One split virtqueue of 8 entries;
 * every request is a 3-descriptor chain: header, data, status.
 *
 * The queue lives in its own page (vq_page) and the request header + status
 * byte in another (req_page), so a test can tell the driver's own writes
 * from the device's DMA into the data buffer. */
#include "virtio_mmio.h"

#define BLK_BASE 0x10008000ul            /* virtio-mmio slot 7 */
#define REG(off) (*(volatile uint32_t *)(BLK_BASE + (off)))


struct avail { uint16_t flags, idx, ring[QN], used_event; };
struct used_elem { uint32_t id, len; };
struct used { uint16_t flags, idx; struct used_elem ring[QN]; uint16_t avail_event; };

struct blk_vq {
    struct desc desc[QN];
    struct avail avail;
    uint16_t pad;
    struct used used;
};
static volatile struct blk_vq vq __attribute__((aligned(4096), section(".bss.vq_page")));

struct req {
    uint32_t type, reserved;
    uint64_t sector;
    uint8_t status;
};
static volatile struct req req __attribute__((aligned(4096), section(".bss.req_page")));
static uint16_t last_used;

#define set_addr(low, high, a) set_addr_at(BLK_BASE, (low), (high), (uint64_t)(uintptr_t)(a))

/* 0 on success, otherwise the step that failed. */
int blk_init(void)
{
    if (REG(MAGIC) != 0x74726976u || REG(VERSION) != 2 || REG(DEVICE_ID) != 2)
        return 1;
    REG(STATUS) = 0;
    REG(STATUS) = ST_ACKNOWLEDGE;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER;
    REG(DEVICE_FEATURES_SEL) = 1;
    if (!(REG(DEVICE_FEATURES) & 1))             /* VIRTIO_F_VERSION_1 */
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
    REG(QUEUE_NUM) = QN;
    set_addr(QUEUE_DESC_LOW, QUEUE_DESC_HIGH, vq.desc);
    set_addr(QUEUE_DRIVER_LOW, QUEUE_DRIVER_HIGH, &vq.avail);
    set_addr(QUEUE_DEVICE_LOW, QUEUE_DEVICE_HIGH, &vq.used);
    REG(QUEUE_READY) = 1;
    REG(STATUS) = ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK;
    return 0;
}

static void set_desc(int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    vq.desc[i].addr = addr;
    vq.desc[i].len = len;
    vq.desc[i].flags = flags;
    vq.desc[i].next = next;
}

/* type 0 = read (device writes buf), 1 = write.  Returns the status byte,
 * or 0x100 if the device did not complete the request. */
int blk_rw(uint32_t type, uint64_t sector, uint64_t buf, uint32_t len)
{
    req.type = type;
    req.reserved = 0;
    req.sector = sector;
    req.status = 0xff;
    set_desc(0, (uint64_t)(uintptr_t)&req, 16, DESC_F_NEXT, 1);
    set_desc(1, buf, len, DESC_F_NEXT | (type == 0 ? DESC_F_WRITE : 0), 2);
    set_desc(2, (uint64_t)(uintptr_t)&req.status, 1, DESC_F_WRITE, 0);
    vq.avail.ring[vq.avail.idx % QN] = 0;
    __sync_synchronize();
    vq.avail.idx = vq.avail.idx + 1;
    __sync_synchronize();
    REG(QUEUE_NOTIFY) = 0;
    /* Requests complete inside the notify write: one look is enough. */
    __sync_synchronize();
    if (vq.used.idx == last_used)
        return 0x100;
    last_used++;
    REG(INTERRUPT_ACK) = REG(INTERRUPT_STATUS);
    return req.status;
}
