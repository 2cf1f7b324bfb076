/* block.h: decoded basic blocks, cached by pc and validated by their bytes.
 *
 * A block is the run of instructions from a pc up to the first one that
 * always jumps or may change translation (jumps, SYSTEM, AMOs, traps), at
 * most BLOCK_MAX of them, never crossing a page nor reaching a breakpoint;
 * a taken conditional branch leaves it early.  The
 * executor runs a block's ops one after the other with no fetch in between
 * and accounts steps once per block (see execute.c).
 *
 * Blocks keep a copy of the aligned 8-byte words of code they were decoded
 * from; a block is used only while the code page still holds those bytes.
 * Decoding depends only on the bits and the pc, so nothing ever needs
 * invalidating: self-modifying code, new mappings and another page at the
 * same address all just show up as other bytes.
 *
 * Comparing the bytes at every block entry would cost more than decoding
 * saves, so a RAM page that blocks run from gets a generation number
 * (struct code_page) and loses it on any write: such a page is kept out of
 * the write TLB, and every other write path marks the page it writes
 * (ram_mark_dirty).  A block stamped with its page's current generation is
 * used as is; otherwise its bytes are compared once and it is stamped again.
 * Writes from the host (tests, restores) are not seen: the host says it
 * wrote (machine_host_wrote, machine_invalidate_ram), and the next run
 * starts by giving code pages new generations (block_cache_recheck).  A store into
 * the current code page takes the slow path, which ends the block.
 *
 * A page that keeps being written while blocks run from it (code and data
 * sharing a page) would pay a slow store and a recheck each time; after
 * BLOCK_BUSY_WRITES such writes in a run it is left in the write TLB and its
 * blocks are checked at every entry instead, and end after each store.
 *
 * Blocks live in an arena; when it is full the whole cache starts over.
 * The cache only saves decoding: whether a block is found never changes
 * what the guest sees.
 */
#ifndef CHRONO_BLOCK_H
#define CHRONO_BLOCK_H

#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include "decode.h"

#define BLOCK_MAX 32                    /* instructions per block */
#define BLOCK_DIR_SIZE (1u << 17)       /* directory slots, indexed by pc */
#define BLOCK_ARENA_SIZE (16u << 20)    /* bytes of blocks before starting over */
#define BLOCK_BUSY_WRITES 4             /* writes to a code page before it is checked per entry */

struct block {
    uint64_t pc;
    uint32_t n;                 /* instructions */
    uint16_t nwords;            /* aligned words of code it was decoded from */
    bool busy;                  /* built for a busy page: checked at every entry, stores end it */
    bool breakpoint;            /* its first instruction has one (blocks are rebuilt when they change) */
    const uint64_t *words;      /* their contents then (stored after the ops) */
    uint64_t gen;               /* the code page's generation when last checked */
    const void *jit;            /* its translation (jit.h), valid while jit_epoch is current */
    uint32_t jit_epoch;         /* the code cache epoch it was translated in, 0 = never */
    uint32_t jit_uses;          /* runs before that */
    struct decoded ops[];       /* n instructions, then an OP_END unless the last one jumps */
};

struct block_cache {
    struct block **dir;         /* BLOCK_DIR_SIZE slots; empty ones hold `none` */
    uint8_t *arena;
    size_t used;
    struct block *scratch;      /* a block built for one use (budget tails, odd fetches) */
};

struct machine;

bool block_cache_init(struct block_cache *c);
void block_cache_free(struct block_cache *c);
/* Forget every block (breakpoints changed: blocks stop before them). */
void block_cache_flush(struct block_cache *c);

/* The cached block for pc if its code page is still at generation gen. */
static inline struct block *block_lookup(struct block_cache *c, uint64_t pc, uint64_t gen)
{
    struct block *b = c->dir[(pc >> 1) & (BLOCK_DIR_SIZE - 1)];
    return b->pc == pc && b->gen == gen ? b : NULL;
}

/* Otherwise: the cached block if its bytes are still those in `page` (the
 * host address of pc's code page), or a new one; stamped with the page's
 * generation (which it gets now if it had none).  NULL if the first
 * instruction crosses the page end.  `handlers` maps ops to the executor's
 * code. */
struct block *block_get(struct machine *m, uint64_t pc, const uint8_t *page,
                        const void *const *handlers);
/* Give every code page a new generation (its blocks recheck their bytes)
 * and forget this run's write counts. */
void block_cache_recheck(struct machine *m, bool host_wrote);

/* Decode the block at pc from `page` and cache it (unstamped); at most `max`
 * instructions (and then not cached) when max < BLOCK_MAX.  NULL if the
 * first instruction crosses the page end. */
struct block *block_build(struct machine *m, uint64_t pc, const uint8_t *page, uint32_t max,
                          const void *const *handlers);
/* A one-instruction block for bits fetched the slow way (not cached). */
struct block *block_build_one(struct machine *m, uint64_t pc, uint32_t insn,
                              const void *const *handlers);

#endif
