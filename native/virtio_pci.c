/* virtio_pci.c: the virtio-pci transport, modern (non-transitional) only
 * (virtio 1.2 section 4.1): vendor 0x1af4, device 0x1040 + device ID,
 * revision 1, and vendor-specific capabilities that place the common
 * configuration, notification, ISR and device configuration structures in
 * one 64-bit memory BAR (BAR 4, as QEMU's layout: 4 KiB per structure).  No
 * legacy I/O BAR and no MSI-X: the interrupt is INTx, asserted while the ISR
 * status is nonzero; reading the ISR returns and clears it (4.1.4.5).  The
 * PCI_CFG capability (4.1.4.9) gives access to the BAR through configuration
 * space.
 *
 * Slots on bus 0: the disk in PCI_BLK_SLOT, the network in PCI_NET_SLOT, the
 * entropy device in PCI_RNG_SLOT, each there while the machine has its
 * virtio devices on PCI and the device exists (virtio.h). */
#include <string.h>
#include "pci.h"
#include "virtio.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE 0x1040        /* + device ID */
#define VIRTIO_BAR 4
#define VIRTIO_BAR_SIZE 0x4000ull
#define NO_VECTOR 0xffffu               /* VIRTIO_MSI_NO_VECTOR: no MSI-X */

/* The structures in the BAR. */
#define COMMON_OFF 0x0000u
#define COMMON_LEN 0x40u                /* struct virtio_pci_common_cfg with the 1.2 fields */
#define ISR_OFF 0x1000u
#define DEVICE_OFF 0x2000u
#define NOTIFY_OFF 0x3000u
#define NOTIFY_MULTIPLIER 4u            /* queue q is notified at NOTIFY_OFF + 4 * q */

/* Capabilities (4.1.4): cfg_type values, and where each sits in config space. */
#define CAP_VENDOR 0x09
enum { CFG_COMMON = 1, CFG_NOTIFY = 2, CFG_ISR = 3, CFG_DEVICE = 4, CFG_PCI = 5 };
#define CAP_LEN 16                      /* struct virtio_pci_cap */
#define CAP_LONG_LEN 20                 /* ... + notify_off_multiplier, or + pci_cfg_data */
#define AT_COMMON 0x40
#define AT_NOTIFY 0x50
#define AT_ISR 0x64
#define AT_DEVICE 0x74
#define AT_PCI_CFG 0x84
#define AT_END 0x98
#define PCI_CFG_BAR (AT_PCI_CFG + 4)
#define PCI_CFG_OFFSET (AT_PCI_CFG + 8)
#define PCI_CFG_LENGTH (AT_PCI_CFG + 12)
#define PCI_CFG_DATA (AT_PCI_CFG + 16)

static const struct virtio_dev *dev_of(const struct pci_function *f) { return f->ctx; }

static bool fn_present(struct machine *m, const struct pci_function *f)
{
    return virtio_on_pci(m) && virtio_present(m, dev_of(f));
}

static bool fn_irq(struct machine *m, const struct pci_function *f)
{
    return dev_of(f)->state(m)->interrupt_status != 0;
}

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* `size` bytes at `off` of a little-endian image of `len` bytes (0 past it). */
static uint64_t image_bytes(const uint8_t *image, uint32_t len, uint64_t off, int size)
{
    uint64_t v = 0;
    if (off < len)
        memcpy(&v, image + off, (uint64_t)size < len - off ? (uint64_t)size : len - off);
    return v;
}

/* ---- the BAR -------------------------------------------------------------------- */

static struct virtq_state *selected_queue(const struct virtio_dev *d, struct virtio_state *v)
{
    return v->queue_sel < (uint32_t)d->queues ? &v->q[v->queue_sel] : NULL;
}

/* struct virtio_pci_common_cfg (4.1.4.3). */
static uint64_t common_read(struct machine *m, const struct virtio_dev *d, uint64_t off, int size)
{
    struct virtio_state *v = d->state(m);
    struct virtq_state *q = selected_queue(d, v);
    uint8_t c[COMMON_LEN] = { 0 };

    put32(c + 0x00, v->device_features_sel);
    put32(c + 0x04, virtio_device_features(d, v->device_features_sel));
    put32(c + 0x08, v->driver_features_sel);
    put32(c + 0x0c, v->driver_features_sel < 2 ? v->driver_features[v->driver_features_sel] : 0);
    put16(c + 0x10, NO_VECTOR);                 /* config_msix_vector */
    put16(c + 0x12, (uint32_t)d->queues);       /* num_queues */
    c[0x14] = (uint8_t)v->status;
    c[0x15] = (uint8_t)v->config_generation;
    put16(c + 0x16, v->queue_sel);
    if (q) {                                    /* a queue that does not exist reads size 0 */
        put16(c + 0x18, q->num);
        put16(c + 0x1a, NO_VECTOR);             /* queue_msix_vector */
        put16(c + 0x1c, q->ready);
        put16(c + 0x1e, v->queue_sel);          /* queue_notify_off */
        put64(c + 0x20, q->desc_addr);
        put64(c + 0x28, q->avail_addr);
        put64(c + 0x30, q->used_addr);
    }
    return image_bytes(c, sizeof c, off, size); /* notify_data, queue_reset, admin: 0 */
}

/* Write `size` bytes at byte `at` of a 64-bit field (a queue address). */
static void merge64(uint64_t *field, uint64_t at, int size, uint64_t value)
{
    uint64_t mask = (size == 8 ? ~0ull : (1ull << 8 * size) - 1) << 8 * at;
    *field = (*field & ~mask) | (value << 8 * at & mask);
}

static void common_write(struct machine *m, const struct virtio_dev *d, uint64_t off, int size,
                         uint64_t value)
{
    struct virtio_state *v = d->state(m);
    struct virtq_state *q = selected_queue(d, v);   /* NULL: writes to its fields are dropped */
    uint32_t val = (uint32_t)value;

    switch (off) {
    case 0x00: v->device_features_sel = val; return;
    case 0x08: v->driver_features_sel = val; return;
    case 0x0c:
        if (v->driver_features_sel < 2)
            v->driver_features[v->driver_features_sel] = val;
        return;
    case 0x14: virtio_set_status(m, d, val & 0xff); return;
    case 0x16: v->queue_sel = val & 0xffff; return;
    case 0x18: if (q) q->num = val & 0xffff; return;
    case 0x1c: if (q) q->ready = val & 1; return;
    default: break;
    }
    if (q && off >= 0x20 && off < 0x38) {
        uint64_t *field = off < 0x28 ? &q->desc_addr : off < 0x30 ? &q->avail_addr : &q->used_addr;
        merge64(field, off % 8, size, value);
    }
    /* The MSI-X vectors (no MSI-X) and the read-only fields ignore writes. */
}

static uint64_t bar_read(struct machine *m, const struct pci_function *f, uint64_t off, int size)
{
    const struct virtio_dev *d = dev_of(f);

    if (off < COMMON_OFF + COMMON_LEN)
        return common_read(m, d, off - COMMON_OFF, size);
    if (off == ISR_OFF) {
        uint32_t isr = d->state(m)->interrupt_status;
        virtio_ack(m, d, isr);                  /* reading clears it and lowers INTx */
        return isr;
    }
    if (off >= DEVICE_OFF && off < DEVICE_OFF + d->config_len)
        return d->config_read(m, off - DEVICE_OFF, size);
    return 0;
}

static void bar_write(struct machine *m, const struct pci_function *f, uint64_t off, int size,
                      uint64_t value)
{
    const struct virtio_dev *d = dev_of(f);

    if (off < COMMON_OFF + COMMON_LEN)
        common_write(m, d, off - COMMON_OFF, size, value);
    else if (off >= NOTIFY_OFF && off < NOTIFY_OFF + NOTIFY_MULTIPLIER * (uint64_t)d->queues)
        virtio_notify(m, d, (uint32_t)(off - NOTIFY_OFF) / NOTIFY_MULTIPLIER);
    /* The ISR and the device configuration are read-only. */
}

/* ---- capabilities ----------------------------------------------------------------- */

static void put_cap(uint8_t *cs, int at, int next, int len, int type, uint32_t bar,
                    uint32_t off, uint32_t length)
{
    cs[at] = CAP_VENDOR;
    cs[at + 1] = (uint8_t)next;
    cs[at + 2] = (uint8_t)len;
    cs[at + 3] = (uint8_t)type;
    cs[at + 4] = (uint8_t)bar;
    put32(cs + at + 8, off);
    put32(cs + at + 12, length);
}

/* Config space 0..AT_END with the capability list filled in (pci_cfg_data 0). */
static void capabilities(struct machine *m, const struct virtio_dev *d, int slot, uint8_t *cs)
{
    const struct pci_fn_state *s = &m->pci.fn[slot];
    bool device = d->config_len != 0;   /* no device configuration: no capability for it */

    memset(cs, 0, AT_END);
    put_cap(cs, AT_COMMON, AT_NOTIFY, CAP_LEN, CFG_COMMON, VIRTIO_BAR, COMMON_OFF, COMMON_LEN);
    put_cap(cs, AT_NOTIFY, AT_ISR, CAP_LONG_LEN, CFG_NOTIFY, VIRTIO_BAR, NOTIFY_OFF,
            NOTIFY_MULTIPLIER * (uint32_t)d->queues);
    put32(cs + AT_NOTIFY + CAP_LEN, NOTIFY_MULTIPLIER);
    put_cap(cs, AT_ISR, device ? AT_DEVICE : AT_PCI_CFG, CAP_LEN, CFG_ISR, VIRTIO_BAR, ISR_OFF, 1);
    if (device)
        put_cap(cs, AT_DEVICE, AT_PCI_CFG, CAP_LEN, CFG_DEVICE, VIRTIO_BAR, DEVICE_OFF, d->config_len);
    put_cap(cs, AT_PCI_CFG, 0, CAP_LONG_LEN, CFG_PCI, s->cfg_cap_bar, s->cfg_cap_offset,
            s->cfg_cap_length);
}

/* The PCI_CFG window's access, if the driver set it up as 4.1.4.9.1 allows. */
static bool cfg_window(const struct pci_fn_state *s, const struct pci_function *f)
{
    uint32_t len = s->cfg_cap_length, off = s->cfg_cap_offset;
    return s->cfg_cap_bar == VIRTIO_BAR && (len == 1 || len == 2 || len == 4) && off % len == 0 &&
           off < VIRTIO_BAR_SIZE && len <= VIRTIO_BAR_SIZE - off;
}

static uint32_t cap_read(struct machine *m, const struct pci_function *f, int slot, uint32_t reg,
                         int size)
{
    const struct pci_fn_state *s = &m->pci.fn[slot];
    uint8_t cs[AT_END];

    capabilities(m, dev_of(f), slot, cs);
    if (reg + (uint32_t)size > PCI_CFG_DATA && reg < PCI_CFG_DATA + 4 && cfg_window(s, f))
        put32(cs + PCI_CFG_DATA, (uint32_t)bar_read(m, f, s->cfg_cap_offset, (int)s->cfg_cap_length));
    return (uint32_t)image_bytes(cs, AT_END, reg, size);
}

static void cap_write(struct machine *m, const struct pci_function *f, int slot, uint32_t reg,
                      int size, uint32_t value)
{
    struct pci_fn_state *s = &m->pci.fn[slot];

    if (reg == PCI_CFG_BAR)
        s->cfg_cap_bar = (uint8_t)value;
    else if (reg == PCI_CFG_OFFSET && size == 4)
        s->cfg_cap_offset = value;
    else if (reg == PCI_CFG_LENGTH && size == 4)
        s->cfg_cap_length = value;
    else if (reg == PCI_CFG_DATA && cfg_window(s, f))
        bar_write(m, f, s->cfg_cap_offset, (int)s->cfg_cap_length, value);
    /* Everything else in the capabilities is read-only. */
}

/* ---- the functions ------------------------------------------------------------------ */

#define VIRTIO_FUNCTION(dev, id, class)                                                      \
    {                                                                                        \
        .vendor = VIRTIO_PCI_VENDOR, .device = VIRTIO_PCI_DEVICE + (id),                     \
        /* 4.1.2.1: the subsystem IDs may say what we are; a non-transitional device's    \
         * subsystem device ID is 0x40 or more. */                                           \
        .subsystem_vendor = VIRTIO_PCI_VENDOR, .subsystem = VIRTIO_PCI_DEVICE + (id),        \
        .class_code = (class), .revision = 1, .int_pin = 1, .cap_ptr = AT_COMMON,            \
        .bar = VIRTIO_BAR, .bar_size = VIRTIO_BAR_SIZE, .ctx = &(dev),                       \
        .present = fn_present, .irq = fn_irq, .cap_read = cap_read, .cap_write = cap_write,  \
        .bar_read = bar_read, .bar_write = bar_write,                                        \
    }

/* Class codes as QEMU gives these devices: SCSI storage, Ethernet, and for
 * the entropy device base class 0 (from before class codes), subclass "other". */
static const struct pci_function functions[PCI_SLOTS] = {
    [PCI_BLK_SLOT] = VIRTIO_FUNCTION(virtio_blk_dev, VIRTIO_ID_BLOCK, 0x010000),
    [PCI_NET_SLOT] = VIRTIO_FUNCTION(virtio_net_dev, VIRTIO_ID_NET, 0x020000),
    [PCI_RNG_SLOT] = VIRTIO_FUNCTION(virtio_rng_dev, VIRTIO_ID_ENTROPY, 0x00ff00),
};

const struct pci_function *virtio_pci_function(int slot)
{
    return slot > 0 && slot < PCI_SLOTS && functions[slot].ctx ? &functions[slot] : NULL;
}
