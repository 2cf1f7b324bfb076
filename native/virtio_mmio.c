/* virtio_mmio.c: eight virtio-mmio transport slots (version 2 register
 * layout, virtio 1.2 section 4.2).  Slot VIRTIO_RNG_SLOT holds the entropy
 * device (virtio_rng.c), slot VIRTIO_BLK_SLOT the block device
 * (virtio_blk.c) while a disk is attached, slot VIRTIO_NET_SLOT the network
 * device (virtio_net.c) while a network is; the others, and all of them when
 * the devices are on PCI (virtio_pci.c), answer as empty placeholders
 * (DeviceID 0).
 *
 * QueueSel picks which of a device's queues the queue registers address; a
 * selector past the device's last queue reads QueueNumMax 0 ("no such
 * queue", 4.2.3.2) and drops writes.
 *
 * Requests are served synchronously inside the QueueNotify write (or, for
 * the entropy and network devices, when the host supplies bytes), so the
 * result depends only on guest actions and logged inputs (deterministic). */
#include "virtio.h"

#define VIRTIO_MAGIC 0x74726976u        /* "virt" */
#define VIRTIO_VENDOR 0x554d4551u

/* MMIO register offsets (4.2.2). */
enum {
    R_MAGIC = 0x000, R_VERSION = 0x004, R_DEVICE_ID = 0x008, R_VENDOR_ID = 0x00c,
    R_DEVICE_FEATURES = 0x010, R_DEVICE_FEATURES_SEL = 0x014,
    R_DRIVER_FEATURES = 0x020, R_DRIVER_FEATURES_SEL = 0x024,
    R_QUEUE_SEL = 0x030, R_QUEUE_NUM_MAX = 0x034, R_QUEUE_NUM = 0x038,
    R_QUEUE_READY = 0x044, R_QUEUE_NOTIFY = 0x050,
    R_INTERRUPT_STATUS = 0x060, R_INTERRUPT_ACK = 0x064, R_STATUS = 0x070,
    R_QUEUE_DESC_LOW = 0x080, R_QUEUE_DESC_HIGH = 0x084,
    R_QUEUE_DRIVER_LOW = 0x090, R_QUEUE_DRIVER_HIGH = 0x094,
    R_QUEUE_DEVICE_LOW = 0x0a0, R_QUEUE_DEVICE_HIGH = 0x0a4,
    R_SHM_LEN_LOW = 0x0b0, R_SHM_LEN_HIGH = 0x0b4,
    R_CONFIG_GENERATION = 0x0fc, R_CONFIG = 0x100,
};

static const struct virtio_dev *const slot_devices[VIRTIO_SLOTS] = {
    [VIRTIO_RNG_SLOT] = &virtio_rng_dev,
    [VIRTIO_BLK_SLOT] = &virtio_blk_dev,
    [VIRTIO_NET_SLOT] = &virtio_net_dev,
};

static const struct virtio_dev *slot_device(struct machine *m, uint64_t slot)
{
    const struct virtio_dev *d = slot < VIRTIO_SLOTS ? slot_devices[slot] : NULL;
    return d && !virtio_on_pci(m) && virtio_present(m, d) ? d : NULL;
}

/* ---- registers (4.2.2) ------------------------------------------------------ */

/* The queue QueueSel addresses, NULL if the device has no such queue. */
static struct virtq_state *selected_queue(const struct virtio_dev *d, struct virtio_state *v)
{
    return v->queue_sel < (uint32_t)d->queues ? &v->q[v->queue_sel] : NULL;
}

static uint32_t reg_read(struct machine *m, const struct virtio_dev *d, uint64_t reg)
{
    struct virtio_state *v = d->state(m);
    struct virtq_state *q = selected_queue(d, v);

    switch (reg) {
    case R_MAGIC: return VIRTIO_MAGIC;
    case R_VERSION: return 2;
    case R_DEVICE_ID: return d->device_id;
    case R_VENDOR_ID: return VIRTIO_VENDOR;
    case R_DEVICE_FEATURES:
        return virtio_device_features(d, v->device_features_sel);
    case R_QUEUE_NUM_MAX: return q ? VIRTQ_MAX : 0;
    case R_QUEUE_READY: return q ? q->ready : 0;
    case R_INTERRUPT_STATUS: return v->interrupt_status;
    case R_STATUS: return v->status;
    case R_QUEUE_DESC_LOW: return q ? (uint32_t)q->desc_addr : 0;
    case R_QUEUE_DESC_HIGH: return q ? (uint32_t)(q->desc_addr >> 32) : 0;
    case R_QUEUE_DRIVER_LOW: return q ? (uint32_t)q->avail_addr : 0;
    case R_QUEUE_DRIVER_HIGH: return q ? (uint32_t)(q->avail_addr >> 32) : 0;
    case R_QUEUE_DEVICE_LOW: return q ? (uint32_t)q->used_addr : 0;
    case R_QUEUE_DEVICE_HIGH: return q ? (uint32_t)(q->used_addr >> 32) : 0;
    case R_SHM_LEN_LOW:
    case R_SHM_LEN_HIGH: return 0xffffffffu;   /* no shared memory regions (4.2.2) */
    case R_CONFIG_GENERATION: return v->config_generation;
    default: return 0;                          /* write-only or reserved */
    }
}

static void set_low(uint64_t *a, uint32_t v) { *a = (*a & ~0xffffffffull) | v; }
static void set_high(uint64_t *a, uint32_t v) { *a = (*a & 0xffffffffull) | (uint64_t)v << 32; }

static void reg_write(struct machine *m, const struct virtio_dev *d, uint64_t reg, uint32_t val)
{
    struct virtio_state *v = d->state(m);
    struct virtq_state *q = selected_queue(d, v);   /* NULL: writes to its registers are dropped */

    switch (reg) {
    case R_DEVICE_FEATURES_SEL: v->device_features_sel = val; break;
    case R_DRIVER_FEATURES:
        if (v->driver_features_sel < 2)
            v->driver_features[v->driver_features_sel] = val;
        break;
    case R_DRIVER_FEATURES_SEL: v->driver_features_sel = val; break;
    case R_QUEUE_SEL: v->queue_sel = val; break;
    case R_QUEUE_NUM: if (q) q->num = val; break;
    case R_QUEUE_READY: if (q) q->ready = val & 1; break;
    case R_QUEUE_NOTIFY: virtio_notify(m, d, val); break;
    case R_INTERRUPT_ACK: virtio_ack(m, d, val); break;
    case R_STATUS: virtio_set_status(m, d, val); break;
    case R_QUEUE_DESC_LOW: if (q) set_low(&q->desc_addr, val); break;
    case R_QUEUE_DESC_HIGH: if (q) set_high(&q->desc_addr, val); break;
    case R_QUEUE_DRIVER_LOW: if (q) set_low(&q->avail_addr, val); break;
    case R_QUEUE_DRIVER_HIGH: if (q) set_high(&q->avail_addr, val); break;
    case R_QUEUE_DEVICE_LOW: if (q) set_low(&q->used_addr, val); break;
    case R_QUEUE_DEVICE_HIGH: if (q) set_high(&q->used_addr, val); break;
    default: break;
    }
}

/* An empty slot: enough for a driver to see "no device here" and move on. */
static uint32_t empty_reg_read(uint64_t reg)
{
    switch (reg) {
    case R_MAGIC: return VIRTIO_MAGIC;
    case R_VERSION: return 2;
    case R_VENDOR_ID: return VIRTIO_VENDOR;
    default: return 0;                  /* DeviceID 0 included */
    }
}

static bool virtio_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    uint64_t reg = offset % VIRTIO_SLOT_SIZE;
    const struct virtio_dev *d = slot_device(m, offset / VIRTIO_SLOT_SIZE);

    if (reg >= R_CONFIG) {
        *value = d && d->config_read ? d->config_read(m, reg - R_CONFIG, size) : 0;
        return true;
    }
    if (size != 4)
        return false;                   /* 4.2.2.2: control registers are 32-bit only */
    *value = d ? reg_read(m, d, reg) : empty_reg_read(reg);
    return true;
}

static bool virtio_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    uint64_t reg = offset % VIRTIO_SLOT_SIZE;
    const struct virtio_dev *d = slot_device(m, offset / VIRTIO_SLOT_SIZE);

    if (reg >= R_CONFIG)
        return true;                    /* no device has a writable config field */
    if (size != 4)
        return false;
    if (d)
        reg_write(m, d, reg, (uint32_t)value);
    return true;
}

const struct mmio_device virtio_mmio_device = {
    .base = VIRTIO_BASE, .size = VIRTIO_SLOTS * VIRTIO_SLOT_SIZE, .sizes = 1 | 2 | 4 | 8,
    .read = virtio_read, .write = virtio_write,
};
