/* virtio_mmio.c: eight virtio-mmio transport slots (version 2 register layout);
 * slot VIRTIO_BLK_SLOT holds a virtio-blk device while a disk is attached, the
 * others answer as empty placeholders (DeviceID 0).  References are to the
 * virtio 1.2 spec: 2.1 status, 2.7 split virtqueues, 4.2 MMIO, 5.2 block.
 *
 * Requests are served synchronously inside the QueueNotify write, so the
 * result depends only on guest actions (deterministic).  Everything the guest
 * hands us (ring addresses, indices, descriptor chains) is untrusted: all
 * memory goes through phys_read/phys_write and every loop is bounded. */
#include <string.h>
#include "machine.h"

#define VIRTIO_MAGIC 0x74726976u        /* "virt" */
#define VIRTIO_VENDOR 0x554d4551u
#define VIRTIO_ID_BLOCK 2
#define BLK_IRQ (1 + VIRTIO_BLK_SLOT)
#define QUEUE_MAX 256
#define SECTOR 512ull

/* Offered features (5.2.3, 6). SEG_MAX matters: without it Linux sends one
 * segment per request. */
#define F_SEG_MAX (1ull << 2)
#define F_BLK_SIZE (1ull << 6)
#define F_FLUSH (1ull << 9)
#define F_VERSION_1 (1ull << 32)
#define DEVICE_FEATURES (F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_VERSION_1)

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

/* Block request types and status (5.2.6). */
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2
#define BLK_ID_LEN 20

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

/* One descriptor of a chain, and the chain split into the device-readable and
 * device-writable byte streams (we never care where descriptor borders fall). */
struct seg {
    uint64_t addr;
    uint32_t len;
    bool write;
};

struct chain {
    struct seg seg[QUEUE_MAX];
    int n;
    uint64_t rlen, wlen;
};

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

static void blk_update_irq(struct machine *m)
{
    plic_set_level(m, BLK_IRQ, m->vblk.interrupt_status != 0);
}

void virtio_blk_reset(struct machine *m)
{
    memset(&m->vblk, 0, sizeof m->vblk);
    plic_set_level(m, BLK_IRQ, 0);
}

/* The driver broke the queue protocol: stop serving it until reset (2.1.2). */
static void blk_fail(struct machine *m)
{
    m->vblk.status |= S_NEEDS_RESET;
    m->vblk.interrupt_status |= INT_CONFIG;
    blk_update_irq(m);
}

/* Walk the chain from head; false if it is malformed (bad index, loop, longer
 * than the queue, unreadable, or indirect, which we do not offer). */
static bool read_chain(struct machine *m, uint32_t head, uint32_t num, struct chain *c)
{
    uint32_t idx = head;

    c->n = 0;
    c->rlen = c->wlen = 0;
    for (;;) {
        struct vring_desc d;
        if (idx >= num || c->n >= (int)num)
            return false;
        if (!phys_read(m, m->vblk.desc_addr + 16ull * idx, &d, sizeof d))
            return false;
        if (d.flags & DESC_F_INDIRECT)
            return false;
        bool w = d.flags & DESC_F_WRITE;
        c->seg[c->n++] = (struct seg){ d.addr, d.len, w };
        if (w)
            c->wlen += d.len;
        else
            c->rlen += d.len;
        if (!(d.flags & DESC_F_NEXT))
            return true;
        idx = d.next;
    }
}

/* Copy len bytes between host memory and the readable (to_guest false) or
 * writable (to_guest true) stream of a chain, from byte off of that stream. */
static bool chain_copy(struct machine *m, const struct chain *c, bool to_guest,
                       uint64_t off, uint8_t *host, uint64_t len)
{
    for (int i = 0; i < c->n && len; i++) {
        const struct seg *s = &c->seg[i];
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

/* Serve one request (5.2.6): header in the readable stream, status in the
 * last writable byte.  Returns the number of bytes written to the guest. */
static uint32_t blk_request(struct machine *m, const struct chain *c)
{
    struct { uint32_t type, reserved; uint64_t sector; } hdr;
    uint8_t status = BLK_S_IOERR;
    uint64_t written = 0;

    if (c->wlen == 0)
        return 0;                       /* nowhere to put the status: nothing to do */
    uint64_t wdata = c->wlen - 1;       /* writable bytes before the status byte */
    if (c->rlen < sizeof hdr || !chain_copy(m, c, false, 0, (uint8_t *)&hdr, sizeof hdr))
        goto done;
    uint64_t rdata = c->rlen - sizeof hdr;

    switch (hdr.type) {
    case BLK_T_IN:
    case BLK_T_OUT: {
        uint64_t len = hdr.type == BLK_T_IN ? wdata : rdata;
        uint64_t sectors = m->disk_size / SECTOR;
        if (len % SECTOR || hdr.sector > sectors || len / SECTOR > sectors - hdr.sector)
            break;
        uint64_t pos = hdr.sector * SECTOR;
        if (hdr.type == BLK_T_IN) {
            if (!chain_copy(m, c, true, 0, m->disk + pos, len))
                break;
            written = len;
        } else {
            bool ok = chain_copy(m, c, false, sizeof hdr, m->disk + pos, len);
            disk_mark_written(m, pos, len);     /* even a failed copy may have landed partly */
            if (!ok)
                break;
        }
        status = BLK_S_OK;
        break;
    }
    case BLK_T_FLUSH:
        status = BLK_S_OK;              /* writes land in the disk buffer at once */
        break;
    case BLK_T_GET_ID: {
        uint8_t id[BLK_ID_LEN] = "chrono-vda";  /* zero padded, no NUL needed at 20 */
        uint64_t n = wdata < BLK_ID_LEN ? wdata : BLK_ID_LEN;
        if (chain_copy(m, c, true, 0, id, n)) {
            written = n;
            status = BLK_S_OK;
        }
        break;
    }
    default:
        status = BLK_S_UNSUPP;
        break;
    }
done:
    if (!chain_copy(m, c, true, c->wlen - 1, &status, 1))
        return (uint32_t)written;
    return (uint32_t)(written + 1);
}

/* QueueNotify on queue 0: consume every new avail entry in order (2.7.13). */
static void blk_notify(struct machine *m)
{
    struct virtio_blk_state *v = &m->vblk;
    uint32_t num = v->queue_num;
    uint16_t avail_idx, flags;
    struct chain c;                     /* 6 KiB of scratch; fine on the stack */
    bool any = false;

    if (!m->disk || !v->queue_ready || !(v->status & S_DRIVER_OK) ||
        (v->status & S_NEEDS_RESET) || num == 0 || num > QUEUE_MAX)
        return;
    if (!phys_read(m, v->avail_addr + 2, &avail_idx, 2) ||
        (uint16_t)(avail_idx - v->last_avail_idx) > num) {
        blk_fail(m);
        return;
    }
    /* One used element per avail entry, so used.idx always equals last_avail_idx. */
    while (v->last_avail_idx != avail_idx) {
        uint32_t slot = v->last_avail_idx % num;
        uint16_t head;
        if (!phys_read(m, v->avail_addr + 4 + 2ull * slot, &head, 2)) {
            blk_fail(m);
            break;
        }
        /* A malformed chain completes with len 0 and no status written. */
        uint32_t len = read_chain(m, head, num, &c) ? blk_request(m, &c) : 0;
        uint32_t elem[2] = { head, len };
        if (!phys_write(m, v->used_addr + 4 + 8ull * slot, elem, sizeof elem)) {
            blk_fail(m);
            break;
        }
        v->last_avail_idx++;
        any = true;
    }
    if (!any)
        return;
    uint16_t used_idx = v->last_avail_idx;
    if (!phys_write(m, v->used_addr + 2, &used_idx, 2)) {
        blk_fail(m);
        return;
    }
    /* Honour the driver's suppression hint (2.7.7); it re-checks the ring on re-enable. */
    if (phys_read(m, v->avail_addr, &flags, 2) && (flags & AVAIL_F_NO_INTERRUPT))
        return;
    v->interrupt_status |= INT_USED;
    blk_update_irq(m);
}

static void blk_set_status(struct machine *m, uint32_t val)
{
    struct virtio_blk_state *v = &m->vblk;

    if (val == 0) {
        virtio_blk_reset(m);
        return;
    }
    /* Refuse FEATURES_OK for features we never offered or a legacy driver (2.2.2). */
    if (val & S_FEATURES_OK) {
        uint64_t drv = v->driver_features[0] | (uint64_t)v->driver_features[1] << 32;
        if ((drv & ~DEVICE_FEATURES) || !(drv & F_VERSION_1))
            val &= ~S_FEATURES_OK;
    }
    /* NEEDS_RESET is the device's to set; only a reset clears it. */
    v->status = (val & 0xff & ~S_NEEDS_RESET) | (v->status & S_NEEDS_RESET);
}

static uint32_t blk_reg_read(struct machine *m, uint64_t reg)
{
    struct virtio_blk_state *v = &m->vblk;
    bool q0 = v->queue_sel == 0;

    switch (reg) {
    case R_MAGIC: return VIRTIO_MAGIC;
    case R_VERSION: return 2;
    case R_DEVICE_ID: return VIRTIO_ID_BLOCK;
    case R_VENDOR_ID: return VIRTIO_VENDOR;
    case R_DEVICE_FEATURES:
        return v->device_features_sel < 2 ? (uint32_t)(DEVICE_FEATURES >> 32 * v->device_features_sel) : 0;
    case R_QUEUE_NUM_MAX: return q0 ? QUEUE_MAX : 0;
    case R_QUEUE_READY: return q0 ? v->queue_ready : 0;
    case R_INTERRUPT_STATUS: return v->interrupt_status;
    case R_STATUS: return v->status;
    case R_QUEUE_DESC_LOW: return q0 ? (uint32_t)v->desc_addr : 0;
    case R_QUEUE_DESC_HIGH: return q0 ? (uint32_t)(v->desc_addr >> 32) : 0;
    case R_QUEUE_DRIVER_LOW: return q0 ? (uint32_t)v->avail_addr : 0;
    case R_QUEUE_DRIVER_HIGH: return q0 ? (uint32_t)(v->avail_addr >> 32) : 0;
    case R_QUEUE_DEVICE_LOW: return q0 ? (uint32_t)v->used_addr : 0;
    case R_QUEUE_DEVICE_HIGH: return q0 ? (uint32_t)(v->used_addr >> 32) : 0;
    case R_SHM_LEN_LOW:
    case R_SHM_LEN_HIGH: return 0xffffffffu;   /* no shared memory regions (4.2.2) */
    case R_CONFIG_GENERATION: return v->config_generation;
    default: return 0;                          /* write-only or reserved */
    }
}

static void set_low(uint64_t *a, uint32_t v) { *a = (*a & ~0xffffffffull) | v; }
static void set_high(uint64_t *a, uint32_t v) { *a = (*a & 0xffffffffull) | (uint64_t)v << 32; }

static void blk_reg_write(struct machine *m, uint64_t reg, uint32_t val)
{
    struct virtio_blk_state *v = &m->vblk;
    bool q0 = v->queue_sel == 0;        /* the only queue; writes for others are dropped */

    switch (reg) {
    case R_DEVICE_FEATURES_SEL: v->device_features_sel = val; break;
    case R_DRIVER_FEATURES:
        if (v->driver_features_sel < 2)
            v->driver_features[v->driver_features_sel] = val;
        break;
    case R_DRIVER_FEATURES_SEL: v->driver_features_sel = val; break;
    case R_QUEUE_SEL: v->queue_sel = val; break;
    case R_QUEUE_NUM: if (q0) v->queue_num = val; break;
    case R_QUEUE_READY: if (q0) v->queue_ready = val & 1; break;
    case R_QUEUE_NOTIFY: if (val == 0) blk_notify(m); break;
    case R_INTERRUPT_ACK:
        v->interrupt_status &= ~val;
        blk_update_irq(m);
        break;
    case R_STATUS: blk_set_status(m, val); break;
    case R_QUEUE_DESC_LOW: if (q0) set_low(&v->desc_addr, val); break;
    case R_QUEUE_DESC_HIGH: if (q0) set_high(&v->desc_addr, val); break;
    case R_QUEUE_DRIVER_LOW: if (q0) set_low(&v->avail_addr, val); break;
    case R_QUEUE_DRIVER_HIGH: if (q0) set_high(&v->avail_addr, val); break;
    case R_QUEUE_DEVICE_LOW: if (q0) set_low(&v->used_addr, val); break;
    case R_QUEUE_DEVICE_HIGH: if (q0) set_high(&v->used_addr, val); break;
    default: break;
    }
}

/* struct virtio_blk_config (5.2.4): capacity @0, seg_max @0xc, blk_size @0x14. */
static uint64_t blk_config_read(struct machine *m, uint64_t off, int size)
{
    uint8_t cfg[0x24] = { 0 };
    uint64_t capacity = m->disk_size / SECTOR, v = 0;
    uint32_t seg_max = QUEUE_MAX - 2, blk_size = SECTOR;

    memcpy(cfg + 0x00, &capacity, 8);
    memcpy(cfg + 0x0c, &seg_max, 4);
    memcpy(cfg + 0x14, &blk_size, 4);
    if (off < sizeof cfg)
        memcpy(&v, cfg + off, (uint64_t)size < sizeof cfg - off ? (uint64_t)size : sizeof cfg - off);
    return v;
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
    uint64_t slot = offset / VIRTIO_SLOT_SIZE, reg = offset % VIRTIO_SLOT_SIZE;
    bool blk = slot == VIRTIO_BLK_SLOT && m->disk;

    if (reg >= R_CONFIG) {
        *value = blk ? blk_config_read(m, reg - R_CONFIG, size) : 0;
        return true;
    }
    if (size != 4)
        return false;                   /* 4.2.2.2: control registers are 32-bit only */
    *value = blk ? blk_reg_read(m, reg) : empty_reg_read(reg);
    return true;
}

static bool virtio_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    uint64_t slot = offset / VIRTIO_SLOT_SIZE, reg = offset % VIRTIO_SLOT_SIZE;
    bool blk = slot == VIRTIO_BLK_SLOT && m->disk;

    if (reg >= R_CONFIG)
        return true;                    /* config is read-only (no WCE feature) */
    if (size != 4)
        return false;
    if (blk)
        blk_reg_write(m, reg, (uint32_t)value);
    return true;
}

const struct mmio_device virtio_mmio_device = {
    .base = VIRTIO_BASE, .size = VIRTIO_SLOTS * VIRTIO_SLOT_SIZE, .sizes = 1 | 2 | 4 | 8,
    .read = virtio_read, .write = virtio_write,
};
