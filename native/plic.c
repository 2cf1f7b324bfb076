/* plic.c: platform-level interrupt controller, sources 1..31, two contexts
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
    uint32_t cand = p->pending & p->enable[ctx];
    uint32_t best_prio = p->threshold[ctx];
    int best = 0;

    for (int i = 1; i < PLIC_SOURCES; i++)
        if ((cand >> i & 1) && p->priority[i] > best_prio) {
            best = i;
            best_prio = p->priority[i];
        }
    return best;
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

    p->pending = p->level & ~p->claimed & ~1u;
    plic_update(m);
}

void plic_set_level(struct machine *m, int irq, int level)
{
    if (irq <= 0 || irq >= PLIC_SOURCES)
        return;
    if (level)
        m->plic.level |= 1u << irq;
    else
        m->plic.level &= ~(1u << irq);
    plic_refresh(m);
}

static uint32_t plic_claim(struct machine *m, int ctx)
{
    int irq = plic_best(&m->plic, ctx);

    if (irq) {
        m->plic.claimed |= 1u << irq;
        plic_refresh(m);
    }
    return (uint32_t)irq;
}

static void plic_complete(struct machine *m, int ctx, uint32_t irq)
{
    /* Spec 1.0.0 ch. 9: an id not enabled for this context is silently ignored. */
    if (irq == 0 || irq >= PLIC_SOURCES || !(m->plic.enable[ctx] >> irq & 1))
        return;
    m->plic.claimed &= ~(1u << irq);
    plic_refresh(m);
}

/* Context register block index for offset, or -1. */
static int plic_context(uint64_t offset)
{
    if (offset < PLIC_CONTEXT || offset >= PLIC_CONTEXT + PLIC_CONTEXTS * PLIC_CONTEXT_STRIDE)
        return -1;
    return (int)((offset - PLIC_CONTEXT) / PLIC_CONTEXT_STRIDE);
}

/* Enable word 0 (sources 0..31) of a context, or -1. */
static int plic_enable_context(uint64_t offset)
{
    if (offset < PLIC_ENABLE || offset >= PLIC_ENABLE + PLIC_CONTEXTS * PLIC_ENABLE_STRIDE)
        return -1;
    if ((offset - PLIC_ENABLE) % PLIC_ENABLE_STRIDE != 0)
        return -1;
    return (int)((offset - PLIC_ENABLE) / PLIC_ENABLE_STRIDE);
}

static bool plic_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    struct plic_state *p = &m->plic;
    int ctx;
    uint32_t v = 0;

    (void)size;
    if (offset >= PLIC_PRIORITY + 4 && offset < PLIC_PRIORITY + 4 * PLIC_SOURCES)
        v = p->priority[offset / 4];
    else if (offset == PLIC_PENDING)
        v = p->pending;
    else if ((ctx = plic_enable_context(offset)) >= 0)
        v = p->enable[ctx];
    else if ((ctx = plic_context(offset)) >= 0) {
        if (offset % PLIC_CONTEXT_STRIDE == 0)
            v = p->threshold[ctx];
        else if (offset % PLIC_CONTEXT_STRIDE == 4)
            v = plic_claim(m, ctx);
    }
    /* Everything else (source 0, sources above 31, other harts) is reserved: 0. */
    *value = v;
    return true;
}

static bool plic_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    struct plic_state *p = &m->plic;
    uint32_t v = (uint32_t)value;
    int ctx;

    (void)size;
    if (offset >= PLIC_PRIORITY + 4 && offset < PLIC_PRIORITY + 4 * PLIC_SOURCES) {
        p->priority[offset / 4] = v & PLIC_PRIO_MASK;
        plic_update(m);
    } else if ((ctx = plic_enable_context(offset)) >= 0) {
        p->enable[ctx] = v & ~1u;       /* source 0 does not exist */
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
