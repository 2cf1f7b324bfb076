/* jit.h: translating decoded blocks (block.h) to x86-64 host code.
 *
 * A translation runs the integer ops of a block (RV64IM, loads and stores
 * through the TLB, branches, jumps) with the guest registers in h->x, and
 * returns to the block loop (execute.c) in one of two ways:
 *   - an exit: `status` instructions done, go on at `pc` (between blocks);
 *   - a resume (status has JIT_RESUME): `status & ~JIT_RESUME` instructions
 *     done (whole passes over this same block), then the interpreter runs
 *     the block m->jit.running from op `pc` on (chaining may have gone on
 *     into other blocks: see jit.c).  Every TLB miss, misaligned access and op
 *     the translator leaves out (FP, CSRs, AMOs, SYSTEM, traps) resumes, so
 *     the interpreter's own code does everything slow or unusual, and the
 *     state at that point is exactly the interpreter's.
 * A translation may run its block again (a branch or jump back to its own
 * start) while the slice budget holds a whole pass, or go on into the next
 * block's translation (jit.c): nothing it runs calls out, so nothing else
 * can change in between (see docs/core.md, JIT).  Neither goes into a block
 * that starts at a breakpoint: the block loop checks those.
 *
 * Translations hang off the block they were made from, stamped with the
 * code cache's epoch; a block decoded again starts untranslated, a cache
 * flush makes every stamp stale.  All state is per machine (struct jit).
 */
#ifndef CHRONO_JIT_H
#define CHRONO_JIT_H

#include <stdbool.h>
#include <stdint.h>
#include "cache.h"

struct block;
struct machine;
struct tlb_entry;

#define JIT_RESUME (1ull << 63)
#define JIT_HOT 32              /* runs of a block before it is translated (default) */

struct jit_exit {
    uint64_t status;
    uint64_t pc;
};

/* x = h->x, tlb_r/tlb_w = the data TLB of the current set, budget = steps
 * left in the slice (at least the block's n), code_gen = the generation
 * counter of the code page the block is in (block.h), tlb_x = the exec TLB
 * of the current privilege. */
typedef struct jit_exit (*jit_code)(uint64_t *x, struct tlb_entry *tlb_r,
                                    struct tlb_entry *tlb_w, uint64_t budget,
                                    const uint64_t *code_gen, struct tlb_entry *tlb_x);

struct jit {
    bool enabled;               /* asked for and available on this host */
    uint32_t hot;               /* runs of a block before it is translated */
    struct jit_cache cache;
    uint64_t translated;        /* blocks translated */
    uint64_t declined;          /* blocks whose first op is not translated */
    uint64_t guest_ops;         /* guest instructions those translations cover */
    uint64_t code_bytes;        /* host code written, over all cache epochs */
    uint32_t chain_entry;       /* offset of a translation's body: where chained exits enter */
    size_t chain_stub;          /* the shared chaining code's offset in the cache (jit.c) */
    uint32_t stub_epoch;        /* the cache epoch it was emitted in */
    struct block *running;      /* the block a translation was in when it returned */
};

/* Set up; the JIT stays off when `want` is false or the host cannot run it.
 * hot = runs of a block before it is translated, 0 = JIT_HOT. */
void jit_init(struct jit *j, bool want, uint32_t hot);
void jit_free(struct jit *j);
/* Forget every translation (loadvm, replay seeks, or simply starting over). */
void jit_flush(struct jit *j);
/* The block's translation, making it once the block is hot; NULL = interpret. */
jit_code jit_prepare(struct machine *m, struct block *b);

#endif
