/* clint.c: core-local interruptor for hart 0 (SiFive CLINT layout).
 * msip drives mip.MSIP directly; mtimecmp is only stored here, the core
 * derives mip.MTIP from it and the virtual clock. */
#include "machine.h"

#define CLINT_MSIP 0x0000
#define CLINT_MTIMECMP 0x4000
#define CLINT_MTIME 0xbff8

static bool clint_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    uint64_t v = 0;
    int shift = (offset & 4) * 8;       /* 32-bit access to the high half */

    if (offset == CLINT_MSIP)
        v = m->clint.msip & 1;          /* an 8-byte read sees hart 1's msip (0) above */
    else if ((offset & ~4ull) == CLINT_MTIMECMP)
        v = m->clint.mtimecmp >> shift;
    else if ((offset & ~4ull) == CLINT_MTIME)
        v = machine_mtime_now(m) >> shift;
    *value = size == 4 ? (uint32_t)v : v;
    return true;
}

static bool clint_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    struct clint_state *c = &m->clint;

    if (offset == CLINT_MSIP) {
        c->msip = value & 1;
        if (c->msip)
            m->hart.mip |= MIP_MSIP;
        else
            m->hart.mip &= ~MIP_MSIP;
        cpu_kick(m);
    } else if ((offset & ~4ull) == CLINT_MTIMECMP) {
        if (size == 8)
            c->mtimecmp = value;
        else if (offset & 4)
            c->mtimecmp = (c->mtimecmp & 0xffffffffull) | (uint64_t)(uint32_t)value << 32;
        else
            c->mtimecmp = (c->mtimecmp & ~0xffffffffull) | (uint32_t)value;
        cpu_kick(m);
    }
    /* mtime is read-only here (the clock is the step count); other offsets are reserved. */
    return true;
}

void clint_reset(struct machine *m)
{
    m->clint.mtimecmp = UINT64_MAX;
    m->clint.msip = 0;
    m->clint.pad = 0;
    m->hart.mip &= ~MIP_MSIP;
    cpu_kick(m);
}

const struct mmio_device clint_device = {
    .base = CLINT_BASE, .size = CLINT_SIZE, .sizes = 4 | 8,
    .read = clint_read, .write = clint_write,
};
