/* block.h: decoded basic blocks, cached by pc and validated by their bytes.
 *
 * A block is the run of instructions from a pc up to the first one that may
 * jump or change translation (branches, jumps, SYSTEM, AMOs, traps), at most
 * BLOCK_MAX of them, never crossing a page nor reaching a breakpoint.  The
 * executor runs a block's ops one after the other with no fetch in between
 * and accounts steps once per block (see execute.c).
 *
 * Blocks keep a copy of the aligned 8-byte words of code they were decoded
 * from; a block is used only while the code page still holds those bytes.
 * Decoding depends only on the bits and the pc, so nothing ever needs
 * invalidating: self-modifying code, new mappings and another page at the
 * same address all just show up as other bytes.  (Within a block, a store
 * into the code page ends the block, so the next one sees the new bytes.)
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

struct block {
    uint64_t pc;
    uint32_t n;                 /* instructions */
    uint32_t nwords;            /* aligned words of code it was decoded from */
    const uint64_t *words;      /* their contents then (stored after the ops) */
    uint64_t pad;
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

/* The cached block for pc if its code is still what `page` (the host address
 * of pc's code page) holds; NULL otherwise. */
static inline struct block *block_find(struct block_cache *c, uint64_t pc, const uint8_t *page)
{
    struct block *b = c->dir[(pc >> 1) & (BLOCK_DIR_SIZE - 1)];
    if (b->pc != pc)
        return NULL;
    const uint8_t *code = page + (pc & 0xff8);
    uint64_t diff = 0;
    for (uint32_t i = 0; i < b->nwords; i++) {
        uint64_t w;
        memcpy(&w, code + 8 * i, 8);
        diff |= w ^ b->words[i];
    }
    return diff ? NULL : b;
}

/* Decode the block at pc from `page` and cache it; at most `max` instructions
 * (and then not cached) when max < BLOCK_MAX.  NULL if the first instruction
 * crosses the page end.  `handlers` maps ops to the executor's code. */
struct block *block_build(struct machine *m, uint64_t pc, const uint8_t *page, uint32_t max,
                          const void *const *handlers);
/* A one-instruction block for bits fetched the slow way (not cached). */
struct block *block_build_one(struct machine *m, uint64_t pc, uint32_t insn,
                              const void *const *handlers);

#endif
