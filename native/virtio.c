/* virtio.c: what both virtio transports share (virtio.h): the device status
 * protocol (2.1, 3.1), the interrupt line and the split-virtqueue helpers the
 * devices use (2.7).  The transports (virtio_mmio.c, virtio_pci.c) only map
 * their registers onto these.
 *
 * Requests are served synchronously inside the driver's notify write (or,
 * for the entropy and network devices, when the host supplies bytes), so the
 * result depends only on guest actions and logged inputs (deterministic). */
#include <string.h>
#include "virtio.h"

/* Split virtqueue flags (2.7.5, 2.7.6). */
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};

bool virtio_present(struct machine *m, const struct virtio_dev *d)
{
    return !d->present || d->present(m);
}

void virtio_update_irq(struct machine *m, const struct virtio_dev *d)
{
    if (virtio_on_pci(m))
        pci_update_intx(m);             /* INTx lines are shared: recompute them all */
    else
        plic_set_level(m, 1 + d->mmio_slot, d->state(m)->interrupt_status != 0);
}

void virtio_reset(struct machine *m, const struct virtio_dev *d)
{
    struct virtio_state *v = d->state(m);
    memset(v, 0, sizeof *v);
    /* virtio-pci's queue_size reads the maximum until the driver lowers it
     * (4.1.4.3); virtio-mmio's QueueNum is write-only and starts at 0. */
    if (virtio_on_pci(m))
        for (int i = 0; i < d->queues; i++)
            v->q[i].num = VIRTQ_MAX;
    virtio_update_irq(m, d);
}

void virtio_fail(struct machine *m, const struct virtio_dev *d)
{
    struct virtio_state *v = d->state(m);
    v->status |= VIRTIO_S_NEEDS_RESET;
    v->interrupt_status |= VIRTIO_INT_CONFIG;
    virtio_update_irq(m, d);
}

void virtio_set_status(struct machine *m, const struct virtio_dev *d, uint32_t val)
{
    struct virtio_state *v = d->state(m);

    if (val == 0) {
        virtio_reset(m, d);
        return;
    }
    /* Refuse FEATURES_OK for features we never offered or a legacy driver (2.2.2). */
    if (val & VIRTIO_S_FEATURES_OK) {
        uint64_t drv = v->driver_features[0] | (uint64_t)v->driver_features[1] << 32;
        if ((drv & ~d->features) || !(drv & VIRTIO_F_VERSION_1))
            val &= ~VIRTIO_S_FEATURES_OK;
    }
    /* NEEDS_RESET is the device's to set; only a reset clears it. */
    v->status = (val & 0xff & ~VIRTIO_S_NEEDS_RESET) | (v->status & VIRTIO_S_NEEDS_RESET);
}

void virtio_ack(struct machine *m, const struct virtio_dev *d, uint32_t bits)
{
    d->state(m)->interrupt_status &= ~bits;
    virtio_update_irq(m, d);
}

void virtio_notify(struct machine *m, const struct virtio_dev *d, uint32_t queue)
{
    struct virtio_state *v = d->state(m);
    if (queue < (uint32_t)d->queues && virtq_usable(v, &v->q[queue]))
        d->notify(m, (int)queue);
}

uint32_t virtio_device_features(const struct virtio_dev *d, uint32_t sel)
{
    return sel < 2 ? (uint32_t)(d->features >> 32 * sel) : 0;
}

/* ---- split virtqueue (2.7) ------------------------------------------------- */

bool virtq_usable(const struct virtio_state *v, const struct virtq_state *q)
{
    return q->ready && (v->status & VIRTIO_S_DRIVER_OK) && !(v->status & VIRTIO_S_NEEDS_RESET) &&
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
    v->interrupt_status |= VIRTIO_INT_USED;
    virtio_update_irq(m, d);
}
