/* capture.c: copy-on-write capture of RAM pages and disk blocks for snapshots.
 *
 * A savevm takes the CPU/device state and the list of pages (and blocks) to
 * save at one instant, then lets the guest run on while another host thread
 * reads those pages out (machine_capture_read).  A page of the list keeps
 * the snapshot's content until the capture has it:
 *
 *   - every write to RAM or the disk buffer first calls capture_keep_ram /
 *     capture_keep_disk (machine.h: through ram_mark_dirty and the explicit
 *     hooks before writes that mark afterwards), which copies a page still
 *     pending aside before it changes;
 *   - the fast store path cannot bypass that: beginning a capture clears the
 *     dirty map, which flushes every write TLB entry, and an entry is filled
 *     only through ram_mark_dirty;
 *   - the reader takes a pending page straight from RAM, or the copy set
 *     aside, whichever holds the snapshot's content.
 *
 * The two threads agree through one atomic byte per page (enum below): the
 * guest's thread moves PENDING -> SAVING -> ASIDE, the reader PENDING ->
 * READING -> NONE or ASIDE -> NONE.  While the reader holds a page in
 * READING (one memcpy of 4 KiB) a writer waits for it.  Nothing here reads
 * the host: the guest sees exactly what it would without a capture.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "machine.h"

enum { CAP_NONE, CAP_PENDING, CAP_SAVING, CAP_ASIDE, CAP_READING };

static bool capture_area_init(struct capture_area *a, uint64_t units)
{
    if (a->state)
        return true;
    a->units = units;
    a->state = calloc(units ? units : 1, sizeof *a->state);
    a->aside = calloc(units ? units : 1, sizeof *a->aside);
    return a->state && a->aside;
}

/* The capture's tables for `units`, made and faulted in before any capture
 * (at machine creation, at disk attach), so that the first savevm's pause
 * only marks them.  A failure here is met again, and reported, by
 * machine_capture_begin. */
static void prepare_area(struct capture_area *a, uint64_t units)
{
    if (!a->state && capture_area_init(a, units))
        memset(a->state, 0, units ? units : 1);
}

void capture_prepare_ram(struct machine *m)
{
    prepare_area(&m->capture.ram, m->ram_size / PAGE_SIZE);
}

void capture_prepare_disk(struct machine *m)
{
    prepare_area(&m->capture.disk, machine_disk_blocks(m));
}

static void capture_area_free(struct capture_area *a)
{
    if (a->aside)
        for (uint64_t i = 0; i < a->units; i++)
            free(a->aside[i]);
    free(a->state);
    free(a->aside);
    memset(a, 0, sizeof *a);
}

void capture_free(struct machine *m)
{
    capture_area_free(&m->capture.ram);
    capture_area_free(&m->capture.disk);
}

/* Before unit i of `a` (whose bytes are at base + i * PAGE_SIZE, `size` in
 * all) changes: set the snapshot's content aside if it is still pending. */
static void keep(struct capture_area *a, uint64_t i, const uint8_t *base, uint64_t size)
{
    for (;;) {
        uint8_t s = CAP_PENDING;
        if (atomic_compare_exchange_strong(&a->state[i], &s, CAP_SAVING)) {
            uint8_t *copy = malloc(PAGE_SIZE);
            uint64_t off = i * PAGE_SIZE, n = size - off < PAGE_SIZE ? size - off : PAGE_SIZE;
            if (copy) {
                memset(copy + n, 0, PAGE_SIZE - n);
                memcpy(copy, base + off, n);
            }
            a->aside[i] = copy;         /* NULL: out of memory, the reader says so */
            atomic_store(&a->state[i], CAP_ASIDE);
            return;
        }
        if (s != CAP_READING)
            return;                     /* NONE or ASIDE: nothing to keep */
        __builtin_ia32_pause();         /* the reader copies it now: a few microseconds */
    }
}

void capture_keep_ram(struct machine *m, uint64_t paddr, uint64_t len)
{
    struct capture_area *a = &m->capture.ram;
    if (len == 0 || !a->state)
        return;
    uint64_t first = (paddr - RAM_BASE) >> PAGE_SHIFT, last = (paddr - RAM_BASE + len - 1) >> PAGE_SHIFT;
    for (uint64_t i = first; i <= last && i < a->units; i++)
        keep(a, i, m->ram, m->ram_size);
}

void capture_keep_disk(struct machine *m, uint64_t offset, uint64_t len)
{
    struct capture_area *a = &m->capture.disk;
    if (len == 0 || !a->state)
        return;
    for (uint64_t i = offset >> PAGE_SHIFT; i <= (offset + len - 1) >> PAGE_SHIFT && i < a->units; i++)
        keep(a, i, m->disk, m->disk_size);
}

/* Units whose mask byte is set become pending; returns how many. */
static uint64_t mark_pending(struct capture_area *a, const uint8_t *mask)
{
    uint64_t n = 0;
    for (uint64_t i = 0; mask && i < a->units; i++)
        if (mask[i]) {
            atomic_store_explicit(&a->state[i], CAP_PENDING, memory_order_relaxed);
            n++;
        }
    return n;
}

int machine_capture_begin(struct machine *m, const uint8_t *ram_mask, const uint8_t *disk_mask)
{
    struct capture *c = &m->capture;
    if (atomic_load(&c->pending) || (disk_mask && !m->disk))
        return -1;                      /* the last capture is still being read */
    if (!capture_area_init(&c->ram, m->ram_size / PAGE_SIZE) ||
        (m->disk && !capture_area_init(&c->disk, machine_disk_blocks(m))))
        return -1;
    uint64_t n = mark_pending(&c->ram, ram_mask);
    n += m->disk ? mark_pending(&c->disk, disk_mask) : 0;
    atomic_store(&c->pending, n);       /* seq_cst: the states are visible to the reader first */
    machine_clear_ram_dirty(m);         /* and with it every write TLB entry */
    machine_clear_disk_dirty(m);
    return 0;
}

/* Copy unit i of `a` as the snapshot has it into out; false if its copy
 * could not be made (out of memory when it was written). */
static bool read_unit(struct capture_area *a, uint64_t i, const uint8_t *base, uint64_t size,
                      uint8_t *out)
{
    uint8_t s = CAP_PENDING;
    if (atomic_compare_exchange_strong(&a->state[i], &s, CAP_READING)) {
        uint64_t off = i * PAGE_SIZE, n = size - off < PAGE_SIZE ? size - off : PAGE_SIZE;
        memcpy(out, base + off, n);
        memset(out + n, 0, PAGE_SIZE - n);
        atomic_store(&a->state[i], CAP_NONE);
        return true;
    }
    while (s == CAP_SAVING) {           /* the guest is setting it aside right now */
        __builtin_ia32_pause();
        s = atomic_load(&a->state[i]);
    }
    if (s != CAP_ASIDE) {               /* not part of this capture, or read already */
        memset(out, 0, PAGE_SIZE);
        return false;
    }
    bool ok = a->aside[i] != NULL;
    if (ok)
        memcpy(out, a->aside[i], PAGE_SIZE);
    free(a->aside[i]);
    a->aside[i] = NULL;
    atomic_store(&a->state[i], CAP_NONE);
    return ok;
}

/* Whether a 4 KiB page holds a non-zero byte (read while it is still in cache). */
static bool page_nonzero(const uint8_t *page)
{
    uint64_t any = 0;
    for (uint64_t i = 0; i < PAGE_SIZE; i += 8) {
        uint64_t w;
        memcpy(&w, page + i, 8);        /* the compiler makes this one vector load */
        any |= w;
    }
    return any != 0;
}

int machine_capture_read(struct machine *m, int disk, const uint64_t *units, size_t n, uint8_t *out,
                         uint8_t *nonzero)
{
    struct capture *c = &m->capture;
    struct capture_area *a = disk ? &c->disk : &c->ram;
    const uint8_t *base = disk ? m->disk : m->ram;
    uint64_t size = disk ? m->disk_size : m->ram_size;
    int failed = 0;
    if (!a->state)
        return n ? -1 : 0;
    for (size_t k = 0; k < n; k++) {
        if (units[k] >= a->units || !read_unit(a, units[k], base, size, out + k * PAGE_SIZE))
            failed = -1;
        if (nonzero)
            nonzero[k] = page_nonzero(out + k * PAGE_SIZE);
        atomic_fetch_sub(&c->pending, 1);
    }
    return failed;
}

uint64_t machine_capture_pending(struct machine *m)
{
    return atomic_load(&m->capture.pending);
}

void machine_capture_abandon(struct machine *m)
{
    /* Everything still pending stays as the guest wrote it; nothing waits. */
    struct capture *c = &m->capture;
    struct capture_area *areas[2] = { &c->ram, &c->disk };
    for (int k = 0; k < 2; k++) {
        struct capture_area *a = areas[k];
        for (uint64_t i = 0; a->state && i < a->units; i++) {
            uint8_t s = atomic_load(&a->state[i]);
            if (s == CAP_PENDING || s == CAP_ASIDE) {
                free(a->aside[i]);
                a->aside[i] = NULL;
                atomic_store(&a->state[i], CAP_NONE);
            }
        }
    }
    atomic_store(&c->pending, 0);
}
