/* trap.c: exceptions, interrupts and the trap-return instructions
 * (privileged spec, "Machine-Level ISA": mstatus stacking, delegation,
 * vectored mtvec/stvec, interrupt priority). */
#include "machine.h"

static uint64_t timer_pending_bits(struct machine *m)
{
    struct hart *h = &m->hart;
    uint64_t mtime = machine_mtime_now(m);
    uint64_t bits = 0;
    if (mtime >= m->clint.mtimecmp)
        bits |= MIP_MTIP;
    /* Sstc: with menvcfg.STCE, STIP is driven by stimecmp alone. */
    if ((h->menvcfg >> 63) & 1) {
        if (mtime >= h->stimecmp)
            bits |= MIP_STIP;
    } else {
        bits |= h->mip & MIP_STIP;
    }
    return bits;
}

uint64_t hart_pending_interrupts(struct machine *m)
{
    struct hart *h = &m->hart;
    h->mip = (h->mip & ~(MIP_MTIP | MIP_STIP)) | timer_pending_bits(m);
    return h->mip & h->mie;
}

/* Enter the trap handler at `priv` (M or S) with the given cause. */
static void take_trap(struct machine *m, uint64_t cause, uint64_t tval, bool interrupt)
{
    struct hart *h = &m->hart;
    uint64_t code = cause & 63;
    bool to_s = h->priv <= PRV_S &&
                ((interrupt ? h->mideleg : h->medeleg) >> code) & 1;
    uint64_t mcause = interrupt ? (1ull << 63) | code : code;

    if (to_s) {
        h->scause = mcause;
        h->sepc = h->pc;
        h->stval = tval;
        uint64_t s = h->mstatus;
        s = (s & ~MSTATUS_SPIE) | ((s & MSTATUS_SIE) ? MSTATUS_SPIE : 0);
        s = (s & ~MSTATUS_SPP) | (h->priv == PRV_S ? MSTATUS_SPP : 0);
        s &= ~MSTATUS_SIE;
        h->mstatus = s;
        h->priv = PRV_S;
        uint64_t base = h->stvec & ~3ull;
        h->pc = (interrupt && (h->stvec & 1)) ? base + 4 * code : base;
    } else {
        h->mcause = mcause;
        h->mepc = h->pc;
        h->mtval = tval;
        uint64_t s = h->mstatus;
        s = (s & ~MSTATUS_MPIE) | ((s & MSTATUS_MIE) ? MSTATUS_MPIE : 0);
        s = (s & ~MSTATUS_MPP) | ((uint64_t)h->priv << MSTATUS_MPP_SHIFT);
        s &= ~MSTATUS_MIE;
        h->mstatus = s;
        h->priv = PRV_M;
        uint64_t base = h->mtvec & ~3ull;
        h->pc = (interrupt && (h->mtvec & 1)) ? base + 4 * code : base;
    }
    h->wfi = 0;
    cpu_kick(m);
}

void trap_exception(struct machine *m, uint64_t cause, uint64_t tval)
{
    m->hart.exceptions++;       /* the step happens, the instruction does not retire */
    take_trap(m, cause, tval, false);
}

/* Priority order from the spec: MEI, MSI, MTI, SEI, SSI, STI. */
static const int interrupt_order[] = { IRQ_M_EXT, IRQ_M_SOFT, IRQ_M_TIMER,
                                       IRQ_S_EXT, IRQ_S_SOFT, IRQ_S_TIMER };

bool trap_check_interrupts(struct machine *m)
{
    struct hart *h = &m->hart;
    uint64_t pending = hart_pending_interrupts(m);
    if (!pending)
        return false;

    /* M-level interrupts are enabled below M, or in M with MIE; S-level
     * (delegated) ones below S, or in S with SIE, and never in M. */
    bool m_enabled = h->priv < PRV_M || (h->mstatus & MSTATUS_MIE);
    bool s_enabled = h->priv < PRV_S || (h->priv == PRV_S && (h->mstatus & MSTATUS_SIE));
    uint64_t enabled = (m_enabled ? pending & ~h->mideleg : 0) |
                       (s_enabled ? pending & h->mideleg : 0);
    if (!enabled)
        return false;
    for (unsigned i = 0; i < sizeof interrupt_order / sizeof interrupt_order[0]; i++) {
        int irq = interrupt_order[i];
        if (enabled & (1ull << irq)) {
            take_trap(m, (uint64_t)irq, 0, true);
            return true;
        }
    }
    return false;
}

void trap_mret(struct machine *m)
{
    struct hart *h = &m->hart;
    uint64_t s = h->mstatus;
    int mpp = (int)((s & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
    s = (s & ~MSTATUS_MIE) | ((s & MSTATUS_MPIE) ? MSTATUS_MIE : 0);
    s |= MSTATUS_MPIE;
    s &= ~MSTATUS_MPP;                  /* MPP := U, the least-privileged mode */
    if (mpp != PRV_M)
        s &= ~MSTATUS_MPRV;
    h->mstatus = s;
    h->priv = (uint8_t)mpp;
    h->pc = h->mepc;
    cpu_kick(m);
}

void trap_sret(struct machine *m)
{
    struct hart *h = &m->hart;
    uint64_t s = h->mstatus;
    int spp = (s & MSTATUS_SPP) ? PRV_S : PRV_U;
    s = (s & ~MSTATUS_SIE) | ((s & MSTATUS_SPIE) ? MSTATUS_SIE : 0);
    s |= MSTATUS_SPIE;
    s &= ~MSTATUS_SPP;
    s &= ~MSTATUS_MPRV;                 /* returning below M always clears MPRV */
    h->mstatus = s;
    h->priv = (uint8_t)spp;
    h->pc = h->sepc;
    cpu_kick(m);
}
