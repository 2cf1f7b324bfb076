/* execute.c: execute RV64IMAFDC + Zicsr + Zifencei.
 *
 * One function runs a slice of instructions, a block at a time (block.h):
 * between blocks it accounts the steps, checks the budget and breakpoints
 * and finds the next block through a cached host pointer to the current
 * code page; inside a block each op jumps straight to the next one's
 * handler (computed gotos), with no fetch, no decode and no accounting.
 * Loads and stores go through the software TLB.  Everything unusual (TLB
 * misses, MMIO, misaligned accesses, traps, CSRs) leaves through a slow path
 * that writes pc and steps back first and ends the block after the
 * instruction.  Interrupts, timers and the budget are checked by the run
 * loop between slices (see machine.c); anything that may change them calls
 * cpu_kick() to end the slice after the current instruction, and a slice
 * that ends inside a block runs only the block's head: steps stay exact.
 * Where a cached block that fits the slice has a translation (jit/jit.h),
 * the loop calls it instead and accounts what it reports; a translation
 * hands anything unusual back to these handlers, inside the same block.
 */
#include <string.h>
#include "machine.h"
#include "decode.h"
#include "fpu.h"
#include "muldiv.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

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

/* A misaligned access that stays in one page whose TLB entry is present:
 * what the slow path would do (mmu.c, ram_piece), without leaving the
 * block.  Linux's module loader patches instructions this way, millions
 * of times per boot. */
static inline uint8_t *misaligned_fast(struct tlb_entry *tlb, uint64_t va, int size)
{
    struct tlb_entry *e = &tlb[(va >> PAGE_SHIFT) & (TLB_SIZE - 1)];
    if ((va & 0xfff) <= PAGE_SIZE - (uint64_t)size && e->tag == (va & ~0xfffull))
        return (uint8_t *)(e->addend + va);
    return NULL;
}

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
    /* LR/SC go through the TLB like ordinary loads and stores (kernels use
     * them for every lock and cmpxchg); only a miss walks the page tables. */
    int set = mmu_data_set(h);
    if (funct5 == 0x02) {                               /* lr */
        if (rs2 != 0) goto illegal;
        if (!load_fast(m->tlb->e[set][ACCESS_READ], va, size, &value) &&
            !mmu_load_slow(m, va, size, &value))
            return false;
        h->resv_addr = va;
        h->resv_valid = 1;
        h->x[rd] = size == 4 ? (uint64_t)(int64_t)(int32_t)value : value;
        return true;
    }
    if (funct5 == 0x03) {                               /* sc */
        bool ok = h->resv_valid && h->resv_addr == va;
        h->resv_valid = 0;
        if (ok) {
            if (!store_fast(m->tlb->e[set][ACCESS_WRITE], va, size, h->x[rs2]) &&
                !mmu_store_slow(m, va, size, h->x[rs2]))
                return false;
            h->x[rd] = 0;
        } else {
            /* The spec lets a failing SC skip the store's permission
             * checks: it just reports failure. */
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
            int rs2 = (insn >> 20) & 31;
            tlb_fence(m, rs1 != 0, h->x[rs1], rs2 != 0, h->x[rs2]);
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

/* ---- the block loop ----------------------------------------------------- */

void cpu_run_slice(struct machine *m, uint64_t slice_end)
{
    static const void *const handlers[OP_COUNT] = {
        [OP_ILLEGAL] = &&op_illegal,
        [OP_LUI] = &&op_lui, [OP_AUIPC] = &&op_auipc, [OP_JAL] = &&op_jal, [OP_JALR] = &&op_jalr,
        [OP_BEQ] = &&op_beq, [OP_BNE] = &&op_bne, [OP_BLT] = &&op_blt, [OP_BGE] = &&op_bge,
        [OP_BLTU] = &&op_bltu, [OP_BGEU] = &&op_bgeu,
        [OP_LB] = &&op_lb, [OP_LH] = &&op_lh, [OP_LW] = &&op_lw, [OP_LD] = &&op_ld,
        [OP_LBU] = &&op_lbu, [OP_LHU] = &&op_lhu, [OP_LWU] = &&op_lwu,
        [OP_SB] = &&op_sb, [OP_SH] = &&op_sh, [OP_SW] = &&op_sw, [OP_SD] = &&op_sd,
        [OP_ADDI] = &&op_addi, [OP_SLTI] = &&op_slti, [OP_SLTIU] = &&op_sltiu, [OP_XORI] = &&op_xori,
        [OP_ORI] = &&op_ori, [OP_ANDI] = &&op_andi, [OP_SLLI] = &&op_slli, [OP_SRLI] = &&op_srli,
        [OP_SRAI] = &&op_srai,
        [OP_ADD] = &&op_add, [OP_SUB] = &&op_sub, [OP_SLL] = &&op_sll, [OP_SLT] = &&op_slt,
        [OP_SLTU] = &&op_sltu, [OP_XOR] = &&op_xor, [OP_SRL] = &&op_srl, [OP_SRA] = &&op_sra,
        [OP_OR] = &&op_or, [OP_AND] = &&op_and,
        [OP_ADDIW] = &&op_addiw, [OP_SLLIW] = &&op_slliw, [OP_SRLIW] = &&op_srliw, [OP_SRAIW] = &&op_sraiw,
        [OP_ADDW] = &&op_addw, [OP_SUBW] = &&op_subw, [OP_SLLW] = &&op_sllw, [OP_SRLW] = &&op_srlw,
        [OP_SRAW] = &&op_sraw,
        [OP_MUL] = &&op_mul, [OP_MULH] = &&op_mulh, [OP_MULHSU] = &&op_mulhsu, [OP_MULHU] = &&op_mulhu,
        [OP_DIV] = &&op_div, [OP_DIVU] = &&op_divu, [OP_REM] = &&op_rem, [OP_REMU] = &&op_remu,
        [OP_MULW] = &&op_mulw, [OP_DIVW] = &&op_divw, [OP_DIVUW] = &&op_divuw, [OP_REMW] = &&op_remw,
        [OP_REMUW] = &&op_remuw,
        [OP_FENCE] = &&op_nop, [OP_EBREAK] = &&op_ebreak, [OP_ATOMIC] = &&op_atomic,
        [OP_SYSTEM] = &&op_system, [OP_NOP] = &&op_nop, [OP_END] = &&op_end,
        [OP_FLW] = &&op_flw, [OP_FLD] = &&op_fld, [OP_FSW] = &&op_fsw, [OP_FSD] = &&op_fsd,
        [OP_FP_FIRST ... OP_FP_LAST] = &&op_fp,
    };
    struct hart *h = &m->hart;
    uint64_t *x = h->x;
    struct block *b;
    const struct decoded *d = NULL;     /* the op being executed */
    int dset = mmu_data_set(h);
    struct tlb_entry *tlb_r = m->tlb->e[dset][ACCESS_READ];
    struct tlb_entry *tlb_w = m->tlb->e[dset][ACCESS_WRITE];
    struct tlb_entry *tlb_x = m->tlb->e[mmu_exec_set(h)][ACCESS_EXEC];
    uint64_t code_page = TLB_INVALID;   /* virtual page the code pointer is valid for */
    uint8_t *code = NULL;               /* host address of code_page */
    uint64_t *code_gen = NULL;          /* its generation (block.h) */
    uint64_t pc = h->pc;                /* between blocks: the next pc */
    uint64_t bpc = pc;                  /* in a block: its pc */
    uint64_t steps = h->steps;          /* steps before the current block */
    uint64_t end = slice_end;           /* reloaded after calls out: cpu_kick() zeroes m->slice_end */
    const bool check_breakpoints = m->nbreakpoints != 0;
    /* Translations never loop or chain into a block that starts at a
     * breakpoint (block.h), so those still come through dispatch and its
     * breakpoint check.  Watched pages are kept out of the TLB (watch.c), so
     * a translated access to one misses and resumes the interpreter, whose
     * slow path records the hit and ends the slice after that instruction. */
    const bool use_jit = m->jit.enabled;

    m->slice_end = slice_end;

/* Make pc's page the code page if the exec TLB holds it. */
#define code_page_in_tlb(pc) ({ \
        struct tlb_entry *e_ = &tlb_x[((pc) >> PAGE_SHIFT) & (TLB_SIZE - 1)]; \
        bool hit_ = e_->tag == ((pc) & ~0xfffull); \
        if (hit_) { \
            code_page = e_->tag; \
            code = (uint8_t *)(e_->addend + e_->tag); \
            code_gen = &m->code[(uint64_t)(code - m->ram) >> PAGE_SHIFT].gen; \
        } \
        hit_; \
    })

/* The current instruction's pc, and its position written back for callees
 * (they may read pc or steps). */
#define PC() (bpc + d->off)
#define SYNC() (h->pc = PC(), h->steps = steps + d->idx)
/* On to the block's next op. */
#define NEXT() do { d++; goto *d->handler; } while (0)
/* Leave the block after `done` of its instructions, going on at target:
 * into the next block straight away in the usual case (code page in the
 * exec TLB, the block cached and current, room in the slice, no
 * breakpoints), so each jumping handler has its own indirect jump for the
 * host to predict. */
#define LEAVE(target, done) do { \
        pc = (target); \
        steps += (done); \
        x[0] = 0; \
        if (likely(!check_breakpoints) && \
            (likely((pc & ~0xfffull) == code_page) || code_page_in_tlb(pc))) { \
            b = block_lookup(&m->blocks, pc, *code_gen); \
            if (likely(b) && likely(steps + b->n <= end)) { \
                if (use_jit) \
                    goto jit_enter; \
                bpc = pc; \
                d = b->ops; \
                goto *d->handler; \
            } \
        } \
        goto dispatch; \
    } while (0)
/* Leave after the current instruction. */
#define JUMP(target) LEAVE((target), d->idx + 1u)
#define EXIT() JUMP(PC() + d->len)
/* Loads: a TLB hit stays in the block; after a miss (which may have been
 * MMIO that kicked) the block ends. */
#define LOAD(size, writeback) do { \
        uint64_t va_ = RS1 + IMM, v; \
        if (likely(load_fast(tlb_r, va_, (size), &v))) { writeback; NEXT(); } \
        uint8_t *p_ = misaligned_fast(tlb_r, va_, (size)); \
        if (p_) { v = 0; memcpy(&v, p_, (size)); writeback; NEXT(); } \
        SYNC(); \
        uint64_t slow_; /* keeps v out of memory on the fast path */ \
        bool ok_ = mmu_load_slow(m, va_, (size), &slow_); \
        end = m->slice_end; \
        if (!ok_) goto trapped; \
        v = slow_; \
        writeback; \
        EXIT(); \
    } while (0)
/* Stores: likewise.  Code pages are never in the write TLB (block.h), so a
 * store into the running block's page ends it and the next one sees the
 * new bytes. */
#define STORE(size, value) do { \
        uint64_t va_ = RS1 + IMM; \
        if (likely(store_fast(tlb_w, va_, (size), (value)))) NEXT(); \
        uint8_t *p_ = misaligned_fast(tlb_w, va_, (size)); \
        if (p_) { uint64_t v_ = (value); memcpy(p_, &v_, (size)); NEXT(); } \
        SYNC(); \
        bool ok_ = mmu_store_slow(m, va_, (size), (value)); \
        end = m->slice_end; \
        if (!ok_) goto trapped; \
        EXIT(); \
    } while (0)
/* Leave the fast path: raise the trap, continue at the handler. */
#define TRAP(cause, tval) do { SYNC(); trap_exception(m, (cause), (tval)); goto trapped; } while (0)
#define RD x[d->rd]
#define RS1 x[d->rs1]
#define RS2 x[d->rs2]
#define IMM (d->imm)
#define SEXT32(v) ((uint64_t)(int64_t)(int32_t)(v))

dispatch:
    /* Between blocks: account, check, find the block at pc and run it. */
    x[0] = 0;
    if (unlikely(steps >= end))
        goto out;
    if (unlikely(check_breakpoints) && machine_stops_at_breakpoint(m, pc, steps)) {
        h->pc = pc;
        h->steps = steps;
        machine_request_stop(m, CHRONO_STOP_BREAKPOINT, pc);
        return;
    }
    if (unlikely((pc & ~0xfffull) != code_page) && !code_page_in_tlb(pc)) {
        uint8_t *page = mmu_exec_page(m, pc);
        if (!page)
            goto fetch_slow;
        code_page = pc & ~0xfffull;
        code = page;
        code_gen = &m->code[(uint64_t)(page - m->ram) >> PAGE_SHIFT].gen;
    }
    b = block_lookup(&m->blocks, pc, *code_gen);
    if (unlikely(!b) && !(b = block_get(m, pc, code, handlers)))
        goto fetch_slow;
    if (unlikely(steps + b->n > end))   /* the slice ends inside: run only its head */
        b = block_build(m, pc, code, (uint32_t)(end - steps), handlers);
    else if (use_jit)
        goto jit_enter;
run:
    bpc = pc;
    d = b->ops;
    goto *d->handler;

jit_enter: {
    /* A cached, current block that fits the slice: its translation if it
     * has one (jit.h).  A resume goes on in the interpreter inside it. */
    jit_code fn = b->jit_epoch == m->jit.cache.epoch ? (jit_code)b->jit : jit_prepare(m, b);
    if (!fn)
        goto run;
    m->jit.running = b;
    struct jit_exit r = fn(x, tlb_r, tlb_w, end - steps, code_gen, tlb_x);
    if (r.status & JIT_RESUME) {
        b = m->jit.running;
        steps += r.status & ~JIT_RESUME;
        pc = bpc = b->pc;
        d = &b->ops[r.pc];
        goto *d->handler;
    }
    steps += r.status;
    pc = r.pc;
    goto dispatch;
}

fetch_slow: {
    /* Code outside cacheable RAM, or an instruction crossing a page end:
     * fetched parcel by parcel and run on its own. */
    uint16_t lo, hi;
    h->pc = pc;
    h->steps = steps;
    if (!mmu_fetch_slow(m, pc, &lo))
        goto fetch_trapped;
    uint32_t insn = lo;
    if ((lo & 3) == 3) {
        if (!mmu_fetch_slow(m, pc + 2, &hi))
            goto fetch_trapped;
        insn |= (uint32_t)hi << 16;
    }
    b = block_build_one(m, pc, insn, handlers);
    goto run;
}

op_illegal: TRAP(CAUSE_ILLEGAL_INSTRUCTION, d->insn);
op_ebreak: TRAP(CAUSE_BREAKPOINT, PC());
op_nop: NEXT();
op_end: LEAVE(bpc + d->off, d->idx);                /* idx = n */

op_lui: RD = IMM; NEXT();
op_auipc: RD = IMM; NEXT();                         /* pc + imm, computed when decoded */
op_jal: RD = PC() + d->len; JUMP(IMM);              /* IMM: the target */
op_jalr: { uint64_t target = (RS1 + IMM) & ~1ull; RD = PC() + d->len; JUMP(target); }

/* Conditional branches: taken leaves the block, not taken goes on in it. */
op_beq: if (RS1 == RS2) JUMP(IMM); NEXT();
op_bne: if (RS1 != RS2) JUMP(IMM); NEXT();
op_blt: if ((int64_t)RS1 < (int64_t)RS2) JUMP(IMM); NEXT();
op_bge: if ((int64_t)RS1 >= (int64_t)RS2) JUMP(IMM); NEXT();
op_bltu: if (RS1 < RS2) JUMP(IMM); NEXT();
op_bgeu: if (RS1 >= RS2) JUMP(IMM); NEXT();

op_lb: LOAD(1, RD = (uint64_t)(int64_t)(int8_t)v);
op_lh: LOAD(2, RD = (uint64_t)(int64_t)(int16_t)v);
op_lw: LOAD(4, RD = SEXT32(v));
op_ld: LOAD(8, RD = v);
op_lbu: LOAD(1, RD = v);
op_lhu: LOAD(2, RD = v);
op_lwu: LOAD(4, RD = v);
op_sb: STORE(1, RS2);
op_sh: STORE(2, RS2);
op_sw: STORE(4, RS2);
op_sd: STORE(8, RS2);

op_addi: RD = RS1 + IMM; NEXT();
op_slti: RD = (int64_t)RS1 < (int64_t)IMM; NEXT();
op_sltiu: RD = RS1 < IMM; NEXT();
op_xori: RD = RS1 ^ IMM; NEXT();
op_ori: RD = RS1 | IMM; NEXT();
op_andi: RD = RS1 & IMM; NEXT();
op_slli: RD = RS1 << d->imm; NEXT();
op_srli: RD = RS1 >> d->imm; NEXT();
op_srai: RD = (uint64_t)((int64_t)RS1 >> d->imm); NEXT();

op_add: RD = RS1 + RS2; NEXT();
op_sub: RD = RS1 - RS2; NEXT();
op_sll: RD = RS1 << (RS2 & 63); NEXT();
op_slt: RD = (int64_t)RS1 < (int64_t)RS2; NEXT();
op_sltu: RD = RS1 < RS2; NEXT();
op_xor: RD = RS1 ^ RS2; NEXT();
op_srl: RD = RS1 >> (RS2 & 63); NEXT();
op_sra: RD = (uint64_t)((int64_t)RS1 >> (RS2 & 63)); NEXT();
op_or: RD = RS1 | RS2; NEXT();
op_and: RD = RS1 & RS2; NEXT();

op_addiw: RD = SEXT32(RS1 + IMM); NEXT();
op_slliw: RD = SEXT32((uint32_t)RS1 << d->imm); NEXT();
op_srliw: RD = SEXT32((uint32_t)RS1 >> d->imm); NEXT();
op_sraiw: RD = (uint64_t)(int64_t)((int32_t)RS1 >> d->imm); NEXT();
op_addw: RD = SEXT32(RS1 + RS2); NEXT();
op_subw: RD = SEXT32(RS1 - RS2); NEXT();
op_sllw: RD = SEXT32((uint32_t)RS1 << (RS2 & 31)); NEXT();
op_srlw: RD = SEXT32((uint32_t)RS1 >> (RS2 & 31)); NEXT();
op_sraw: RD = (uint64_t)(int64_t)((int32_t)RS1 >> (RS2 & 31)); NEXT();

op_mul: RD = RS1 * RS2; NEXT();
op_mulh: RD = mulh((int64_t)RS1, (int64_t)RS2); NEXT();
op_mulhsu: RD = mulhsu((int64_t)RS1, RS2); NEXT();
op_mulhu: RD = mulhu(RS1, RS2); NEXT();
op_div: RD = div64((int64_t)RS1, (int64_t)RS2); NEXT();
op_divu: RD = divu64(RS1, RS2); NEXT();
op_rem: RD = rem64((int64_t)RS1, (int64_t)RS2); NEXT();
op_remu: RD = remu64(RS1, RS2); NEXT();
op_mulw: RD = SEXT32((uint32_t)RS1 * (uint32_t)RS2); NEXT();
op_divw: RD = div32((int32_t)RS1, (int32_t)RS2); NEXT();
op_divuw: RD = divu32((uint32_t)RS1, (uint32_t)RS2); NEXT();
op_remw: RD = rem32((int32_t)RS1, (int32_t)RS2); NEXT();
op_remuw: RD = remu32((uint32_t)RS1, (uint32_t)RS2); NEXT();

/* F and D: loads and stores here, everything else in fpu.c.  FS = Off makes
 * them illegal; writing an f register makes FS Dirty.  FP loads and stores
 * move bits unchanged (a single is NaN-boxed on load). */
op_flw:
    if (unlikely(!fpu_enabled(h))) TRAP(CAUSE_ILLEGAL_INSTRUCTION, d->insn);
    LOAD(4, h->f[d->rd] = fpu_box32((uint32_t)v); fpu_set_dirty(h));
op_fld:
    if (unlikely(!fpu_enabled(h))) TRAP(CAUSE_ILLEGAL_INSTRUCTION, d->insn);
    LOAD(8, h->f[d->rd] = v; fpu_set_dirty(h));
op_fsw:
    if (unlikely(!fpu_enabled(h))) TRAP(CAUSE_ILLEGAL_INSTRUCTION, d->insn);
    STORE(4, h->f[d->rs2]);
op_fsd:
    if (unlikely(!fpu_enabled(h))) TRAP(CAUSE_ILLEGAL_INSTRUCTION, d->insn);
    STORE(8, h->f[d->rs2]);
op_fp:
    if (unlikely(!fpu_execute(h, d))) TRAP(CAUSE_ILLEGAL_INSTRUCTION, d->insn);
    NEXT();

op_atomic: {
    SYNC();
    bool ok = exec_atomic(m, d->insn, ((d->insn >> 12) & 7) == 2 ? 4 : 8);
    end = m->slice_end;
    if (!ok) goto trapped;
    EXIT();
}

op_system: {
    bool jumped = false;
    uint8_t priv = h->priv;
    uint64_t generation = m->tlb_generation;
    SYNC();
    bool ok = exec_system(m, d->insn, &jumped);
    end = m->slice_end;
    if (!ok) goto trapped;
    /* CSR writes may change the data TLB set (MPRV, SUM); the code page
     * stays valid unless privilege changed or the TLB was flushed, which
     * keeps the frequent sstatus/sie toggles of an OS cheap. */
    dset = mmu_data_set(h);
    tlb_r = m->tlb->e[dset][ACCESS_READ];
    tlb_w = m->tlb->e[dset][ACCESS_WRITE];
    tlb_x = m->tlb->e[mmu_exec_set(h)][ACCESS_EXEC];
    if (h->priv != priv || m->tlb_generation != generation)
        code_page = TLB_INVALID;
    JUMP(jumped ? h->pc : PC() + 4);
}

trapped:
    /* The op at d trapped: it is one step; the trap handler set h->pc (and
     * maybe privilege), so translation context may have changed. */
    steps += d->idx;
fetch_trapped:
    steps++;
    pc = h->pc;
    end = m->slice_end;
    dset = mmu_data_set(h);
    tlb_r = m->tlb->e[dset][ACCESS_READ];
    tlb_w = m->tlb->e[dset][ACCESS_WRITE];
    tlb_x = m->tlb->e[mmu_exec_set(h)][ACCESS_EXEC];
    code_page = TLB_INVALID;
    goto dispatch;

out:
    h->pc = pc;
    h->steps = steps;
#undef PC
#undef SYNC
#undef NEXT
#undef code_page_in_tlb
#undef LEAVE
#undef JUMP
#undef EXIT
#undef LOAD
#undef STORE
#undef TRAP
#undef RD
#undef RS1
#undef RS2
#undef IMM
#undef SEXT32
}
