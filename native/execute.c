/* execute.c: fetch, decode and execute RV64IMAC + Zicsr + Zifencei.
 *
 * One function runs a slice of instructions.  The hot path keeps pc in a local
 * variable, fetches through a cached host pointer to the current code page and
 * does loads/stores through the software TLB; everything unusual (TLB misses,
 * MMIO, misaligned accesses, traps, CSRs) leaves through a slow path that
 * writes pc back first.  Interrupts, timers and the budget are checked by the
 * run loop between slices (see machine.c); anything that may change them
 * calls cpu_kick() to end the slice after the current instruction.
 */
#include <string.h>
#include "machine.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

static inline int64_t sext(uint64_t value, int bits)
{
    return (int64_t)(value << (64 - bits)) >> (64 - bits);
}

/* ---- memory access fast paths --------------------------------------- */

static inline uint64_t tlb_key(uint64_t va, int size)
{
    /* A misaligned address keeps low bits set and never matches a tag. */
    return va & (~0xfffull | (uint64_t)(size - 1));
}

/* TLB hit: do the access and return true; a miss returns false untouched. */
static inline bool load_fast(struct tlb_entry *tlb, uint64_t va, int size, uint64_t *out)
{
    struct tlb_entry *e = &tlb[(va >> PAGE_SHIFT) & (TLB_SIZE - 1)];
    if (likely(e->tag == tlb_key(va, size))) {
        const uint8_t *p = (const uint8_t *)(e->addend + va);
        switch (size) {
        case 1: *out = *p; return true;
        case 2: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
        case 4: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
        default: { uint64_t v; memcpy(&v, p, 8); *out = v; return true; }
        }
    }
    return false;
}

static inline bool store_fast(struct tlb_entry *tlb, uint64_t va, int size, uint64_t value)
{
    struct tlb_entry *e = &tlb[(va >> PAGE_SHIFT) & (TLB_SIZE - 1)];
    if (likely(e->tag == tlb_key(va, size))) {
        uint8_t *p = (uint8_t *)(e->addend + va);
        switch (size) {
        case 1: *p = (uint8_t)value; return true;
        case 2: { uint16_t v = (uint16_t)value; memcpy(p, &v, 2); return true; }
        case 4: { uint32_t v = (uint32_t)value; memcpy(p, &v, 4); return true; }
        default: memcpy(p, &value, 8); return true;
        }
    }
    return false;
}

/* ---- M extension helpers (RISC-V defines division by zero and overflow) -- */

static uint64_t mulh(int64_t a, int64_t b) { return (uint64_t)(((__int128)a * b) >> 64); }
static uint64_t mulhu(uint64_t a, uint64_t b) { return (uint64_t)(((unsigned __int128)a * b) >> 64); }
static uint64_t mulhsu(int64_t a, uint64_t b) { return (uint64_t)(((__int128)a * (unsigned __int128)b) >> 64); }

static uint64_t div64(int64_t a, int64_t b)
{
    if (b == 0) return UINT64_MAX;
    if (a == INT64_MIN && b == -1) return (uint64_t)a;
    return (uint64_t)(a / b);
}
static uint64_t divu64(uint64_t a, uint64_t b) { return b ? a / b : UINT64_MAX; }
static uint64_t rem64(int64_t a, int64_t b)
{
    if (b == 0) return (uint64_t)a;
    if (a == INT64_MIN && b == -1) return 0;
    return (uint64_t)(a % b);
}
static uint64_t remu64(uint64_t a, uint64_t b) { return b ? a % b : a; }
static uint64_t div32(int32_t a, int32_t b)
{
    if (b == 0) return UINT64_MAX;
    if (a == INT32_MIN && b == -1) return (uint64_t)(int64_t)a;
    return (uint64_t)(int64_t)(a / b);
}
static uint64_t divu32(uint32_t a, uint32_t b) { return b ? (uint64_t)(int64_t)(int32_t)(a / b) : UINT64_MAX; }
static uint64_t rem32(int32_t a, int32_t b)
{
    if (b == 0) return (uint64_t)(int64_t)a;
    if (a == INT32_MIN && b == -1) return 0;
    return (uint64_t)(int64_t)(a % b);
}
static uint64_t remu32(uint32_t a, uint32_t b) { return (uint64_t)(int64_t)(int32_t)(b ? a % b : a); }

/* ---- A extension ------------------------------------------------------ */

static uint64_t amo_compute(uint32_t funct5, uint64_t old, uint64_t src, int size)
{
    if (size == 4) {
        old = (uint64_t)(int64_t)(int32_t)old;
        src = (uint64_t)(int64_t)(int32_t)src;
    }
    switch (funct5) {
    case 0x01: return src;                                          /* amoswap */
    case 0x00: return old + src;                                    /* amoadd */
    case 0x04: return old ^ src;                                    /* amoxor */
    case 0x0c: return old & src;                                    /* amoand */
    case 0x08: return old | src;                                    /* amoor */
    case 0x10: return (int64_t)old < (int64_t)src ? old : src;      /* amomin */
    case 0x14: return (int64_t)old > (int64_t)src ? old : src;      /* amomax */
    case 0x18: return old < src ? old : src;                        /* amominu */
    default:   return old > src ? old : src;                        /* amomaxu (0x1c) */
    }
}

static bool amo_valid(uint32_t funct5)
{
    switch (funct5) {
    case 0x00: case 0x01: case 0x04: case 0x08: case 0x0c:
    case 0x10: case 0x14: case 0x18: case 0x1c:
        return true;
    default:
        return false;
    }
}

/* Executes an A-extension instruction; false if it trapped. */
static bool exec_atomic(struct machine *m, uint32_t insn, int size)
{
    struct hart *h = &m->hart;
    uint32_t funct5 = insn >> 27;
    int rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
    uint64_t va = h->x[rs1];
    uint64_t value;

    if (va & (uint64_t)(size - 1)) {
        /* Misaligned atomics are not emulated (they may not be split). */
        trap_exception(m, funct5 == 0x02 ? CAUSE_MISALIGNED_LOAD : CAUSE_MISALIGNED_STORE, va);
        return false;
    }
    if (funct5 == 0x02) {                               /* lr */
        if (rs2 != 0) goto illegal;
        if (!mmu_load_slow(m, va, size, &value)) return false;
        h->resv_addr = va;
        h->resv_valid = 1;
        h->x[rd] = size == 4 ? (uint64_t)(int64_t)(int32_t)value : value;
        return true;
    }
    if (funct5 == 0x03) {                               /* sc */
        bool ok = h->resv_valid && h->resv_addr == va;
        h->resv_valid = 0;
        if (ok) {
            if (!mmu_store_slow(m, va, size, h->x[rs2])) return false;
            h->x[rd] = 0;
        } else {
            /* Failing SC still needs store permission checks?  The spec lets
             * it fail without an exception; we report failure only. */
            h->x[rd] = 1;
        }
        return true;
    }
    if (!amo_valid(funct5)) goto illegal;
    {
        uint8_t *p;
        if (!mmu_host_ptr(m, va, size, &p)) return false;
        uint64_t old = 0;
        memcpy(&old, p, (size_t)size);
        uint64_t result = amo_compute(funct5, old, h->x[rs2], size);
        memcpy(p, &result, (size_t)size);
        h->x[rd] = size == 4 ? (uint64_t)(int64_t)(int32_t)old : old;
        return true;
    }
illegal:
    trap_exception(m, CAUSE_ILLEGAL_INSTRUCTION, insn);
    return false;
}

/* ---- SYSTEM ----------------------------------------------------------- */

/* CSR instructions and privileged ones.  Returns false if it trapped (pc set
 * by the trap); on success the caller advances pc unless *jumped. */
static bool exec_system(struct machine *m, uint32_t insn, bool *jumped)
{
    struct hart *h = &m->hart;
    uint32_t funct3 = (insn >> 12) & 7;
    int rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31;
    int csr = (int)(insn >> 20);

    if (funct3 == 0) {
        if (insn == 0x00000073) {                       /* ecall */
            trap_exception(m, CAUSE_USER_ECALL + h->priv, 0);
            return false;
        }
        if (insn == 0x00100073) {                       /* ebreak */
            trap_exception(m, CAUSE_BREAKPOINT, h->pc);
            return false;
        }
        if (insn == 0x30200073 && h->priv == PRV_M) {   /* mret */
            trap_mret(m);
            *jumped = true;
            return true;
        }
        if (insn == 0x10200073 && h->priv >= PRV_S &&
            !(h->priv == PRV_S && (h->mstatus & MSTATUS_TSR))) { /* sret */
            trap_sret(m);
            *jumped = true;
            return true;
        }
        if (insn == 0x10500073) {                       /* wfi */
            if (h->priv == PRV_U || (h->priv == PRV_S && (h->mstatus & MSTATUS_TW))) goto illegal;
            if (!(hart_pending_interrupts(m)))
                h->wfi = 1;
            cpu_kick(m);
            return true;
        }
        if ((insn & 0xfe007fff) == 0x12000073) {        /* sfence.vma */
            if (h->priv == PRV_U || (h->priv == PRV_S && (h->mstatus & MSTATUS_TVM))) goto illegal;
            tlb_flush(m);
            cpu_kick(m);
            return true;
        }
        goto illegal;
    }
    if (funct3 == 4) goto illegal;

    /* Zicsr: rs1 field is a register (funct3 1-3) or a 5-bit immediate (5-7). */
    uint64_t src = funct3 & 4 ? (uint64_t)rs1 : h->x[rs1];
    uint32_t op = funct3 & 3;                           /* 1 rw, 2 rs, 3 rc */
    bool writes = op == 1 || rs1 != 0;
    bool reads = op != 1 || rd != 0;
    uint64_t old = 0;

    /* Privilege and read-only checks come first: csr[9:8] is the lowest
     * privilege allowed, csr[11:10] == 3 marks a read-only CSR. */
    if (h->priv < ((csr >> 8) & 3)) goto illegal;
    if (writes && (csr >> 10) == 3) goto illegal;
    if (reads || op != 1) {
        if (!csr_read(m, csr, &old)) goto illegal;
    } else {
        uint64_t probe;
        if (!csr_read(m, csr, &probe)) goto illegal;    /* still must exist */
    }
    if (writes) {
        uint64_t value = op == 1 ? src : op == 2 ? old | src : old & ~src;
        if (!csr_write(m, csr, value)) goto illegal;
    }
    h->x[rd] = old;
    return true;

illegal:
    trap_exception(m, CAUSE_ILLEGAL_INSTRUCTION, insn);
    return false;
}

/* ---- the slice loop ----------------------------------------------------- */

static bool at_breakpoint(struct machine *m, uint64_t pc)
{
    for (int i = 0; i < m->nbreakpoints; i++)
        if (m->breakpoints[i] == pc) return true;
    return false;
}

void cpu_run_slice(struct machine *m, uint64_t slice_end)
{
    struct hart *h = &m->hart;
    uint64_t *x = h->x;
    int dset = mmu_data_set(h);
    struct tlb_entry *tlb_r = m->tlb.e[dset][ACCESS_READ];
    struct tlb_entry *tlb_w = m->tlb.e[dset][ACCESS_WRITE];
    uint64_t code_page = TLB_INVALID;   /* virtual page the code pointer is valid for */
    uint8_t *code = NULL;               /* host address of code_page */
    uint64_t pc = h->pc;
    uint64_t steps = h->steps;          /* h->steps and h->pc are written back on every slow path */
    uint64_t end = slice_end;           /* reloaded after slow paths: cpu_kick() zeroes m->slice_end */
    bool check_breakpoints = m->nbreakpoints != 0;

    m->slice_end = slice_end;

/* Before any call out of the fast path: the callee may read pc or steps. */
#define SYNC() (h->pc = pc, h->steps = steps)
/* Memory accesses: a TLB hit stays inline, a miss takes the slow path. */
#define LOAD(va, size, out) do { \
        uint64_t va_ = (va); \
        if (!load_fast(tlb_r, va_, (size), (out))) { \
            SYNC(); \
            bool ok_ = mmu_load_slow(m, va_, (size), (out)); \
            end = m->slice_end; \
            if (!ok_) goto trapped; \
        } \
    } while (0)
#define STORE(va, size, value) do { \
        uint64_t va_ = (va); \
        if (!store_fast(tlb_w, va_, (size), (value))) { \
            SYNC(); \
            bool ok_ = mmu_store_slow(m, va_, (size), (value)); \
            end = m->slice_end; \
            if (!ok_) goto trapped; \
        } \
    } while (0)
/* Leave the fast path: write pc back, raise the trap, continue at the handler. */
#define TRAP(cause, tval) do { h->pc = pc; trap_exception(m, (cause), (tval)); goto trapped; } while (0)
#define ILLEGAL() TRAP(CAUSE_ILLEGAL_INSTRUCTION, insn)

    while (steps < end) {
        uint32_t insn;
        uint64_t next;

        if (unlikely(check_breakpoints) && at_breakpoint(m, pc) &&
            !(steps == m->bp_skip_steps && pc == m->bp_skip_pc)) {
            SYNC();
            machine_request_stop(m, CHRONO_STOP_BREAKPOINT, pc);
            return;
        }

        /* Fetch: 16-bit parcels, through the cached code page when possible. */
        if (likely((pc & ~0xfffull) == code_page)) {
            uint32_t off = pc & 0xfff;
            if (likely(off <= 0xffc)) {
                memcpy(&insn, code + off, 4);
                if ((insn & 3) != 3) insn &= 0xffff;
            } else {
                uint16_t lo;
                memcpy(&lo, code + off, 2);
                insn = lo;
                if ((lo & 3) == 3) {
                    uint16_t hi;
                    SYNC();
                    if (!mmu_fetch_slow(m, pc + 2, &hi)) goto trapped;
                    insn |= (uint32_t)hi << 16;
                }
            }
        } else {
            uint8_t *page = mmu_exec_page(m, pc);
            if (page) {
                code_page = pc & ~0xfffull;
                code = page;
                continue;
            }
            uint16_t lo, hi;
            SYNC();
            if (!mmu_fetch_slow(m, pc, &lo)) goto trapped;
            insn = lo;
            if ((lo & 3) == 3) {
                if (!mmu_fetch_slow(m, pc + 2, &hi)) goto trapped;
                insn |= (uint32_t)hi << 16;
            }
        }

        if ((insn & 3) != 3) {
            /* ---- RVC: 16-bit instructions ---- */
            uint32_t funct3 = insn >> 13;
            int rdp = 8 + ((insn >> 2) & 7);            /* rd' / rs2' */
            int rs1p = 8 + ((insn >> 7) & 7);           /* rs1' / rd' */
            int rd = (insn >> 7) & 31;                  /* full rd / rs1 */
            int rs2 = (insn >> 2) & 31;
            uint64_t imm6 = (uint64_t)sext(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f), 6);
            next = pc + 2;
            switch ((insn & 3) << 3 | funct3) {
            case 0x00: {                                /* c.addi4spn */
                uint64_t imm = ((insn >> 7) & 0x30) | ((insn >> 1) & 0x3c0) |
                               ((insn >> 4) & 0x4) | ((insn >> 2) & 0x8);
                if (imm == 0) ILLEGAL();                /* includes the all-zero parcel */
                x[rdp] = x[2] + imm;
                break;
            }
            case 0x02: {                                /* c.lw */
                uint64_t imm = ((insn >> 7) & 0x38) | ((insn >> 4) & 0x4) | ((insn << 1) & 0x40);
                uint64_t v;
                LOAD(x[rs1p] + imm, 4, &v);
                x[rdp] = (uint64_t)(int64_t)(int32_t)v;
                break;
            }
            case 0x03: {                                /* c.ld */
                uint64_t imm = ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0);
                uint64_t v;
                LOAD(x[rs1p] + imm, 8, &v);
                x[rdp] = v;
                break;
            }
            case 0x06: {                                /* c.sw */
                uint64_t imm = ((insn >> 7) & 0x38) | ((insn >> 4) & 0x4) | ((insn << 1) & 0x40);
                STORE(x[rs1p] + imm, 4, x[rdp]);
                break;
            }
            case 0x07: {                                /* c.sd */
                uint64_t imm = ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0);
                STORE(x[rs1p] + imm, 8, x[rdp]);
                break;
            }
            case 0x08:                                  /* c.addi / c.nop */
                x[rd] += imm6;
                break;
            case 0x09:                                  /* c.addiw */
                if (rd == 0) ILLEGAL();
                x[rd] = (uint64_t)(int64_t)(int32_t)(x[rd] + imm6);
                break;
            case 0x0a:                                  /* c.li */
                x[rd] = imm6;
                break;
            case 0x0b:
                if (rd == 2) {                          /* c.addi16sp */
                    uint64_t imm = ((insn >> 3) & 0x200) | ((insn >> 2) & 0x10) |
                                   ((insn << 1) & 0x40) | ((insn << 4) & 0x180) | ((insn << 3) & 0x20);
                    if (imm == 0) ILLEGAL();
                    x[2] += (uint64_t)sext(imm, 10);
                } else {                                /* c.lui */
                    if (imm6 == 0) ILLEGAL();
                    x[rd] = imm6 << 12;
                }
                break;
            case 0x0c: {                                /* arithmetic on rd' */
                uint32_t shamt = ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f);
                switch ((insn >> 10) & 3) {
                case 0: x[rs1p] >>= shamt; break;                                   /* c.srli */
                case 1: x[rs1p] = (uint64_t)((int64_t)x[rs1p] >> shamt); break;     /* c.srai */
                case 2: x[rs1p] &= imm6; break;                                     /* c.andi */
                default: {
                    uint64_t a = x[rs1p], b = x[rdp];
                    switch (((insn >> 10) & 4) | ((insn >> 5) & 3)) {
                    case 0: x[rs1p] = a - b; break;                                 /* c.sub */
                    case 1: x[rs1p] = a ^ b; break;                                 /* c.xor */
                    case 2: x[rs1p] = a | b; break;                                 /* c.or */
                    case 3: x[rs1p] = a & b; break;                                 /* c.and */
                    case 4: x[rs1p] = (uint64_t)(int64_t)(int32_t)(a - b); break;   /* c.subw */
                    case 5: x[rs1p] = (uint64_t)(int64_t)(int32_t)(a + b); break;   /* c.addw */
                    default: ILLEGAL();
                    }
                }
                }
                break;
            }
            case 0x0d: {                                /* c.j */
                uint64_t imm = ((insn >> 1) & 0x800) | ((insn >> 7) & 0x10) | ((insn >> 1) & 0x300) |
                               ((insn << 2) & 0x400) | ((insn >> 1) & 0x40) | ((insn << 1) & 0x80) |
                               ((insn >> 2) & 0xe) | ((insn << 3) & 0x20);
                next = pc + (uint64_t)sext(imm, 12);
                break;
            }
            case 0x0e: case 0x0f: {                     /* c.beqz / c.bnez */
                uint64_t imm = ((insn >> 4) & 0x100) | ((insn >> 7) & 0x18) | ((insn << 1) & 0xc0) |
                               ((insn >> 2) & 0x6) | ((insn << 3) & 0x20);
                if ((x[rs1p] == 0) == (funct3 == 6))
                    next = pc + (uint64_t)sext(imm, 9);
                break;
            }
            case 0x10:                                  /* c.slli */
                x[rd] <<= ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f);
                break;
            case 0x12: {                                /* c.lwsp */
                uint64_t imm = ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1c) | ((insn << 4) & 0xc0);
                uint64_t v;
                if (rd == 0) ILLEGAL();
                LOAD(x[2] + imm, 4, &v);
                x[rd] = (uint64_t)(int64_t)(int32_t)v;
                break;
            }
            case 0x13: {                                /* c.ldsp */
                uint64_t imm = ((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0);
                uint64_t v;
                if (rd == 0) ILLEGAL();
                LOAD(x[2] + imm, 8, &v);
                x[rd] = v;
                break;
            }
            case 0x14:
                if (!(insn & 0x1000)) {
                    if (rs2 == 0) {                     /* c.jr */
                        if (rd == 0) ILLEGAL();
                        next = x[rd] & ~1ull;
                    } else {                            /* c.mv */
                        x[rd] = x[rs2];
                    }
                } else if (rs2 == 0) {
                    if (rd == 0) {                      /* c.ebreak */
                        TRAP(CAUSE_BREAKPOINT, pc);
                    }
                    uint64_t target = x[rd] & ~1ull;    /* c.jalr */
                    x[1] = pc + 2;
                    next = target;
                } else {                                /* c.add */
                    x[rd] += x[rs2];
                }
                break;
            case 0x16: {                                /* c.swsp */
                uint64_t imm = ((insn >> 7) & 0x3c) | ((insn >> 1) & 0xc0);
                STORE(x[2] + imm, 4, x[rs2]);
                break;
            }
            case 0x17: {                                /* c.sdsp */
                uint64_t imm = ((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0);
                STORE(x[2] + imm, 8, x[rs2]);
                break;
            }
            default:                                    /* FP loads/stores, reserved */
                ILLEGAL();
            }
        } else {
            /* ---- 32-bit instructions ---- */
            int rd = (insn >> 7) & 31;
            int rs1 = (insn >> 15) & 31;
            int rs2 = (insn >> 20) & 31;
            uint32_t funct3 = (insn >> 12) & 7;
            uint32_t funct7 = insn >> 25;
            int64_t imm_i = (int32_t)insn >> 20;
            next = pc + 4;
            switch ((insn >> 2) & 31) {
            case 0x0d:                                  /* lui */
                x[rd] = (uint64_t)(int64_t)(int32_t)(insn & 0xfffff000);
                break;
            case 0x05:                                  /* auipc */
                x[rd] = pc + (uint64_t)(int64_t)(int32_t)(insn & 0xfffff000);
                break;
            case 0x1b: {                                /* jal */
                uint64_t imm = ((insn >> 11) & 0x100000) | (insn & 0xff000) |
                               ((insn >> 9) & 0x800) | ((insn >> 20) & 0x7fe);
                x[rd] = pc + 4;
                next = pc + (uint64_t)sext(imm, 21);
                break;
            }
            case 0x19: {                                /* jalr */
                if (funct3 != 0) ILLEGAL();
                uint64_t target = (x[rs1] + (uint64_t)imm_i) & ~1ull;
                x[rd] = pc + 4;
                next = target;
                break;
            }
            case 0x18: {                                /* branches */
                uint64_t a = x[rs1], b = x[rs2];
                bool taken;
                switch (funct3) {
                case 0: taken = a == b; break;
                case 1: taken = a != b; break;
                case 4: taken = (int64_t)a < (int64_t)b; break;
                case 5: taken = (int64_t)a >= (int64_t)b; break;
                case 6: taken = a < b; break;
                case 7: taken = a >= b; break;
                default: ILLEGAL();
                }
                if (taken) {
                    uint64_t imm = ((insn >> 19) & 0x1000) | ((insn << 4) & 0x800) |
                                   ((insn >> 20) & 0x7e0) | ((insn >> 7) & 0x1e);
                    next = pc + (uint64_t)sext(imm, 13);
                }
                break;
            }
            case 0x00: {                                /* loads */
                uint64_t va = x[rs1] + (uint64_t)imm_i, v;
                switch (funct3) {
                case 0: LOAD(va, 1, &v); v = (uint64_t)(int64_t)(int8_t)v; break;
                case 1: LOAD(va, 2, &v); v = (uint64_t)(int64_t)(int16_t)v; break;
                case 2: LOAD(va, 4, &v); v = (uint64_t)(int64_t)(int32_t)v; break;
                case 3: LOAD(va, 8, &v); break;
                case 4: LOAD(va, 1, &v); break;
                case 5: LOAD(va, 2, &v); break;
                case 6: LOAD(va, 4, &v); break;
                default: ILLEGAL();
                }
                x[rd] = v;
                break;
            }
            case 0x08: {                                /* stores */
                uint64_t imm = (uint64_t)(((int64_t)(int32_t)(insn & 0xfe000000) >> 20) | ((insn >> 7) & 0x1f));
                uint64_t va = x[rs1] + imm;
                if (funct3 > 3) ILLEGAL();
                STORE(va, 1 << funct3, x[rs2]);
                break;
            }
            case 0x04: {                                /* op-imm */
                uint64_t a = x[rs1];
                uint32_t shamt = (insn >> 20) & 63;
                switch (funct3) {
                case 0: x[rd] = a + (uint64_t)imm_i; break;
                case 2: x[rd] = (int64_t)a < imm_i; break;
                case 3: x[rd] = a < (uint64_t)imm_i; break;
                case 4: x[rd] = a ^ (uint64_t)imm_i; break;
                case 6: x[rd] = a | (uint64_t)imm_i; break;
                case 7: x[rd] = a & (uint64_t)imm_i; break;
                case 1:
                    if ((insn >> 26) != 0) ILLEGAL();
                    x[rd] = a << shamt;
                    break;
                default:
                    if ((insn >> 26) == 0) x[rd] = a >> shamt;
                    else if ((insn >> 26) == 0x10) x[rd] = (uint64_t)((int64_t)a >> shamt);
                    else ILLEGAL();
                }
                break;
            }
            case 0x06: {                                /* op-imm-32 */
                uint32_t a = (uint32_t)x[rs1];
                uint32_t shamt = (insn >> 20) & 31;
                switch (funct3) {
                case 0: x[rd] = (uint64_t)(int64_t)(int32_t)(a + (uint32_t)imm_i); break;
                case 1:
                    if (funct7 != 0) ILLEGAL();
                    x[rd] = (uint64_t)(int64_t)(int32_t)(a << shamt);
                    break;
                case 5:
                    if (funct7 == 0) x[rd] = (uint64_t)(int64_t)(int32_t)(a >> shamt);
                    else if (funct7 == 0x20) x[rd] = (uint64_t)(int64_t)((int32_t)a >> shamt);
                    else ILLEGAL();
                    break;
                default: ILLEGAL();
                }
                break;
            }
            case 0x0c: {                                /* op */
                uint64_t a = x[rs1], b = x[rs2], r;
                if (funct7 == 0) {
                    switch (funct3) {
                    case 0: r = a + b; break;
                    case 1: r = a << (b & 63); break;
                    case 2: r = (int64_t)a < (int64_t)b; break;
                    case 3: r = a < b; break;
                    case 4: r = a ^ b; break;
                    case 5: r = a >> (b & 63); break;
                    case 6: r = a | b; break;
                    default: r = a & b; break;
                    }
                } else if (funct7 == 0x20 && (funct3 == 0 || funct3 == 5)) {
                    r = funct3 == 0 ? a - b : (uint64_t)((int64_t)a >> (b & 63));
                } else if (funct7 == 1) {
                    switch (funct3) {
                    case 0: r = a * b; break;
                    case 1: r = mulh((int64_t)a, (int64_t)b); break;
                    case 2: r = mulhsu((int64_t)a, b); break;
                    case 3: r = mulhu(a, b); break;
                    case 4: r = div64((int64_t)a, (int64_t)b); break;
                    case 5: r = divu64(a, b); break;
                    case 6: r = rem64((int64_t)a, (int64_t)b); break;
                    default: r = remu64(a, b); break;
                    }
                } else {
                    ILLEGAL();
                }
                x[rd] = r;
                break;
            }
            case 0x0e: {                                /* op-32 */
                uint32_t a = (uint32_t)x[rs1], b = (uint32_t)x[rs2];
                uint64_t r;
                if (funct7 == 0 && funct3 == 0) r = (uint64_t)(int64_t)(int32_t)(a + b);
                else if (funct7 == 0x20 && funct3 == 0) r = (uint64_t)(int64_t)(int32_t)(a - b);
                else if (funct7 == 0 && funct3 == 1) r = (uint64_t)(int64_t)(int32_t)(a << (b & 31));
                else if (funct7 == 0 && funct3 == 5) r = (uint64_t)(int64_t)(int32_t)(a >> (b & 31));
                else if (funct7 == 0x20 && funct3 == 5) r = (uint64_t)(int64_t)((int32_t)a >> (b & 31));
                else if (funct7 == 1) {
                    switch (funct3) {
                    case 0: r = (uint64_t)(int64_t)(int32_t)(a * b); break;
                    case 4: r = div32((int32_t)a, (int32_t)b); break;
                    case 5: r = divu32(a, b); break;
                    case 6: r = rem32((int32_t)a, (int32_t)b); break;
                    case 7: r = remu32(a, b); break;
                    default: ILLEGAL();
                    }
                } else {
                    ILLEGAL();
                }
                x[rd] = r;
                break;
            }
            case 0x03:                                  /* misc-mem */
                if (funct3 == 0) break;                 /* fence: one hart, in order */
                if (funct3 == 1) break;                 /* fence.i: we never cache decoded code */
                ILLEGAL();
            case 0x0b: {                                /* amo */
                if (funct3 != 2 && funct3 != 3) ILLEGAL();
                SYNC();
                bool ok = exec_atomic(m, insn, funct3 == 2 ? 4 : 8);
                end = m->slice_end;
                if (!ok) goto trapped;
                break;
            }
            case 0x1c: {                                /* system */
                bool jumped = false;
                SYNC();
                bool ok = exec_system(m, insn, &jumped);
                end = m->slice_end;
                if (!ok) goto trapped;
                if (jumped) next = h->pc;
                /* CSR writes may change privilege, translation or interrupts. */
                dset = mmu_data_set(h);
                tlb_r = m->tlb.e[dset][ACCESS_READ];
                tlb_w = m->tlb.e[dset][ACCESS_WRITE];
                code_page = TLB_INVALID;
                break;
            }
            default:
                ILLEGAL();
            }
        }
        x[0] = 0;
        pc = next;
        steps++;
        continue;

    trapped:
        /* The trap handler set h->pc (and maybe privilege): a trapped
         * instruction is one step; translation context may have changed. */
        x[0] = 0;
        pc = h->pc;
        steps++;
        end = m->slice_end;
        dset = mmu_data_set(h);
        tlb_r = m->tlb.e[dset][ACCESS_READ];
        tlb_w = m->tlb.e[dset][ACCESS_WRITE];
        code_page = TLB_INVALID;
    }
    SYNC();
#undef TRAP
#undef ILLEGAL
#undef LOAD
#undef STORE
#undef SYNC
}
