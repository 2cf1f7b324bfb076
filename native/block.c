/* block.c: building and caching decoded blocks (see block.h). */
#include <stdlib.h>
#include "machine.h"

/* What empty directory slots point to: no pc is odd. */
static struct block none = { .pc = 1 };

#define SCRATCH_SIZE (sizeof(struct block) + (BLOCK_MAX + 1) * sizeof(struct decoded) + \
                      (BLOCK_MAX * 4 / 8 + 2) * sizeof(uint64_t))

bool block_cache_init(struct block_cache *c)
{
    c->dir = malloc(BLOCK_DIR_SIZE * sizeof *c->dir);
    c->arena = malloc(BLOCK_ARENA_SIZE);
    c->scratch = malloc(SCRATCH_SIZE);
    if (!c->dir || !c->arena || !c->scratch) {
        block_cache_free(c);
        return false;
    }
    block_cache_flush(c);
    return true;
}

void block_cache_free(struct block_cache *c)
{
    free(c->dir);
    free(c->arena);
    free(c->scratch);
    c->dir = NULL;
    c->arena = NULL;
    c->scratch = NULL;
}

void block_cache_flush(struct block_cache *c)
{
    for (uint32_t i = 0; i < BLOCK_DIR_SIZE; i++)
        c->dir[i] = &none;
    c->used = 0;
}

/* Ops after which the block ends: they jump, trap, or call out to code that
 * may change translation, interrupts or the code itself.  A conditional
 * branch leaves the block when taken and goes on in it when not. */
static bool ends_block(int op)
{
    switch (op) {
    case OP_JAL: case OP_JALR:
    case OP_SYSTEM: case OP_ATOMIC: case OP_EBREAK: case OP_ILLEGAL:
        return true;
    default:
        return false;
    }
}

/* Fill in what depends on the pc and the executor; true if the block ends here. */
static bool finish(struct decoded *d, uint64_t pc, uint32_t off, uint32_t idx,
                   const void *const *handlers)
{
    d->off = (uint16_t)off;
    d->idx = (uint8_t)idx;
    switch (d->op) {
    case OP_AUIPC: case OP_JAL:
    case OP_BEQ: case OP_BNE: case OP_BLT: case OP_BGE: case OP_BLTU: case OP_BGEU:
        d->imm += pc;
        break;
    }
    bool end = ends_block(d->op);
    /* The executor zeroes x0 between blocks only, so inside one nothing may
     * write it: ALU ops targeting x0 do nothing, a load to x0 ends the block. */
    if (d->rd == 0) {
        if (d->op == OP_LUI || d->op == OP_AUIPC || (d->op >= OP_ADDI && d->op <= OP_REMUW))
            d->op = OP_NOP;
        else if (d->op >= OP_LB && d->op <= OP_LWU)
            end = true;
    }
    d->handler = handlers[d->op];
    return end;
}

static void add_end(struct block *b, uint32_t off, const void *const *handlers)
{
    struct decoded *d = &b->ops[b->n];
    if (b->n && ends_block(d[-1].op))
        return;
    memset(d, 0, sizeof *d);
    d->op = OP_END;
    d->off = (uint16_t)off;
    d->idx = (uint8_t)b->n;
    d->handler = handlers[OP_END];
}

/* Whether code and data share the page: see block.h. */
static bool page_busy(struct machine *m, const uint8_t *page)
{
    return m->code[(uint64_t)(page - m->ram) >> PAGE_SHIFT].writes >= BLOCK_BUSY_WRITES;
}

static bool is_store(int op)
{
    return (op >= OP_SB && op <= OP_SD) || op == OP_FSW || op == OP_FSD;
}

struct block *block_build(struct machine *m, uint64_t pc, const uint8_t *page, uint32_t max,
                          const void *const *handlers)
{
    struct block_cache *c = &m->blocks;
    struct block *b = c->scratch;
    uint32_t start = pc & 0xfff, off = start;

    b->pc = pc;
    b->n = 0;
    b->busy = page_busy(m, page);
    b->breakpoint = m->nbreakpoints && machine_at_breakpoint(m, pc);
    b->jit = NULL;
    b->jit_epoch = 0;
    b->jit_uses = 0;
    while (b->n < max && off < PAGE_SIZE) {
        if (b->n && m->nbreakpoints && machine_at_breakpoint(m, pc + off - start))
            break;
        uint16_t lo, hi;
        memcpy(&lo, page + off, 2);
        uint32_t insn = lo;
        if ((lo & 3) == 3) {
            if (off > PAGE_SIZE - 4)
                break;                  /* crosses the page end: fetched the slow way */
            memcpy(&hi, page + off + 2, 2);
            insn |= (uint32_t)hi << 16;
        }
        struct decoded *d = &b->ops[b->n];
        decode(insn, d);
        bool end = finish(d, pc + off - start, off - start, b->n, handlers) ||
                   (b->busy && is_store(d->op));
        b->n++;
        off += d->len;
        if (end)
            break;
    }
    if (b->n == 0)
        return NULL;
    add_end(b, off - start, handlers);

    /* The aligned words holding the code, copied after the ops. */
    uint32_t first = start & ~7u, last = (off + 7) & ~7u;
    b->nwords = (uint16_t)((last - first) / 8);
    uint64_t *words = (uint64_t *)&b->ops[b->n + 1];
    memcpy(words, page + first, last - first);
    b->words = words;
    if (max < BLOCK_MAX)
        return b;                       /* cut short: used once, never cached */

    size_t size = (size_t)((uint8_t *)(words + b->nwords) - (uint8_t *)b);
    size_t rounded = (size + 31) & ~(size_t)31;
    if (c->used + rounded > BLOCK_ARENA_SIZE)
        block_cache_flush(c);
    struct block *kept = (struct block *)(c->arena + c->used);
    c->used += rounded;
    memcpy(kept, b, size);
    kept->gen = 0;
    kept->words = (const uint64_t *)&kept->ops[kept->n + 1];
    c->dir[(pc >> 1) & (BLOCK_DIR_SIZE - 1)] = kept;
    return kept;
}

static bool same_bytes(const struct block *b, const uint8_t *page)
{
    return memcmp(page + (b->pc & 0xff8), b->words, b->nwords * sizeof(uint64_t)) == 0;
}

struct block *block_get(struct machine *m, uint64_t pc, const uint8_t *page,
                        const void *const *handlers)
{
    struct block *b = m->blocks.dir[(pc >> 1) & (BLOCK_DIR_SIZE - 1)];
    bool busy = page_busy(m, page);
    if (b->pc != pc || b->busy != busy || !same_bytes(b, page)) {
        b = block_build(m, pc, page, BLOCK_MAX, handlers);
        if (!b)
            return NULL;
    }
    if (busy) {
        b->gen = UINT64_MAX;            /* never current: checked at every entry */
        return b;
    }
    uint64_t index = (uint64_t)(page - m->ram) >> PAGE_SHIFT;
    struct code_page *c = &m->code[index];
    if (c->gen == 0) {
        c->gen = ++m->code_gen_last;
        tlb_forget_writes_to(m, page);  /* its stores now take the slow path, which clears gen */
        if (!c->listed) {
            c->listed = true;
            m->code_list[m->code_listed++] = (uint32_t)index;
        }
    }
    b->gen = c->gen;
    return b;
}

void block_cache_recheck(struct machine *m, bool host_wrote)
{
    uint64_t kept = 0;
    for (uint64_t i = 0; i < m->code_listed; i++) {
        struct code_page *c = &m->code[m->code_list[i]];
        c->writes = 0;
        if (c->gen) {
            if (host_wrote)
                c->gen = ++m->code_gen_last;
            m->code_list[kept++] = m->code_list[i];
        } else {
            c->listed = false;
        }
    }
    m->code_listed = kept;
}

struct block *block_build_one(struct machine *m, uint64_t pc, uint32_t insn,
                              const void *const *handlers)
{
    struct block *b = m->blocks.scratch;
    b->pc = pc;
    b->busy = false;
    b->breakpoint = m->nbreakpoints && machine_at_breakpoint(m, pc);
    b->jit = NULL;
    b->jit_epoch = 0;
    b->jit_uses = 0;
    decode(insn, &b->ops[0]);
    finish(&b->ops[0], pc, 0, 0, handlers);
    b->n = 1;
    b->nwords = 0;
    add_end(b, b->ops[0].len, handlers);
    return b;
}
