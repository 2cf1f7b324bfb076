/* virtio.h: what the two virtio transports, virtio-mmio (virtio_mmio.c) and
 * virtio-pci (virtio_pci.c), share with the devices behind them
 * (virtio_blk.c, virtio_rng.c, virtio_net.c); virtio.c holds the common part
 * (status, interrupt line, split virtqueues).  References are to the virtio
 * 1.2 spec: 2.1 status, 2.7 split virtqueues, 4.1 PCI, 4.2 MMIO.
 *
 * A machine has one transport for all its virtio devices, fixed when it is
 * made (chrono_config.virtio_pci): each device sits either in its mmio slot
 * or in its PCI slot, and the other transport shows that place empty.
 *
 * Each device has `queues` queues (numbered from 0; at most VIRTIO_QUEUES)
 * and its transport state in a struct virtio_state inside struct machine.  Everything the guest hands us (ring
 * addresses, indices, descriptor chains) is untrusted: the helpers below go
 * through phys_read/phys_write (bounds-checked, DMA writes marked dirty) and
 * every loop is bounded by the queue size. */
#ifndef CHRONO_VIRTIO_H
#define CHRONO_VIRTIO_H

#include "machine.h"

#define VIRTQ_MAX 256                   /* QueueNumMax of every queue */
#define VIRTIO_F_VERSION_1 (1ull << 32)

/* Device IDs (5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_ENTROPY 4

/* Device status bits (2.1). */
#define VIRTIO_S_DRIVER_OK 4u
#define VIRTIO_S_FEATURES_OK 8u
#define VIRTIO_S_NEEDS_RESET 64u

/* Interrupt status bits (4.2.2 InterruptStatus, 4.1.4.5 ISR status). */
#define VIRTIO_INT_USED 1u
#define VIRTIO_INT_CONFIG 2u

/* A virtio device, whichever transport carries it. */
struct virtio_dev {
    int mmio_slot;                      /* base VIRTIO_BASE + slot * 0x1000, PLIC source 1 + slot */
    uint32_t device_id;                 /* 5.x: 1 = network, 2 = block, 4 = entropy */
    uint64_t features;                  /* offered; always includes VERSION_1 */
    int queues;                         /* queues 0 .. queues-1 exist (1..VIRTIO_QUEUES) */
    struct virtio_state *(*state)(struct machine *m);
    bool (*present)(struct machine *m); /* NULL: always there */
    /* QueueNotify for queue `queue`, only called while that queue is usable. */
    void (*notify)(struct machine *m, int queue);
    /* Device configuration space (4.2.2 offset 0x100 on, 4.1.4.6); NULL: none. */
    uint64_t (*config_read)(struct machine *m, uint64_t offset, int size);
    uint32_t config_len;                /* bytes of it */
};

extern const struct virtio_dev virtio_blk_dev, virtio_rng_dev, virtio_net_dev;

/* A descriptor chain split into the device-readable and device-writable
 * byte streams (devices never care where descriptor borders fall). */
struct virtq_seg {
    uint64_t addr;
    uint32_t len;
    bool write;
};

struct virtq_chain {
    struct virtq_seg seg[VIRTQ_MAX];    /* 6 KiB: fine on the stack */
    int n;
    uint64_t rlen, wlen;
};

/* Whether the machine's virtio devices are on PCI rather than virtio-mmio. */
static inline bool virtio_on_pci(const struct machine *m) { return m->cfg.virtio_pci != 0; }
/* Whether d exists on this machine (its transport still decides where). */
bool virtio_present(struct machine *m, const struct virtio_dev *d);
/* Back to the reset state (status 0), interrupt line low. */
void virtio_reset(struct machine *m, const struct virtio_dev *d);
/* Drive d's interrupt line from its interrupt status. */
void virtio_update_irq(struct machine *m, const struct virtio_dev *d);
/* The driver wrote the device status (0 = reset). */
void virtio_set_status(struct machine *m, const struct virtio_dev *d, uint32_t val);
/* The driver acknowledged interrupt status bits. */
void virtio_ack(struct machine *m, const struct virtio_dev *d, uint32_t bits);
/* The driver notified queue `queue`: served if it exists and is usable. */
void virtio_notify(struct machine *m, const struct virtio_dev *d, uint32_t queue);
/* The 64 feature bits the device offers, 32 at a time (sel 0, 1; later 0). */
uint32_t virtio_device_features(const struct virtio_dev *d, uint32_t sel);
/* The driver broke the queue protocol: stop serving it until reset (2.1.2). */
void virtio_fail(struct machine *m, const struct virtio_dev *d);
/* DRIVER_OK, queue q of v ready, sane size, not failed. */
bool virtq_usable(const struct virtio_state *v, const struct virtq_state *q);
/* Chains the driver made available that the device has not consumed yet
 * (avail.idx - last_avail_idx), or -1 if avail.idx is unreadable or claims
 * more than the queue holds.  Reads guest RAM only. */
int virtq_pending(struct machine *m, const struct virtq_state *q);
/* Head descriptor of the chain at avail position `index` (free-running). */
bool virtq_head(struct machine *m, const struct virtq_state *q, uint16_t index, uint16_t *head);
/* Walk the chain from head; false if it is malformed (bad index, loop, longer
 * than the queue, unreadable, or indirect, which no device offers). */
bool virtq_read_chain(struct machine *m, const struct virtq_state *q, uint16_t head,
                      struct virtq_chain *c);
/* Copy len bytes between host memory and the readable (to_guest false) or
 * writable (to_guest true) stream of a chain, from byte off of that stream. */
bool virtq_copy(struct machine *m, const struct virtq_chain *c, bool to_guest,
                uint64_t off, uint8_t *host, uint64_t len);
/* Consume the next available chain: its used element (head, len) goes in the
 * used ring and last_avail_idx moves on, so used.idx always equals
 * last_avail_idx.  False if the used ring is not writable. */
bool virtq_push(struct machine *m, struct virtq_state *q, uint16_t head, uint32_t len);
/* After pushing to queue q of device d: publish used.idx and interrupt unless
 * the driver said not to. */
void virtq_publish(struct machine *m, const struct virtio_dev *d, struct virtq_state *q);

#endif
