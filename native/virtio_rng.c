/* virtio_rng.c: the entropy device (virtio 1.2 section 5.4) in virtio-mmio
 * slot VIRTIO_RNG_SLOT or PCI slot PCI_RNG_SLOT, always present.  One queue (requestq) of
 * device-writable buffers; no feature bits beyond VERSION_1, no config space.
 *
 * Its bytes come only from the host, as an input: a QueueNotify that leaves
 * writable buffers unfilled stops the run with CHRONO_STOP_ENTROPY (the code
 * says how many bytes are wanted), and the host answers with
 * machine_entropy_write().  There is no pool inside the device, so what the
 * guest reads depends only on guest state and the bytes the host gave at the
 * position it gave them: record/replay logs those calls and nothing else.
 *
 * Pending requests are the chains the driver had made available at its last
 * QueueNotify (avail entries last_avail_idx .. notified_avail_idx) and live
 * in guest RAM, so the saved state is just the transport's.  Only notified
 * chains count, so a request is pending exactly from the stop that announced
 * it until the host fills it, however the run is sliced.  Chains complete in
 * ring order; one that can take no bytes (malformed, a writable buffer outside
 * RAM, or no writable space at all) completes with used length 0 as soon as
 * it reaches the head of the queue, so the head is always a request waiting
 * for the host.  Readable descriptors in a chain are ignored (5.4.6 has
 * none). */
#include "virtio.h"

#define ENTROPY_WANTED_MAX 4096

void virtio_rng_reset(struct machine *m)
{
    virtio_reset(m, &virtio_rng_dev);
}

/* Notified chains not filled yet, or -1 if the driver has since shrunk the
 * queue below that (it must not change QueueNum while live, 4.2.3.2). */
static int rng_pending(const struct virtq_state *q)
{
    uint16_t pending = q->notified_avail_idx - q->last_avail_idx;
    return pending > q->num ? -1 : pending;
}

/* The chain at avail position `index`: its head and how many bytes it can
 * take (0 for a chain that completes empty).  False if the avail ring itself
 * cannot be read. */
static bool rng_chain(struct machine *m, uint16_t index, uint16_t *head,
                      struct virtq_chain *c, uint64_t *room)
{
    struct virtq_state *q = &m->vrng.q[0];

    *room = 0;
    if (!virtq_head(m, q, index, head))
        return false;
    if (!virtq_read_chain(m, q, *head, c))
        return true;
    for (int i = 0; i < c->n; i++)
        if (c->seg[i].write && c->seg[i].len && !phys_is_ram(m, c->seg[i].addr, c->seg[i].len))
            return true;
    /* The used length is 32 bits (2.7.8). */
    *room = c->wlen < UINT32_MAX ? c->wlen : UINT32_MAX;
    return true;
}

/* QueueNotify: take note of what the driver made available, complete the
 * empty chains at the head, and if requests are left, ask the host for bytes. */
static void rng_notify(struct machine *m, int queue)
{
    struct virtio_state *v = &m->vrng;
    struct virtq_state *q = &v->q[0];
    struct virtq_chain c;
    int pending = virtq_pending(m, q), done = 0;
    uint64_t wanted = 0;

    if (pending < 0) {
        virtio_fail(m, &virtio_rng_dev);
        return;
    }
    uint16_t start = q->last_avail_idx;
    q->notified_avail_idx = (uint16_t)(start + pending);
    for (int i = 0; i < pending && wanted < ENTROPY_WANTED_MAX; i++) {
        uint16_t head;
        uint64_t room;
        if (!rng_chain(m, (uint16_t)(start + i), &head, &c, &room)) {
            virtio_fail(m, &virtio_rng_dev);
            break;
        }
        if (room == 0 && wanted == 0) {
            if (!virtq_push(m, q, head, 0)) {
                virtio_fail(m, &virtio_rng_dev);
                break;
            }
            done++;
        }
        wanted += room;
    }
    if (done)
        virtq_publish(m, &virtio_rng_dev, q);
    if (wanted && virtq_usable(v, q))
        machine_request_stop(m, CHRONO_STOP_ENTROPY,
                             wanted < ENTROPY_WANTED_MAX ? wanted : ENTROPY_WANTED_MAX);
}

size_t machine_entropy_wanted(struct machine *m)
{
    struct virtio_state *v = &m->vrng;
    struct virtq_state *q = &v->q[0];
    struct virtq_chain c;
    uint64_t wanted = 0;

    if (!virtq_usable(v, q))
        return 0;
    int pending = rng_pending(q);           /* -1 (a broken queue) wants nothing */
    for (int i = 0; i < pending && wanted < ENTROPY_WANTED_MAX; i++) {
        uint16_t head;
        uint64_t room;
        if (!rng_chain(m, (uint16_t)(q->last_avail_idx + i), &head, &c, &room))
            break;
        wanted += room;
    }
    return wanted < ENTROPY_WANTED_MAX ? wanted : ENTROPY_WANTED_MAX;
}

size_t machine_entropy_write(struct machine *m, const uint8_t *buf, size_t len)
{
    struct virtio_state *v = &m->vrng;
    struct virtq_state *q = &v->q[0];
    struct virtq_chain c;
    size_t given = 0;
    int done = 0;

    if (len == 0 || !virtq_usable(v, q))
        return 0;                       /* no bytes, or no queue: nothing changes */
    int pending = rng_pending(q);
    if (pending < 0) {
        virtio_fail(m, &virtio_rng_dev);
        return 0;
    }
    uint16_t start = q->last_avail_idx;
    for (int i = 0; i < pending; i++) {
        uint16_t head;
        uint64_t room;
        if (!rng_chain(m, (uint16_t)(start + i), &head, &c, &room)) {
            virtio_fail(m, &virtio_rng_dev);
            break;
        }
        if (room && given == len)
            break;                      /* the next request waits for more bytes */
        uint64_t n = room < len - given ? room : len - given;
        /* The used element first: if the used ring is not writable, no byte
         * lands.  The copy cannot fail (rng_chain checked every writable
         * buffer is RAM); it only reads buf. */
        if (!virtq_push(m, q, head, (uint32_t)n)) {
            virtio_fail(m, &virtio_rng_dev);
            break;
        }
        virtq_copy(m, &c, true, 0, (uint8_t *)(buf + given), n);
        given += n;
        done++;
    }
    if (done)
        virtq_publish(m, &virtio_rng_dev, q);
    return given;
}

static struct virtio_state *rng_state(struct machine *m) { return &m->vrng; }

const struct virtio_dev virtio_rng_dev = {
    .mmio_slot = VIRTIO_RNG_SLOT,
    .device_id = VIRTIO_ID_ENTROPY,
    .features = VIRTIO_F_VERSION_1,
    .queues = 1,
    .state = rng_state,
    .notify = rng_notify,
};
