/* virtio_net.c: the network device (virtio 1.2 section 5.1) in virtio-mmio
 * slot VIRTIO_NET_SLOT or PCI slot PCI_NET_SLOT, present while a network is attached
 * (machine_net_attach).  Queue 0 is receiveq1, queue 1 transmitq1; no control
 * queue, no multiqueue, no segmentation offloads: every frame is a plain
 * Ethernet frame behind a 12-byte struct virtio_net_hdr (5.1.6; with
 * VERSION_1 it always has num_buffers).  The one offload is GUEST_CSUM: the
 * host's frames (slirp's) carry correct checksums, and a driver that takes
 * the feature is told so (DATA_VALID), which spares Linux checking every
 * segment again (a fifth of the instructions of a download).  The MAC
 * address is fixed (QEMU's default), the link is always up.
 *
 * The core does no I/O.  What the guest transmits is completed in the
 * QueueNotify write and copied into a host-side buffer with the position of
 * the instruction that sent it; the notify asks the run loop to stop
 * (CHRONO_STOP_NET) so the host takes the frames at once
 * (machine_net_tx_read).  Completion never depends on the host: a frame that
 * does not fit the buffer (the host did not drain it) is dropped on the host's
 * side only, so what the guest sees is the same either way.
 *
 * What the guest receives comes only from the host, one frame per
 * machine_net_receive() call, into the next receive buffer the guest posted:
 * a logged input, like console bytes.  With no buffer posted the call
 * changes nothing and the host keeps the frame; machine_net_set_rx_waiting()
 * then makes the guest's next receive-queue notify stop the run, so the host
 * delivers as soon as there is room.
 *
 * The saved state is the transport's (struct virtio_state): queued transmit
 * frames are the host's, like console output. */
#include <stdlib.h>
#include <string.h>
#include "virtio.h"

#define RXQ 0
#define TXQ 1

/* Offered features (5.1.3). */
#define F_GUEST_CSUM (1ull << 1)
#define F_MAC (1ull << 5)
#define F_STATUS (1ull << 16)
#define S_LINK_UP 1

/* struct virtio_net_hdr (5.1.6): flags, gso_type, hdr_len, gso_size,
 * csum_start, csum_offset, num_buffers. */
#define NET_HDR 12
#define HDR_FLAGS 0
#define HDR_NUM_BUFFERS 10
#define HDR_F_DATA_VALID 2
#define NET_CONFIG_LEN 8                /* struct virtio_net_config: mac, status */

static const uint8_t net_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

void virtio_net_reset(struct machine *m)
{
    virtio_reset(m, &virtio_net_dev);
}

int machine_net_attach(struct machine *m)
{
    if (m->net.present)
        return -1;
    m->net.tx_buf = malloc(NET_TX_BUF);
    if (!m->net.tx_buf)
        return -1;
    m->net.present = true;
    virtio_net_reset(m);
    return 0;
}

void net_free(struct machine *m)
{
    free(m->net.tx_buf);
}

int machine_net_present(struct machine *m) { return m->net.present; }

/* Keep one transmitted frame for the host, if there is room. */
static void tx_keep(struct machine *m, const struct virtq_chain *c, uint64_t len)
{
    struct net_host *n = &m->net;
    if (n->tx_count == NET_TX_FRAMES || len > NET_TX_BUF - n->tx_used) {
        n->tx_dropped++;
        return;
    }
    struct net_tx_frame *f = &n->tx[n->tx_count];
    f->off = (uint32_t)n->tx_used;
    f->len = (uint32_t)len;
    f->steps = m->hart.steps;
    /* The chain was read from RAM a moment ago; a copy that fails now (a
     * buffer outside RAM) keeps nothing. */
    if (!virtq_copy(m, c, false, NET_HDR, n->tx_buf + f->off, len)) {
        n->tx_dropped++;
        return;
    }
    n->tx_count++;
    n->tx_used += len;
}

/* Transmit queue notify: consume every new chain in order.  A chain is the
 * header then the frame, both device-readable; anything malformed, shorter
 * than a header plus an Ethernet header, or longer than NET_FRAME_MAX is
 * completed and not sent (a real NIC drops such frames too). */
static void net_transmit(struct machine *m)
{
    struct virtq_state *q = &m->vnet.q[TXQ];
    struct virtq_chain c;
    int pending = virtq_pending(m, q), done = 0;
    uint32_t before = m->net.tx_count;

    if (pending < 0) {
        virtio_fail(m, &virtio_net_dev);
        return;
    }
    while (done < pending) {
        uint16_t head;
        if (!virtq_head(m, q, q->last_avail_idx, &head)) {
            virtio_fail(m, &virtio_net_dev);
            break;
        }
        if (virtq_read_chain(m, q, head, &c) && c.rlen >= NET_HDR + 14 &&
            c.rlen - NET_HDR <= NET_FRAME_MAX)
            tx_keep(m, &c, c.rlen - NET_HDR);
        if (!virtq_push(m, q, head, 0)) {       /* transmit buffers are read-only: used length 0 */
            virtio_fail(m, &virtio_net_dev);
            break;
        }
        done++;
    }
    if (done)
        virtq_publish(m, &virtio_net_dev, q);
    if (m->net.tx_count != before)
        machine_request_stop(m, CHRONO_STOP_NET, 0);
}

static void net_notify(struct machine *m, int queue)
{
    if (queue == TXQ)
        net_transmit(m);
    else if (m->net.rx_waiting)
        machine_request_stop(m, CHRONO_STOP_NET, 0);    /* new receive buffers: deliver now */
}

int machine_net_receive(struct machine *m, const uint8_t *frame, size_t len)
{
    struct virtio_state *v = &m->vnet;
    struct virtq_state *q = &v->q[RXQ];
    struct virtq_chain c;
    uint16_t head;

    if (!m->net.present || !virtq_usable(v, q))
        return 0;
    int pending = virtq_pending(m, q);
    if (pending == 0)
        return 0;
    if (pending < 0 || !virtq_head(m, q, q->last_avail_idx, &head)) {
        virtio_fail(m, &virtio_net_dev);
        return -1;
    }
    /* A chain that cannot take the whole frame completes empty: the frame is
     * dropped, as a NIC drops what its buffers cannot hold. */
    uint32_t used = 0;
    if (virtq_read_chain(m, q, head, &c) && len <= NET_FRAME_MAX && c.wlen >= NET_HDR + len) {
        uint8_t hdr[NET_HDR] = { 0 };
        hdr[HDR_NUM_BUFFERS] = 1;
        if (v->driver_features[0] & F_GUEST_CSUM)
            hdr[HDR_FLAGS] = HDR_F_DATA_VALID;
        if (virtq_copy(m, &c, true, 0, hdr, NET_HDR) &&
            virtq_copy(m, &c, true, NET_HDR, (uint8_t *)frame, len))
            used = (uint32_t)(NET_HDR + len);
    }
    if (!virtq_push(m, q, head, used)) {
        virtio_fail(m, &virtio_net_dev);
        return -1;
    }
    virtq_publish(m, &virtio_net_dev, q);
    return used ? 1 : -1;
}

void machine_net_set_rx_waiting(struct machine *m, int waiting) { m->net.rx_waiting = waiting != 0; }

size_t machine_net_tx_read(struct machine *m, uint8_t *buf, size_t len, uint64_t *steps)
{
    struct net_host *n = &m->net;
    if (n->tx_head == n->tx_count)
        return 0;
    const struct net_tx_frame *f = &n->tx[n->tx_head++];
    memcpy(buf, n->tx_buf + f->off, f->len < len ? f->len : len);
    if (steps)
        *steps = f->steps;
    size_t frame_len = f->len;
    if (n->tx_head == n->tx_count)
        n->tx_head = n->tx_count = 0, n->tx_used = 0;
    return frame_len;
}

uint64_t machine_net_tx_dropped(struct machine *m) { return m->net.tx_dropped; }

/* struct virtio_net_config (5.1.4): mac @0, status @6. */
static uint64_t net_config_read(struct machine *m, uint64_t off, int size)
{
    uint8_t cfg[NET_CONFIG_LEN] = { 0 };
    uint64_t v = 0;

    memcpy(cfg, net_mac, sizeof net_mac);
    cfg[6] = S_LINK_UP;
    if (off < sizeof cfg)
        memcpy(&v, cfg + off, (uint64_t)size < sizeof cfg - off ? (uint64_t)size : sizeof cfg - off);
    return v;
}

static struct virtio_state *net_state(struct machine *m) { return &m->vnet; }
static bool net_present(struct machine *m) { return m->net.present; }

const struct virtio_dev virtio_net_dev = {
    .mmio_slot = VIRTIO_NET_SLOT,
    .device_id = VIRTIO_ID_NET,
    .features = F_GUEST_CSUM | F_MAC | F_STATUS | VIRTIO_F_VERSION_1,
    .queues = 2,
    .state = net_state,
    .present = net_present,
    .notify = net_notify,
    .config_read = net_config_read,
    .config_len = NET_CONFIG_LEN,
};
