/* virtio_blk.c: the block device (virtio 1.2 section 5.2) in virtio-mmio slot
 * VIRTIO_BLK_SLOT or PCI slot PCI_BLK_SLOT, present while a disk is attached.
 * Requests are served in the driver's notify write, straight into the disk buffer (whose writes are
 * tracked per block for snapshots) and guest RAM (through phys_write, so DMA
 * marks pages dirty). */
#include <string.h>
#include "virtio.h"

#define SECTOR 512ull

/* Offered features (5.2.3, 6). SEG_MAX matters: without it Linux sends one
 * segment per request. */
#define F_SEG_MAX (1ull << 2)
#define F_BLK_SIZE (1ull << 6)
#define F_FLUSH (1ull << 9)

/* Request types and status (5.2.6). */
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2
#define BLK_ID_LEN 20
#define BLK_CONFIG_LEN 0x24             /* struct virtio_blk_config up to what we fill */

void virtio_blk_reset(struct machine *m)
{
    virtio_reset(m, &virtio_blk_dev);
}

/* Serve one request (5.2.6): header in the readable stream, status in the
 * last writable byte.  Returns the number of bytes written to the guest. */
static uint32_t blk_request(struct machine *m, const struct virtq_chain *c)
{
    struct { uint32_t type, reserved; uint64_t sector; } hdr;
    uint8_t status = BLK_S_IOERR;
    uint64_t written = 0;

    if (c->wlen == 0)
        return 0;                       /* nowhere to put the status: nothing to do */
    uint64_t wdata = c->wlen - 1;       /* writable bytes before the status byte */
    if (c->rlen < sizeof hdr || !virtq_copy(m, c, false, 0, (uint8_t *)&hdr, sizeof hdr))
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
            if (!virtq_copy(m, c, true, 0, m->disk + pos, len))
                break;
            written = len;
        } else {
            disk_before_write(m, pos, len);
            bool ok = virtq_copy(m, c, false, sizeof hdr, m->disk + pos, len);
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
        if (virtq_copy(m, c, true, 0, id, n)) {
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
    if (!virtq_copy(m, c, true, c->wlen - 1, &status, 1))
        return (uint32_t)written;
    return (uint32_t)(written + 1);
}

/* QueueNotify: consume every new avail entry in order (2.7.13). */
static void blk_notify(struct machine *m, int queue)
{
    struct virtq_state *q = &m->vblk.q[0];
    struct virtq_chain c;
    int pending = virtq_pending(m, q), done = 0;

    if (pending < 0) {
        virtio_fail(m, &virtio_blk_dev);
        return;
    }
    while (done < pending) {
        uint16_t head;
        if (!virtq_head(m, q, q->last_avail_idx, &head)) {
            virtio_fail(m, &virtio_blk_dev);
            break;
        }
        /* A malformed chain completes with len 0 and no status written. */
        uint32_t len = virtq_read_chain(m, q, head, &c) ? blk_request(m, &c) : 0;
        if (!virtq_push(m, q, head, len)) {
            virtio_fail(m, &virtio_blk_dev);
            break;
        }
        done++;
    }
    if (done)
        virtq_publish(m, &virtio_blk_dev, q);
}

/* struct virtio_blk_config (5.2.4): capacity @0, seg_max @0xc, blk_size @0x14. */
static uint64_t blk_config_read(struct machine *m, uint64_t off, int size)
{
    uint8_t cfg[BLK_CONFIG_LEN] = { 0 };
    uint64_t capacity = m->disk_size / SECTOR, v = 0;
    uint32_t seg_max = VIRTQ_MAX - 2, blk_size = SECTOR;

    memcpy(cfg + 0x00, &capacity, 8);
    memcpy(cfg + 0x0c, &seg_max, 4);
    memcpy(cfg + 0x14, &blk_size, 4);
    if (off < sizeof cfg)
        memcpy(&v, cfg + off, (uint64_t)size < sizeof cfg - off ? (uint64_t)size : sizeof cfg - off);
    return v;
}

static struct virtio_state *blk_state(struct machine *m) { return &m->vblk; }
static bool blk_present(struct machine *m) { return m->disk != NULL; }

const struct virtio_dev virtio_blk_dev = {
    .mmio_slot = VIRTIO_BLK_SLOT,
    .device_id = VIRTIO_ID_BLOCK,
    .features = F_SEG_MAX | F_BLK_SIZE | F_FLUSH | VIRTIO_F_VERSION_1,
    .queues = 1,
    .state = blk_state,
    .present = blk_present,
    .notify = blk_notify,
    .config_read = blk_config_read,
    .config_len = BLK_CONFIG_LEN,
};
