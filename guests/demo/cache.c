/* cache.c: write-back block cache in RAM.
 *
 * CACHE_BLOCKS buffers of one 512-byte block each, kept on an LRU list
 * (doubly linked, head = most recently used).  A miss takes the least
 * recently used buffer, writing it back first if it is dirty.  Dirty blocks
 * reach the disk only when they are evicted, on sync/fsck/poweroff, or from
 * the periodic flush: when the first block becomes dirty (the cache goes from
 * clean to dirty) a deadline FLUSH_DELAY later is armed in the CLINT's
 * mtimecmp, and the shell's idle loop writes everything back when it passes,
 * like an OS page cache's dirty-expire writeback.  While nothing is dirty,
 * mtimecmp is all-ones and mie.MTIE is off.
 *
 * A pointer returned by cache_get() stays valid only until the next
 * cache_get(); callers never hold two blocks at once. */
#include "demo.h"

#define CACHE_BLOCKS 32
#define FLUSH_DELAY (5 * TIMEBASE_HZ)   /* 5 s of virtual time */

static struct cblock blocks[CACHE_BLOCKS] __attribute__((aligned(64)));
static struct cblock *head, *tail;
static unsigned ndirty;
static int flush_scheduled;
static uint64_t flush_deadline;

static void unlink_block(struct cblock *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        tail = b->prev;
    b->prev = b->next = 0;
}

static void push_front(struct cblock *b)
{
    b->prev = 0;
    b->next = head;
    if (head)
        head->prev = b;
    head = b;
    if (!tail)
        tail = b;
}

static void cancel_flush(void)
{
    if (flush_scheduled) {
        flush_scheduled = 0;
        timer_disarm();
    }
}

void cache_init(void)
{
    head = tail = 0;
    for (int i = 0; i < CACHE_BLOCKS; i++) {
        blocks[i].valid = 0;
        blocks[i].dirty = 0;
        blocks[i].blockno = 0;
        blocks[i].prev = blocks[i].next = 0;
        push_front(&blocks[i]);
    }
    ndirty = 0;
    flush_scheduled = 0;
    timer_disarm();
}

struct cblock *cache_get(uint32_t block, int fill)
{
    struct cblock *b;
    for (b = head; b; b = b->next) {
        if (b->valid && b->blockno == block) {
            if (b != head) {
                unlink_block(b);
                push_front(b);
            }
            return b;
        }
    }
    b = tail;
    if (b->valid && b->dirty) {
        if (disk_write(b->blockno, b->data) < 0)
            return 0;
        b->dirty = 0;
        if (--ndirty == 0)
            cancel_flush();
    }
    b->valid = 0;
    if (fill) {
        if (disk_read(block, b->data) < 0)
            return 0;
    } else {
        memset(b->data, 0, BLOCK_SIZE);
    }
    b->blockno = block;
    b->valid = 1;
    unlink_block(b);
    push_front(b);
    return b;
}

void cache_mark_dirty(struct cblock *b)
{
    if (b->dirty)
        return;
    b->dirty = 1;
    ndirty++;
    if (!flush_scheduled) {
        flush_scheduled = 1;
        flush_deadline = mtime() + FLUSH_DELAY;
        timer_arm(flush_deadline);
    }
}

/* Write back every dirty block, in ascending block order. */
int cache_flush(void)
{
    int written = 0, failed = 0;
    for (;;) {
        struct cblock *next = 0;
        for (int i = 0; i < CACHE_BLOCKS; i++) {
            struct cblock *b = &blocks[i];
            if (b->valid && b->dirty && (!next || b->blockno < next->blockno))
                next = b;
        }
        if (!next)
            break;
        if (disk_write(next->blockno, next->data) < 0) {
            failed = 1;     /* drop it rather than retry forever */
        } else {
            written++;
        }
        next->dirty = 0;
        ndirty--;
    }
    cancel_flush();
    return failed ? -1 : written;
}

int cache_flush_scheduled(void)
{
    return flush_scheduled;
}

int cache_flush_due(void)
{
    return flush_scheduled && mtime() >= flush_deadline;
}

unsigned cache_dirty_count(void)
{
    return ndirty;
}

/* The `crash` command: a classic kernel bug.  Overwrite the LRU list's link
 * with a wild pointer, then walk the list as the cache does on every lookup.
 * The walk loads through the bad pointer and takes a load access fault. */
void cache_crash(void)
{
    struct cblock *volatile *link = &head->next;
    struct cblock *bad = (struct cblock *)0xdeadbeef00UL;
    kprintf("crash: overwriting the block cache's LRU link at %p: %p -> %p, then walking the list\n",
            (void *)link, (void *)*link, (void *)bad);
    *link = bad;
    unsigned dirty = 0;
    for (struct cblock *volatile b = head; b; b = b->next)
        dirty += *(volatile uint8_t *)&b->dirty;
    kprintf("crash: walked the list (%u dirty) without faulting?\n", dirty);
    poweroff_fail(3);
}
