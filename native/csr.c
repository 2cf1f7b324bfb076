/* csr.c: control and status registers.
 *
 * Every CSR's writable bits are written down once, as masks, below (WARL
 * fields).  A CSR that is not listed here does not exist: the access raises
 * illegal-instruction, which is how firmware probes for features.
 */
#include "machine.h"
#include "fpu.h"

#define MISA_RV64 (2ull << 62)
#define MISA_EXT(c) (1ull << ((c) - 'A'))
#define MISA_VALUE (MISA_RV64 | MISA_EXT('I') | MISA_EXT('M') | MISA_EXT('A') | \
                    MISA_EXT('F') | MISA_EXT('D') | MISA_EXT('C') | MISA_EXT('S') | \
                    MISA_EXT('U'))

/* mstatus bits software may write.  FS takes all four states (Off, Initial,
 * Clean, Dirty; it is Off at reset); SD is derived from it on reads. */
#define MSTATUS_WRITABLE (MSTATUS_SIE | MSTATUS_MIE | MSTATUS_SPIE | MSTATUS_MPIE | \
                          MSTATUS_SPP | MSTATUS_MPP | MSTATUS_FS | MSTATUS_MPRV | \
                          MSTATUS_SUM | MSTATUS_MXR | MSTATUS_TVM | MSTATUS_TW | MSTATUS_TSR)
/* The sstatus view of mstatus, and what S-mode may change through it. */
#define SSTATUS_VISIBLE (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_UBE | MSTATUS_SPP | \
                         MSTATUS_VS | MSTATUS_FS | MSTATUS_XS | MSTATUS_SUM | \
                         MSTATUS_MXR | MSTATUS_UXL | MSTATUS_SD)
#define SSTATUS_WRITABLE (MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | \
                          MSTATUS_MXR)

/* Exceptions that may be delegated: everything but ecall from M. */
#define MEDELEG_WRITABLE 0xb3ffull
#define MIDELEG_WRITABLE (MIP_SSIP | MIP_STIP | MIP_SEIP)
#define MIE_WRITABLE (MIP_SSIP | MIP_MSIP | MIP_STIP | MIP_MTIP | MIP_SEIP | MIP_MEIP)
#define MENVCFG_STCE (1ull << 63)
#define MENVCFG_WRITABLE (1ull | MENVCFG_STCE)          /* FIOM, STCE */
#define SENVCFG_WRITABLE 1ull                           /* FIOM */
#define MCOUNTINHIBIT_WRITABLE 5ull                     /* CY, IR (TM is always 0) */

void csr_reset(struct hart *h)
{
    h->misa = MISA_VALUE;
    h->mstatus = (2ull << 32) | (2ull << 34);           /* UXL = SXL = 64-bit */
    h->priv = PRV_M;
}

static uint64_t read_mstatus(struct hart *h)
{
    uint64_t s = h->mstatus;
    if ((s & MSTATUS_FS) == MSTATUS_FS || (s & MSTATUS_XS) == MSTATUS_XS ||
        (s & MSTATUS_VS) == MSTATUS_VS)
        s |= MSTATUS_SD;
    return s;
}

static void write_mstatus(struct machine *m, uint64_t value, uint64_t writable)
{
    struct hart *h = &m->hart;
    uint64_t old = h->mstatus;
    uint64_t s = (old & ~writable) | (value & writable);
    if (((s & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT) == 2)  /* reserved MPP: keep the old one */
        s = (s & ~MSTATUS_MPP) | (old & MSTATUS_MPP);
    h->mstatus = s & ~MSTATUS_SD;
    if ((old ^ s) & MSTATUS_MXR)
        tlb_flush(m);
    cpu_kick(m);                /* interrupt enables or the data TLB set may have changed */
}

/* Instructions retired: steps that did not trap (ecall and ebreak trap, so they do not count). */
static uint64_t retired(struct hart *h)
{
    return h->steps - h->exceptions;
}

static uint64_t csr_minstret(struct hart *h)
{
    return (h->mcountinhibit & 4) ? h->minstret_frozen : retired(h) + h->minstret_offset;
}

static uint64_t csr_mcycle(struct machine *m)
{
    struct hart *h = &m->hart;
    return (h->mcountinhibit & 1) ? h->mcycle_frozen : machine_vclock_now(m) + h->mcycle_offset;
}

/* May the current mode read counter `index` (0 cycle, 1 time, 2 instret, 3+ hpm)? */
static bool counter_allowed(struct hart *h, int index)
{
    if (h->priv == PRV_M) return true;
    if (!((h->mcounteren >> index) & 1)) return false;
    if (h->priv == PRV_U && !((h->scounteren >> index) & 1)) return false;
    return true;
}

static bool pmp_csr_read(struct hart *h, int csr, uint64_t *value)
{
    if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG0 + 3) {
        int n = csr - CSR_PMPCFG0;
        if (n & 1) return false;                        /* RV64: odd pmpcfg do not exist */
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v |= (uint64_t)h->pmpcfg[n * 4 + i] << (8 * i);
        *value = v;
        return true;
    }
    if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + 16) {
        *value = h->pmpaddr[csr - CSR_PMPADDR0];
        return true;
    }
    if (csr >= CSR_PMPADDR0 + 16 && csr <= CSR_PMPADDR0 + 63) {
        *value = 0;                                     /* entries 16-63 are not implemented: WARL zero */
        return true;
    }
    if (csr >= CSR_PMPCFG0 + 4 && csr <= CSR_PMPCFG0 + 15) {
        if (csr & 1) return false;
        *value = 0;
        return true;
    }
    return false;
}

static bool pmp_locked(struct hart *h, int i) { return h->pmpcfg[i] & PMP_L; }

static bool pmp_csr_write(struct machine *m, int csr, uint64_t value)
{
    struct hart *h = &m->hart;
    if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG0 + 3) {
        int n = csr - CSR_PMPCFG0;
        if (n & 1) return false;
        for (int i = 0; i < 8; i++) {
            int e = n * 4 + i;
            uint8_t cfg = (uint8_t)(value >> (8 * i)) & (PMP_R | PMP_W | PMP_X | PMP_A | PMP_L);
            if (!(cfg & PMP_R)) cfg &= ~PMP_W;          /* R=0 W=1 is reserved */
            if (!pmp_locked(h, e)) h->pmpcfg[e] = cfg;
        }
        pmp_update(m);
        tlb_flush(m);
        return true;
    }
    if (csr >= CSR_PMPADDR0 && csr < CSR_PMPADDR0 + 16) {
        int e = csr - CSR_PMPADDR0;
        bool locked = pmp_locked(h, e) ||
            (e + 1 < 16 && pmp_locked(h, e + 1) && (h->pmpcfg[e + 1] & PMP_A) == PMP_A_TOR);
        if (!locked) h->pmpaddr[e] = value & ((1ull << 54) - 1);
        pmp_update(m);
        tlb_flush(m);
        return true;
    }
    if (csr >= CSR_PMPADDR0 + 16 && csr <= CSR_PMPADDR0 + 63) return true;
    if (csr >= CSR_PMPCFG0 + 4 && csr <= CSR_PMPCFG0 + 15) return !(csr & 1);
    return false;
}

bool csr_read(struct machine *m, int csr, uint64_t *value)
{
    struct hart *h = &m->hart;
    switch (csr) {
    /* The FP CSRs are views of fcsr; they exist only while FS is not Off. */
    case CSR_FFLAGS:
        if (!fpu_enabled(h)) return false;
        *value = h->fcsr & FFLAGS_MASK;
        return true;
    case CSR_FRM:
        if (!fpu_enabled(h)) return false;
        *value = (h->fcsr >> FRM_SHIFT) & 7;
        return true;
    case CSR_FCSR:
        if (!fpu_enabled(h)) return false;
        *value = h->fcsr & FCSR_MASK;
        return true;
    case CSR_CYCLE:
        if (!counter_allowed(h, 0)) return false;
        *value = csr_mcycle(m);
        return true;
    case CSR_TIME:
        if (!counter_allowed(h, 1)) return false;
        *value = machine_mtime_now(m);
        return true;
    case CSR_INSTRET:
        if (!counter_allowed(h, 2)) return false;
        *value = csr_minstret(h);
        return true;
    case CSR_SSTATUS: *value = read_mstatus(h) & SSTATUS_VISIBLE; return true;
    case CSR_SIE: *value = h->mie & h->mideleg; return true;
    case CSR_STVEC: *value = h->stvec; return true;
    case CSR_SCOUNTEREN: *value = h->scounteren; return true;
    case CSR_SENVCFG: *value = h->senvcfg; return true;
    case CSR_SSCRATCH: *value = h->sscratch; return true;
    case CSR_SEPC: *value = h->sepc; return true;
    case CSR_SCAUSE: *value = h->scause; return true;
    case CSR_STVAL: *value = h->stval; return true;
    case CSR_SIP: hart_pending_interrupts(m); *value = h->mip & h->mideleg; return true;
    case CSR_STIMECMP:
        if (h->priv < PRV_M && !(h->menvcfg & MENVCFG_STCE)) return false;
        *value = h->stimecmp;
        return true;
    case CSR_SATP:
        if (h->priv == PRV_S && (h->mstatus & MSTATUS_TVM)) return false;
        *value = h->satp;
        return true;
    case CSR_MVENDORID: case CSR_MARCHID: case CSR_MIMPID: case CSR_MCONFIGPTR:
        *value = 0;
        return true;
    case CSR_MHARTID: *value = h->mhartid; return true;
    case CSR_MSTATUS: *value = read_mstatus(h); return true;
    case CSR_MISA: *value = h->misa; return true;
    case CSR_MEDELEG: *value = h->medeleg; return true;
    case CSR_MIDELEG: *value = h->mideleg; return true;
    case CSR_MIE: *value = h->mie; return true;
    case CSR_MTVEC: *value = h->mtvec; return true;
    case CSR_MCOUNTEREN: *value = h->mcounteren; return true;
    case CSR_MENVCFG: *value = h->menvcfg; return true;
    case CSR_MCOUNTINHIBIT: *value = h->mcountinhibit; return true;
    case CSR_MSCRATCH: *value = h->mscratch; return true;
    case CSR_MEPC: *value = h->mepc; return true;
    case CSR_MCAUSE: *value = h->mcause; return true;
    case CSR_MTVAL: *value = h->mtval; return true;
    case CSR_MIP: hart_pending_interrupts(m); *value = h->mip; return true;
    case CSR_MCYCLE: *value = csr_mcycle(m); return true;
    case CSR_MINSTRET: *value = csr_minstret(h); return true;
    /* Sdtrig with no triggers: tselect only holds 0, tdata1 says "type 0,
     * none here", tinfo lists only type 0.  Firmware and tests probe this. */
    case CSR_TSELECT: case CSR_TDATA1: case CSR_TDATA2: case CSR_TDATA3:
        *value = 0;
        return true;
    case CSR_TINFO: *value = 1; return true;
    }
    /* hpm counters and events exist but count nothing (they read 0). */
    if (csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) { *value = 0; return true; }
    if (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31) { *value = 0; return true; }
    if (csr >= CSR_HPMCOUNTER3 && csr <= CSR_HPMCOUNTER31) {
        if (!counter_allowed(h, csr - CSR_CYCLE)) return false;
        *value = 0;
        return true;
    }
    return pmp_csr_read(h, csr, value);
}

bool csr_write(struct machine *m, int csr, uint64_t value)
{
    struct hart *h = &m->hart;
    switch (csr) {
    /* frm holds any 3-bit value; a reserved one traps only when used. */
    case CSR_FFLAGS:
        if (!fpu_enabled(h)) return false;
        h->fcsr = (h->fcsr & ~FFLAGS_MASK) | ((uint32_t)value & FFLAGS_MASK);
        fpu_set_dirty(h);
        return true;
    case CSR_FRM:
        if (!fpu_enabled(h)) return false;
        h->fcsr = (h->fcsr & FFLAGS_MASK) | (((uint32_t)value & 7) << FRM_SHIFT);
        fpu_set_dirty(h);
        return true;
    case CSR_FCSR:
        if (!fpu_enabled(h)) return false;
        h->fcsr = (uint32_t)value & FCSR_MASK;
        fpu_set_dirty(h);
        return true;
    case CSR_SSTATUS: write_mstatus(m, value, SSTATUS_WRITABLE); return true;
    case CSR_SIE:
        h->mie = (h->mie & ~h->mideleg) | (value & h->mideleg & MIE_WRITABLE);
        cpu_kick(m);
        return true;
    case CSR_STVEC: h->stvec = value & ~2ull; return true;
    case CSR_SCOUNTEREN: h->scounteren = value & 0xffffffffull; return true;
    case CSR_SENVCFG: h->senvcfg = value & SENVCFG_WRITABLE; return true;
    case CSR_SSCRATCH: h->sscratch = value; return true;
    case CSR_SEPC: h->sepc = value & ~1ull; return true;
    case CSR_SCAUSE: h->scause = value; return true;
    case CSR_STVAL: h->stval = value; return true;
    case CSR_SIP:
        /* Only SSIP is software-writable from S-mode, and only if delegated. */
        h->mip = (h->mip & ~(MIP_SSIP & h->mideleg)) | (value & MIP_SSIP & h->mideleg);
        cpu_kick(m);
        return true;
    case CSR_STIMECMP:
        if (h->priv < PRV_M && !(h->menvcfg & MENVCFG_STCE)) return false;
        h->stimecmp = value;
        cpu_kick(m);
        return true;
    case CSR_SATP: {
        if (h->priv == PRV_S && (h->mstatus & MSTATUS_TVM)) return false;
        uint64_t mode = value >> 60;
        /* An unsupported mode leaves satp unchanged (the whole write is ignored).
         * No flush: the TLB switches to the new address space's entries (tlb.c). */
        if (mode != SATP_MODE_BARE && mode != SATP_MODE_SV39 && mode != SATP_MODE_SV48)
            return true;
        h->satp = (mode << 60) | (value & (SATP_ASID_MASK | ((1ull << 44) - 1)));
        tlb_switch(m);
        cpu_kick(m);
        return true;
    }
    case CSR_MSTATUS: write_mstatus(m, value, MSTATUS_WRITABLE); return true;
    case CSR_MISA: return true;                         /* extensions cannot be switched off */
    case CSR_MEDELEG: h->medeleg = value & MEDELEG_WRITABLE; return true;
    case CSR_MIDELEG: h->mideleg = value & MIDELEG_WRITABLE; cpu_kick(m); return true;
    case CSR_MIE: h->mie = value & MIE_WRITABLE; cpu_kick(m); return true;
    case CSR_MTVEC: h->mtvec = value & ~2ull; return true;
    case CSR_MCOUNTEREN: h->mcounteren = value & 0xffffffffull; return true;
    case CSR_MENVCFG: h->menvcfg = value & MENVCFG_WRITABLE; cpu_kick(m); return true;
    case CSR_MCOUNTINHIBIT: {
        uint64_t cycle = csr_mcycle(m), instret = csr_minstret(h);
        h->mcountinhibit = value & MCOUNTINHIBIT_WRITABLE;
        /* Freeze the current values, or resume counting from them. */
        h->mcycle_frozen = cycle;
        h->minstret_frozen = instret;
        h->mcycle_offset = cycle - machine_vclock_now(m);
        h->minstret_offset = instret - retired(h);
        return true;
    }
    case CSR_MSCRATCH: h->mscratch = value; return true;
    case CSR_MEPC: h->mepc = value & ~1ull; return true;
    case CSR_MCAUSE: h->mcause = value; return true;
    case CSR_MTVAL: h->mtval = value; return true;
    case CSR_MIP: {
        uint64_t writable = MIP_SSIP | ((h->menvcfg & MENVCFG_STCE) ? 0 : MIP_STIP);
        h->mip = (h->mip & ~writable) | (value & writable);
        cpu_kick(m);
        return true;
    }
    case CSR_MCYCLE:
        /* The writing instruction's own cycle is not counted (spec 3.3.1). */
        if (h->mcountinhibit & 1) h->mcycle_frozen = value;
        else h->mcycle_offset = value - (machine_vclock_now(m) + 1);
        return true;
    case CSR_MINSTRET:
        if (h->mcountinhibit & 4) h->minstret_frozen = value;
        else h->minstret_offset = value - (retired(h) + 1);
        return true;
    }
    if (csr >= CSR_TSELECT && csr <= CSR_TINFO) return true;
    if (csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) return true;
    if (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31) return true;
    return pmp_csr_write(m, csr, value);
}
