/* fpu.h: the F and D extensions (fpu.c), and the bits of FP state the rest
 * of the core needs (CSRs, FP loads and stores in execute.c). */
#ifndef CHRONO_FPU_H
#define CHRONO_FPU_H

#include <stdint.h>
#include <stdbool.h>
#include "cpu.h"
#include "decode.h"

/* fflags: accrued exception flags, fcsr[4:0]. */
#define FFLAG_NX 0x01u      /* inexact */
#define FFLAG_UF 0x02u      /* underflow */
#define FFLAG_OF 0x04u      /* overflow */
#define FFLAG_DZ 0x08u      /* divide by zero */
#define FFLAG_NV 0x10u      /* invalid operation */
#define FFLAGS_MASK 0x1fu
#define FRM_SHIFT 5         /* frm = fcsr[7:5] */
#define FCSR_MASK 0xffu

/* mstatus.FS = Off (0) makes every FP instruction and FP CSR illegal. */
static inline bool fpu_enabled(const struct hart *h)
{
    return (h->mstatus & MSTATUS_FS) != 0;
}

/* Anything that changes an f register or fcsr sets FS = Dirty (3). */
static inline void fpu_set_dirty(struct hart *h)
{
    h->mstatus |= MSTATUS_FS;
}

/* A single-precision value written to an f register is NaN-boxed. */
static inline uint64_t fpu_box32(uint32_t value)
{
    return 0xffffffff00000000ull | value;
}

/* Execute an FP instruction (d->op in OP_FP_FIRST..OP_FP_LAST; loads and
 * stores are done by the executor).  Returns false if it is illegal: FS is
 * Off, or the rounding mode is dynamic and frm holds a reserved value. */
bool fpu_execute(struct hart *h, const struct decoded *d);

#endif
