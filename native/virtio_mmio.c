/* virtio_mmio.c: eight virtio-mmio transport slots (version 2 register
 * layout, virtio 1.2 section 4.2) and the split-virtqueue helpers the devices
 * share (2.7).  Slot VIRTIO_RNG_SLOT holds the entropy device (virtio_rng.c),
 * slot VIRTIO_BLK_SLOT the block device (virtio_blk.c) while a disk is
 * attached, slot VIRTIO_NET_SLOT the network device (virtio_net.c) while a
 * network is; the others answer as empty placeholders (DeviceID 0).
 *
 * QueueSel picks which of a device's queues the queue registers address; a
 * selector past the device's last queue reads QueueNumMax 0 ("no such
 * queue", 4.2.3.2) and drops writes.
 *
 * Requests are served synchronously inside the QueueNotify write (or, for
 * the entropy and network devices, when the host supplies bytes), so the
 * result depends only on guest actions and logged inputs (deterministic). */
#include <string.h>
#include "virtio.h"

#define VIRTIO_MAGIC 0x74726976u        /* "virt" */
#define VIRTIO_VENDOR 0x554d4551u

/* Device status bits (2.1). */
#define S_DRIVER_OK 4u
#define S_FEATURES_OK 8u
#define S_NEEDS_RESET 64u

/* InterruptStatus bits (4.2.2). */
#define INT_USED 1
#define INT_CONFIG 2

/* Split virtqueue flags (2.7.5, 2.7.6). */
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1

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

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

static const struct virtio_dev *const slot_devices[VIRTIO_SLOTS] = {
    [VIRTIO_RNG_SLOT] = &virtio_rng_dev,
    [VIRTIO_BLK_SLOT] = &virtio_blk_dev,
    [VIRTIO_NET_SLOT] = &virtio_net_dev,
};

static const struct virtio_dev *slot_device(struct machine *m, uint64_t slot)
{
    const struct virtio_dev *d = slot < VIRTIO_SLOTS ? slot_devices[slot] : NULL;
    return d && (!d->present || d->present(m)) ? d : NULL;
}

static void update_irq(struct machine *m, const struct virtio_dev *d)
{
    plic_set_level(m, 1 + d->slot, d->state(m)->interrupt_status != 0);
}

void virtio_reset(struct machine *m, const struct virtio_dev *d)
{
    memset(d->state(m), 0, sizeof(struct virtio_state));
    plic_set_level(m, 1 + d->slot, 0);
}

void virtio_fail(struct machine *m, const struct virtio_dev *d)
{
    struct virtio_state *v = d->state(m);
    v->status |= S_NEEDS_RESET;
    v->interrupt_status |= INT_CONFIG;
    update_irq(m, d);
}

/* ---- split virtqueue (2.7) ------------------------------------------------- */

bool virtq_usable(const struct virtio_state *v, const struct virtq_state *q)
{
    return q->ready && (v->status & S_DRIVER_OK) && !(v->status & S_NEEDS_RESET) &&
           q->num != 0 && q->num <= VIRTQ_MAX;
}

int virtq_pending(struct machine *m, const struct virtq_state *q)
{
    uint16_t avail_idx;
    if (!phys_read(m, q->avail_addr + 2, &avail_idx, 2))
        return -1;
    uint16_t pending = avail_idx - q->last_avail_idx;
    return pending > q->num ? -1 : pending;
}

bool virtq_head(struct machine *m, const struct virtq_state *q, uint16_t index, uint16_t *head)
{
    return phys_read(m, q->avail_addr + 4 + 2ull * (index % q->num), head, 2);
}

bool virtq_read_chain(struct machine *m, const struct virtq_state *q, uint16_t head,
                      struct virtq_chain *c)
{
    uint32_t idx = head, num = q->num;

    c->n = 0;
    c->rlen = c->wlen = 0;
    for (;;) {
        struct vring_desc d;
        if (idx >= num || c->n >= (int)num)
            return false;
        if (!phys_read(m, q->desc_addr + 16ull * idx, &d, sizeof d))
            return false;
        if (d.flags & DESC_F_INDIRECT)
            return false;
        bool w = d.flags & DESC_F_WRITE;
        c->seg[c->n++] = (struct virtq_seg){ d.addr, d.len, w };
        if (w)
            c->wlen += d.len;
        else
            c->rlen += d.len;
        if (!(d.flags & DESC_F_NEXT))
            return true;
        idx = d.next;
    }
}

bool virtq_copy(struct machine *m, const struct virtq_chain *c, bool to_guest,
                uint64_t off, uint8_t *host, uint64_t len)
{
    for (int i = 0; i < c->n && len; i++) {
        const struct virtq_seg *s = &c->seg[i];
        if (s->write != to_guest)
            continue;
        if (off >= s->len) {
            off -= s->len;
            continue;
        }
        uint64_t n = s->len - off < len ? s->len - off : len;
        bool ok = to_guest ? phys_write(m, s->addr + off, host, n)
                           : phys_read(m, s->addr + off, host, n);
        if (!ok)
            return false;
        host += n;
        len -= n;
        off = 0;
    }
    return len == 0;
}

bool virtq_push(struct machine *m, struct virtq_state *q, uint16_t head, uint32_t len)
{
    uint32_t elem[2] = { head, len };
    if (!phys_write(m, q->used_addr + 4 + 8ull * (q->last_avail_idx % q->num), elem, sizeof elem))
        return false;
    q->last_avail_idx++;
    return true;
}

void virtq_publish(struct machine *m, const struct virtio_dev *d, struct virtq_state *q)
{
    struct virtio_state *v = d->state(m);
    uint16_t used_idx = q->last_avail_idx, flags;

    if (!phys_write(m, q->used_addr + 2, &used_idx, 2)) {
        virtio_fail(m, d);
        return;
    }
    /* Honour the driver's suppression hint (2.7.7); it re-checks the ring on re-enable. */
    if (phys_read(m, q->avail_addr, &flags, 2) && (flags & AVAIL_F_NO_INTERRUPT))
        return;
    v->interrupt_status |= INT_USED;
    update_irq(m, d);
}

/* ---- registers (4.2.2) ------------------------------------------------------ */

static void set_status(struct machine *m, const struct virtio_dev *d, uint32_t val)
{
    struct virtio_state *v = d->state(m);

    if (val == 0) {
        virtio_reset(m, d);
        return;
    }
    /* Refuse FEATURES_OK for features we never offered or a legacy driver (2.2.2). */
    if (val & S_FEATURES_OK) {
        uint64_t drv = v->driver_features[0] | (uint64_t)v->driver_features[1] << 32;
        if ((drv & ~d->features) || !(drv & VIRTIO_F_VERSION_1))
            val &= ~S_FEATURES_OK;
    }
    /* NEEDS_RESET is the device's to set; only a reset clears it. */
    v->status = (val & 0xff & ~S_NEEDS_RESET) | (v->status & S_NEEDS_RESET);
}

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
        return v->device_features_sel < 2 ? (uint32_t)(d->features >> 32 * v->device_features_sel) : 0;
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
    case R_QUEUE_NOTIFY:
        if (val < (uint32_t)d->queues && virtq_usable(v, &v->q[val]))
            d->notify(m, (int)val);
        break;
    case R_INTERRUPT_ACK:
        v->interrupt_status &= ~val;
        update_irq(m, d);
        break;
    case R_STATUS: set_status(m, d, val); break;
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
