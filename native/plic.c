/* plic.c: platform-level interrupt controller, sources 1..95 (as QEMU virt:
 * 1..31 the board's devices, 32..35 the PCIe INTx lines), two contexts
 * for hart 0 (0 = M-mode -> MEIP, 1 = S-mode -> SEIP).  Memory map as in the
 * RISC-V PLIC spec 1.0.0 and QEMU virt.  Gateways are level-triggered: a
 * source is pending while its line is high and it is not claimed. */
#include <string.h>
#include "machine.h"

#define PLIC_PRIORITY 0x000000
#define PLIC_PENDING 0x001000
#define PLIC_ENABLE 0x002000
#define PLIC_ENABLE_STRIDE 0x80
#define PLIC_CONTEXT 0x200000
#define PLIC_CONTEXT_STRIDE 0x1000
#define PLIC_PRIO_MASK 7u       /* priorities and thresholds are 3-bit WARL fields */

/* Highest-priority source pending and enabled for ctx above its threshold;
 * ties go to the lowest id.  0 = none. */
static int plic_best(const struct plic_state *p, int ctx)
{
    uint32_t best_prio = p->threshold[ctx];
    int best = 0;

    for (int w = 0; w < PLIC_WORDS; w++) {
        uint32_t cand = p->pending[w] & p->enable[ctx][w];
        while (cand) {
            int i = w * 32 + __builtin_ctz(cand);
            cand &= cand - 1;
            if (p->priority[i] > best_prio) {
                best = i;
                best_prio = p->priority[i];
            }
        }
    }
    return best;
}

static bool bit(const uint32_t *map, int i) { return map[i / 32] >> (i % 32) & 1; }
static void set_bit(uint32_t *map, int i, bool on)
{
    if (on)
        map[i / 32] |= 1u << (i % 32);
    else
        map[i / 32] &= ~(1u << (i % 32));
}

void plic_update(struct machine *m)
{
    uint64_t mip = m->hart.mip & ~(MIP_MEIP | MIP_SEIP);

    if (plic_best(&m->plic, 0))
        mip |= MIP_MEIP;
    if (plic_best(&m->plic, 1))
        mip |= MIP_SEIP;
    if (mip != m->hart.mip) {
        m->hart.mip = mip;
        cpu_kick(m);
    }
}

/* Re-derive the visible pending register from the gateways, then the hart lines. */
static void plic_refresh(struct machine *m)
{
    struct plic_state *p = &m->plic;

    for (int w = 0; w < PLIC_WORDS; w++)
        p->pending[w] = p->level[w] & ~p->claimed[w];
    p->pending[0] &= ~1u;
    plic_update(m);
}

void plic_set_level(struct machine *m, int irq, int level)
{
    if (irq <= 0 || irq >= PLIC_SOURCES || bit(m->plic.level, irq) == (level != 0))
        return;
    set_bit(m->plic.level, irq, level != 0);
    plic_refresh(m);
}

static uint32_t plic_claim(struct machine *m, int ctx)
{
    int irq = plic_best(&m->plic, ctx);

    if (irq) {
        set_bit(m->plic.claimed, irq, true);
        plic_refresh(m);
    }
    return (uint32_t)irq;
}

static void plic_complete(struct machine *m, int ctx, uint32_t irq)
{
    /* Spec 1.0.0 ch. 9: an id not enabled for this context is silently ignored. */
    if (irq == 0 || irq >= PLIC_SOURCES || !bit(m->plic.enable[ctx], (int)irq))
        return;
    set_bit(m->plic.claimed, (int)irq, false);
    plic_refresh(m);
}

/* Context register block index for offset, or -1. */
static int plic_context(uint64_t offset)
{
    if (offset < PLIC_CONTEXT || offset >= PLIC_CONTEXT + PLIC_CONTEXTS * PLIC_CONTEXT_STRIDE)
        return -1;
    return (int)((offset - PLIC_CONTEXT) / PLIC_CONTEXT_STRIDE);
}

/* The context of an enable word that exists (sources 32*word..), or -1. */
static int plic_enable_context(uint64_t offset, int *word)
{
    if (offset < PLIC_ENABLE || offset >= PLIC_ENABLE + PLIC_CONTEXTS * PLIC_ENABLE_STRIDE)
        return -1;
    uint64_t in = (offset - PLIC_ENABLE) % PLIC_ENABLE_STRIDE;
    if (in >= 4 * PLIC_WORDS)
        return -1;
    *word = (int)(in / 4);
    return (int)((offset - PLIC_ENABLE) / PLIC_ENABLE_STRIDE);
}

static bool plic_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    struct plic_state *p = &m->plic;
    int ctx, word;
    uint32_t v = 0;

    (void)size;
    if (offset >= PLIC_PRIORITY + 4 && offset < PLIC_PRIORITY + 4 * PLIC_SOURCES)
        v = p->priority[offset / 4];
    else if (offset >= PLIC_PENDING && offset < PLIC_PENDING + 4 * PLIC_WORDS)
        v = p->pending[(offset - PLIC_PENDING) / 4];
    else if ((ctx = plic_enable_context(offset, &word)) >= 0)
        v = p->enable[ctx][word];
    else if ((ctx = plic_context(offset)) >= 0) {
        if (offset % PLIC_CONTEXT_STRIDE == 0)
            v = p->threshold[ctx];
        else if (offset % PLIC_CONTEXT_STRIDE == 4)
            v = plic_claim(m, ctx);
    }
    /* Everything else (source 0, sources past the last, other harts) is reserved: 0. */
    *value = v;
    return true;
}

static bool plic_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    struct plic_state *p = &m->plic;
    uint32_t v = (uint32_t)value;
    int ctx, word;

    (void)size;
    if (offset >= PLIC_PRIORITY + 4 && offset < PLIC_PRIORITY + 4 * PLIC_SOURCES) {
        p->priority[offset / 4] = v & PLIC_PRIO_MASK;
        plic_update(m);
    } else if ((ctx = plic_enable_context(offset, &word)) >= 0) {
        p->enable[ctx][word] = word == 0 ? v & ~1u : v;    /* source 0 does not exist */
        plic_update(m);
    } else if ((ctx = plic_context(offset)) >= 0) {
        if (offset % PLIC_CONTEXT_STRIDE == 0) {
            p->threshold[ctx] = v & PLIC_PRIO_MASK;
            plic_update(m);
        } else if (offset % PLIC_CONTEXT_STRIDE == 4) {
            plic_complete(m, ctx, v);
        }
    }
    /* Pending bits are read-only; reserved offsets ignore writes. */
    return true;
}

/* Clears the line levels too: every device's reset lowers its own line. */
void plic_reset(struct machine *m)
{
    memset(&m->plic, 0, sizeof m->plic);
    plic_update(m);
}

const struct mmio_device plic_device = {
    .base = PLIC_BASE, .size = PLIC_SIZE, .sizes = 4,
    .read = plic_read, .write = plic_write,
};
