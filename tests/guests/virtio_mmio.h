/* virtio_mmio.h: what the test drivers (virtio_blk.c, virtio_rng.c,
 * virtio_net.c) share: the virtio-mmio transport's registers (virtio 1.2
 * section 4.2.2), the status bits (2.1), descriptors (2.7.5) and one split
 * virtqueue of QN entries laid out in a page of its own.  rvasm.guest_c()
 * puts this file in front of a driver's source. */
#include <stddef.h>
#include <stdint.h>

enum {
    MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, DEVICE_FEATURES = 0x010,
    DEVICE_FEATURES_SEL = 0x014, DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024,
    QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
    QUEUE_NOTIFY = 0x050, INTERRUPT_STATUS = 0x060, INTERRUPT_ACK = 0x064, STATUS = 0x070,
    QUEUE_DESC_LOW = 0x080, QUEUE_DESC_HIGH = 0x084, QUEUE_DRIVER_LOW = 0x090,
    QUEUE_DRIVER_HIGH = 0x094, QUEUE_DEVICE_LOW = 0x0a0, QUEUE_DEVICE_HIGH = 0x0a4,
};
#define ST_ACKNOWLEDGE 1u
#define ST_DRIVER 2u
#define ST_DRIVER_OK 4u
#define ST_FEATURES_OK 8u
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define QN 8

struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct vq {
    struct desc desc[QN];
    uint16_t avail_flags, avail_idx, avail_ring[QN], used_event;
    uint16_t pad;
    uint16_t used_flags, used_idx;
    struct { uint32_t id, len; } used_ring[QN];
    uint16_t avail_event;
};
/* The hosts' tests read the rings at these offsets. */
_Static_assert(offsetof(struct vq, avail_flags) == 128, "avail ring");
_Static_assert(offsetof(struct vq, used_flags) == 152, "used ring");

/* A queue address into a LOW/HIGH register pair of the device at base. */
static inline void set_addr_at(uintptr_t base, uint32_t low, uint32_t high, uint64_t a)
{
    *(volatile uint32_t *)(base + low) = (uint32_t)a;
    *(volatile uint32_t *)(base + high) = (uint32_t)(a >> 32);
}

static inline uint64_t mip(void)
{
    uint64_t v;
    __asm__ volatile("csrr %0, mip" : "=r"(v));
    return v;
}
