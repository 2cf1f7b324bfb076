/* jit.c: the block translator (see jit.h).
 *
 * Host registers while a translation runs:
 *   rbx = h->x (guest registers live there; x[i] is [rbx + 8*i])
 *   r12 = read TLB of the current data set, r13 = write TLB
 *   r14 = instructions done by earlier passes and chained blocks
 *   r15 = slice budget left at the start of this pass
 *   rbp, rsi, rdi, r8-r11 = the block's most used guest registers, loaded
 *     at block entry and written back at every exit
 *   rax, rcx, rdx = scratch
 *   [rsp] = the current code page's generation counter, [rsp+8] = the exec
 *     TLB of the current privilege (both for chaining)
 *
 * Each op becomes straight-line code.  Memory ops do the interpreter's fast
 * path inline: the tag compare of tlb_key (an address whose low bits are set
 * misses, so misaligned accesses miss too) and the host addend.  A miss
 * leaves with a resume at that op, so the interpreter runs it, with its own
 * slow path and trap handling, and the rest of the block.
 *
 * Exits go on straight into the next block's translation (through one
 * shared stub, emit_chain_stub) when the block loop would run that block
 * next without looking at anything else: its page is the current code page
 * or in the exec TLB (code_page_in_tlb in execute.c), it is the cached block
 * for that pc, stamped with the page's current generation, translated in
 * this cache epoch, the budget holds all of it (steps + n <= end), and it
 * does not start at a breakpoint.
 * Otherwise the exit returns to the block loop, which decides as it always
 * does.
 */
#include <stddef.h>
#include <string.h>
#include "jit.h"
#include "../machine.h"

#if defined(__x86_64__) && defined(__linux__)
#include "x86.h"

#define MAX_BLOCK_CODE 8192     /* bytes of host code a block may take */
#define MAX_STUBS (2 * (BLOCK_MAX + 1))

/* Out-of-line code a conditional jump in the body leads to. */
enum stub_kind { STUB_RESUME, STUB_EXIT, STUB_LOOP };
struct stub {
    size_t field;               /* the jcc's rel32 */
    enum stub_kind kind;
    uint32_t done;              /* instructions done in this pass when taken (exit, loop) */
    uint32_t idx;               /* op to resume at */
    uint64_t pc;                /* where to go on (exit, loop) */
};

/* Host registers that hold guest registers within a block. */
static const int cache_hosts[] = { RBP, RSI, RDI, R8, R9, R10, R11 };
#define NCACHED (int)(sizeof cache_hosts / sizeof cache_hosts[0])

struct translation {
    struct jit *j;
    struct machine *m;
    struct x86 a;
    const struct block *b;
    int8_t host_of[32];         /* guest register -> host register, -1 = in memory */
    uint32_t written;           /* guest registers the translation writes */
    size_t top;                 /* start of a pass */
    size_t offset;              /* where the translation starts in the code cache */
    size_t epilogue_jumps[BLOCK_MAX * 2 + MAX_STUBS];
    int njumps;
    struct stub stubs[MAX_STUBS];
    int nstubs;
};

static struct x86_mem guest(int i) { return x86_at(RBX, 8 * i); }

/* reg = x[i] */
static void load_x(struct translation *t, int reg, int i)
{
    if (i == 0)
        x86_alu_rr(&t->a, ALU_XOR, reg, reg, false);
    else if (t->host_of[i] >= 0)
        x86_mov_rr(&t->a, reg, t->host_of[i], true);
    else
        x86_load_zx(&t->a, reg, guest(i), 8);
}

/* x[i] = reg */
static void store_x(struct translation *t, int reg, int i)
{
    if (i == 0)                 /* block.c turned writes of x0 into NOPs or block ends */
        return;
    if (t->host_of[i] >= 0)
        x86_mov_rr(&t->a, t->host_of[i], reg, true);
    else
        x86_store(&t->a, guest(i), reg, 8);
}

/* reg = reg op x[i] */
static void alu_x(struct translation *t, enum x86_alu op, int reg, int i, bool w64)
{
    if (i != 0 && t->host_of[i] >= 0)
        x86_alu_rr(&t->a, op, reg, t->host_of[i], w64);
    else
        x86_alu_rm(&t->a, op, reg, guest(i), w64);     /* x[0] is 0 in memory */
}

/* Where x[i] lives in the host, -1 = in memory (x0 is never cached). */
static int host(const struct translation *t, int i)
{
    return i != 0 ? t->host_of[i] : -1;
}

/* Where an op computes x[rd]: rd's own host register, so no move is
 * needed, or rax (then set_x stores it). */
static int dest(const struct translation *t, int rd)
{
    int h = host(t, rd);
    return h >= 0 ? h : RAX;
}

static void set_x(struct translation *t, int reg, int rd)
{
    if (reg == RAX)
        store_x(t, RAX, rd);
}

/* A host register holding x[i]: its own, or `scratch` loaded with it. */
static int reg_of(struct translation *t, int i, int scratch)
{
    int h = host(t, i);
    if (h >= 0)
        return h;
    load_x(t, scratch, i);
    return scratch;
}

/* reg = x[i], unless reg already is x[i]'s host register. */
static void load_into(struct translation *t, int reg, int i)
{
    if (reg != host(t, i))
        load_x(t, reg, i);
}

/* Put the cached registers the block writes back into h->x, or load the
 * cached ones from it. */
static void write_back(struct translation *t)
{
    for (int i = 1; i < 32; i++)
        if (t->host_of[i] >= 0 && (t->written >> i & 1))
            x86_store(&t->a, guest(i), t->host_of[i], 8);
}

static void load_cached(struct translation *t)
{
    for (int i = 1; i < 32; i++)
        if (t->host_of[i] >= 0)
            x86_load_zx(&t->a, t->host_of[i], guest(i), 8);
}

static void jump_to_epilogue(struct translation *t)
{
    t->epilogue_jumps[t->njumps++] = x86_jmp(&t->a);
}

/* Go on at the pc in rdx: into its block's translation if the block loop
 * would run it next (the shared lookup decides), else back to the loop.
 * The registers are written back already and r14 counts what was done.
 * Each exit has its own indirect jump, for the host to predict. */
static void chain_or_leave(struct translation *t)
{
    struct x86 *a = &t->a;
    size_t field = x86_call(a);
    x86_patch(a, field, (int64_t)t->j->chain_stub - (int64_t)t->offset);
    x86_test_rr(a, RCX, RCX, true);
    size_t leave = x86_jcc(a, CC_E);
    x86_byte(a, 0xff);                                                   /* jmp rcx */
    x86_byte(a, 0xe1);
    x86_patch(a, leave, (int64_t)a->len);
    x86_mov_rr(a, RAX, R14, true);
    jump_to_epilogue(t);
}

/* Leave (or chain) for pc after `done` instructions of this pass. */
static void exit_to(struct translation *t, uint32_t done, uint64_t pc)
{
    write_back(t);
    if (done) {
        x86_alu_ri(&t->a, ALU_ADD, R14, (int32_t)done, true);
        x86_alu_ri(&t->a, ALU_SUB, R15, (int32_t)done, true);
    }
    x86_mov_ri(&t->a, RDX, pc);
    chain_or_leave(t);
}

static void resume_at(struct translation *t, uint32_t idx)
{
    write_back(t);
    x86_mov_ri(&t->a, RAX, JIT_RESUME);
    x86_alu_rr(&t->a, ALU_OR, RAX, R14, true);
    x86_mov_ri(&t->a, RDX, idx);
    jump_to_epilogue(t);
}

/* Back to the block's start if the budget holds another whole pass, as the
 * block loop would (steps + n <= end); otherwise leave for pc.  The cached
 * registers stay where they are. */
static void loop_or_exit(struct translation *t, uint32_t done, uint64_t pc)
{
    struct x86 *a = &t->a;
    x86_alu_ri(a, ALU_ADD, R14, (int32_t)done, true);
    x86_alu_ri(a, ALU_SUB, R15, (int32_t)done, true);
    x86_alu_ri(a, ALU_CMP, R15, (int32_t)t->b->n, true);
    x86_patch(a, x86_jcc(a, CC_AE), (int64_t)t->top);
    write_back(t);
    x86_mov_ri(a, RDX, pc);
    chain_or_leave(t);
}

/* A jump or taken branch to pc after `done` instructions of this pass. */
static bool loops_back(const struct translation *t, uint64_t pc)
{
    /* Blocks of busy pages are checked at every entry, and the block loop
     * checks breakpoints: leave for those. */
    return pc == t->b->pc && !t->b->busy && !t->b->breakpoint;
}

static void add_stub(struct translation *t, size_t field, enum stub_kind kind, uint32_t done,
                     uint32_t idx, uint64_t pc)
{
    t->stubs[t->nstubs++] = (struct stub){ field, kind, done, idx, pc };
}

static void emit_stubs(struct translation *t)
{
    for (int i = 0; i < t->nstubs; i++) {
        const struct stub *s = &t->stubs[i];
        x86_patch(&t->a, s->field, (int64_t)t->a.len);
        switch (s->kind) {
        case STUB_RESUME: resume_at(t, s->idx); break;
        case STUB_EXIT: exit_to(t, s->done, s->pc); break;
        case STUB_LOOP: loop_or_exit(t, s->done, s->pc); break;
        }
    }
}

/* rax = x[rs1] + imm, then the TLB check of tlb_key(rax, size) in the
 * TLB at `tlb`; on a hit rax = the host address, on a miss resume at idx. */
static void tlb_access(struct translation *t, const struct decoded *d, int size, int tlb)
{
    struct x86 *a = &t->a;
    if (host(t, d->rs1) >= 0) {
        x86_lea(a, RAX, x86_at(host(t, d->rs1), (int32_t)d->imm));
    } else {
        load_x(t, RAX, d->rs1);
        if (d->imm)
            x86_alu_ri(a, ALU_ADD, RAX, (int32_t)d->imm, true);
    }
    x86_mov_rr(a, RCX, RAX, true);
    x86_alu_ri(a, ALU_AND, RCX, (int32_t)(~0xfffu | (uint32_t)(size - 1)), true);
    /* Entry offset: ((va >> 12) & (TLB_SIZE - 1)) * sizeof(struct tlb_entry). */
    x86_mov_rr(a, RDX, RAX, false);
    x86_shift_ri(a, SH_SHR, RDX, PAGE_SHIFT - 4, false);
    x86_alu_ri(a, ALU_AND, RDX, (TLB_SIZE - 1) << 4, false);
    x86_alu_rm(a, ALU_CMP, RCX, x86_at_index(tlb, RDX, 1, offsetof(struct tlb_entry, tag)), true);
    add_stub(t, x86_jcc(a, CC_NE), STUB_RESUME, 0, d->idx, 0);
    x86_alu_rm(a, ALU_ADD, RAX, x86_at_index(tlb, RDX, 1, offsetof(struct tlb_entry, addend)), true);
}

static void emit_load(struct translation *t, const struct decoded *d, int size, bool sign)
{
    tlb_access(t, d, size, R12);
    if (d->rd == 0)
        return;                 /* a hit reads RAM: no effect; the block ends here */
    int rd = dest(t, d->rd);
    if (sign)
        x86_load_sx(&t->a, rd, x86_at(RAX, 0), size);
    else
        x86_load_zx(&t->a, rd, x86_at(RAX, 0), size);
    set_x(t, rd, d->rd);
}

static void emit_store(struct translation *t, const struct decoded *d, int size)
{
    tlb_access(t, d, size, R13);
    x86_store(&t->a, x86_at(RAX, 0), reg_of(t, d->rs2, RCX), size);
}

static bool commutes(enum x86_alu op)
{
    return op == ALU_ADD || op == ALU_XOR || op == ALU_OR || op == ALU_AND;
}

/* x[rd] = x[rs1] op x[rs2] for the plain two-operand ALU ops, computed in
 * rd's host register where it has one. */
static void emit_alu(struct translation *t, const struct decoded *d, enum x86_alu op, bool w64)
{
    int rd = dest(t, d->rd);
    if (rd == host(t, d->rs2) && d->rs1 != d->rs2) {
        if (commutes(op)) {                     /* rd = rs2: rd op= rs1 */
            alu_x(t, op, rd, d->rs1, w64);
        } else {
            load_x(t, RAX, d->rs1);
            alu_x(t, op, RAX, d->rs2, w64);
            x86_mov_rr(&t->a, rd, RAX, true);
        }
    } else {
        load_into(t, rd, d->rs1);
        alu_x(t, op, rd, d->rs2, w64);
    }
    if (!w64)
        x86_movsxd_rr(&t->a, rd, rd);
    set_x(t, rd, d->rd);
}

static void emit_alu_imm(struct translation *t, const struct decoded *d, enum x86_alu op, bool w64)
{
    int rd = dest(t, d->rd), rs1 = host(t, d->rs1);
    if (op == ALU_ADD && w64 && rs1 >= 0 && rd != rs1) {
        x86_lea(&t->a, rd, x86_at(rs1, (int32_t)d->imm));          /* addi, mv */
    } else if (op == ALU_ADD && !w64 && d->imm == 0 && rs1 >= 0) {
        x86_movsxd_rr(&t->a, rd, rs1);                               /* sext.w */
    } else {
        load_into(t, rd, d->rs1);
        if (d->imm || op != ALU_ADD || !w64)
            x86_alu_ri(&t->a, op, rd, (int32_t)d->imm, w64);
        if (!w64)
            x86_movsxd_rr(&t->a, rd, rd);
    }
    set_x(t, rd, d->rd);
}

static void emit_shift(struct translation *t, const struct decoded *d, enum x86_shift op,
                       bool w64, bool by_imm)
{
    int rd = dest(t, d->rd);
    if (by_imm) {
        load_into(t, rd, d->rs1);
        x86_shift_ri(&t->a, op, rd, (uint8_t)d->imm, w64);
    } else {
        load_x(t, RCX, d->rs2);                 /* first: rd may be rs2 */
        load_into(t, rd, d->rs1);
        x86_shift_rcl(&t->a, op, rd, w64);      /* masks the count to 6 (5) bits, as RISC-V */
    }
    if (!w64)
        x86_movsxd_rr(&t->a, rd, rd);
    set_x(t, rd, d->rd);
}

/* x[rd] = (x[rs1] cc x[rs2] or imm) ? 1 : 0 */
static void emit_set(struct translation *t, const struct decoded *d, enum x86_cc cc, bool by_imm)
{
    int rs1 = reg_of(t, d->rs1, RAX);
    if (by_imm)
        x86_alu_ri(&t->a, ALU_CMP, rs1, (int32_t)d->imm, true);
    else
        alu_x(t, ALU_CMP, rs1, d->rs2, true);
    x86_setcc(&t->a, cc, RAX);
    x86_movzx8_rr(&t->a, RAX, RAX);
    store_x(t, RAX, d->rd);
}

static void emit_mul(struct translation *t, const struct decoded *d, bool w64)
{
    int rd = dest(t, d->rd);
    if (rd == host(t, d->rs2) && d->rs1 != d->rs2) {
        x86_imul_rr(&t->a, rd, reg_of(t, d->rs1, RCX), w64);     /* rd = rs2: rd *= rs1 */
    } else {
        load_into(t, rd, d->rs1);
        x86_imul_rr(&t->a, rd, reg_of(t, d->rs2, RCX), w64);
    }
    if (!w64)
        x86_movsxd_rr(&t->a, rd, rd);
    set_x(t, rd, d->rd);
}

/* High halves: RDX of the 128-bit product.  mulhsu = mulhu - (a < 0 ? b : 0). */
static void emit_mulh(struct translation *t, const struct decoded *d, bool is_signed, bool su)
{
    struct x86 *a = &t->a;
    load_x(t, RAX, d->rs1);
    load_x(t, RCX, d->rs2);
    x86_mul_rdx(a, RCX, is_signed);
    if (su) {
        load_x(t, RAX, d->rs1);
        x86_shift_ri(a, SH_SAR, RAX, 63, true);
        x86_alu_rr(a, ALU_AND, RAX, RCX, true);
        x86_alu_rr(a, ALU_SUB, RDX, RAX, true);
    }
    store_x(t, RDX, d->rd);
}

/* Divisions inline, with the results RISC-V defines where x86 would fault
 * or differ (muldiv.h says the same for the interpreter): by zero, all ones
 * (div) or the dividend (rem); signed by -1, the negation (div: INT_MIN
 * stays INT_MIN) or 0 (rem).  W forms work on the low 32 bits and
 * sign-extend the result. */
static void emit_div(struct translation *t, const struct decoded *d, bool is_signed, bool rem,
                     bool w64)
{
    struct x86 *a = &t->a;
    size_t done[2], by_zero, by_minus_one = 0;
    load_x(t, RAX, d->rs1);
    load_x(t, RCX, d->rs2);
    x86_test_rr(a, RCX, RCX, w64);
    by_zero = x86_jcc(a, CC_E);
    if (is_signed) {
        x86_alu_ri(a, ALU_CMP, RCX, -1, w64);
        by_minus_one = x86_jcc(a, CC_E);
        x86_sign_extend_rdx(a, w64);
    } else {
        x86_alu_rr(a, ALU_XOR, RDX, RDX, false);
    }
    x86_div_rdx(a, RCX, is_signed, w64);
    if (rem)
        x86_mov_rr(a, RAX, RDX, true);
    if (!w64)
        x86_movsxd_rr(a, RAX, RAX);
    done[0] = x86_jmp(a);
    x86_patch(a, by_zero, (int64_t)a->len);
    if (rem) {
        if (!w64)
            x86_movsxd_rr(a, RAX, RAX);             /* the dividend, sign-extended */
    } else {
        x86_mov_ri(a, RAX, UINT64_MAX);
    }
    done[1] = x86_jmp(a);
    if (is_signed) {
        x86_patch(a, by_minus_one, (int64_t)a->len);
        if (rem) {
            x86_alu_rr(a, ALU_XOR, RAX, RAX, false);
        } else {
            x86_neg(a, RAX, w64);
            if (!w64)
                x86_movsxd_rr(a, RAX, RAX);
        }
    }
    x86_patch(a, done[0], (int64_t)a->len);
    x86_patch(a, done[1], (int64_t)a->len);
    store_x(t, RAX, d->rd);
}

static void emit_branch(struct translation *t, const struct decoded *d, enum x86_cc cc)
{
    int rs1 = reg_of(t, d->rs1, RAX);
    if (d->rs2 == 0)
        x86_alu_ri(&t->a, ALU_CMP, rs1, 0, true);
    else
        alu_x(t, ALU_CMP, rs1, d->rs2, true);
    size_t field = x86_jcc(&t->a, cc);
    uint32_t done = d->idx + 1u;
    add_stub(t, field, loops_back(t, d->imm) ? STUB_LOOP : STUB_EXIT, done, 0, d->imm);
}

static void emit_jump(struct translation *t, const struct decoded *d, uint64_t pc)
{
    uint32_t done = d->idx + 1u;
    if (d->rd) {
        x86_mov_ri(&t->a, RCX, pc + d->len);
        store_x(t, RCX, d->rd);
    }
    if (loops_back(t, d->imm))
        loop_or_exit(t, done, d->imm);
    else
        exit_to(t, done, d->imm);
}

static void emit_jalr(struct translation *t, const struct decoded *d, uint64_t pc)
{
    load_x(t, RDX, d->rs1);     /* the target first: rd may be rs1 */
    if (d->imm)
        x86_alu_ri(&t->a, ALU_ADD, RDX, (int32_t)d->imm, true);
    x86_alu_ri(&t->a, ALU_AND, RDX, -2, true);
    if (d->rd) {
        x86_mov_ri(&t->a, RCX, pc + d->len);
        store_x(t, RCX, d->rd);
    }
    write_back(t);
    x86_alu_ri(&t->a, ALU_ADD, R14, (int32_t)(d->idx + 1u), true);
    x86_alu_ri(&t->a, ALU_SUB, R15, (int32_t)(d->idx + 1u), true);
    chain_or_leave(t);
}

static bool translated_op(int op)
{
    switch (op) {
    case OP_ILLEGAL: case OP_EBREAK: case OP_ATOMIC: case OP_SYSTEM:
    case OP_FLW: case OP_FLD: case OP_FSW: case OP_FSD:
        return false;
    default:
        return op < OP_FP_FIRST || op > OP_FP_LAST;
    }
}

/* Emit one op; false if it is not translated (the translation resumes
 * the interpreter there) or ends the block (nothing after it runs). */
static bool emit_op(struct translation *t, const struct decoded *d)
{
    uint64_t pc = t->b->pc + d->off;
    switch (d->op) {
    case OP_NOP: case OP_FENCE: return true;
    case OP_END: exit_to(t, d->idx, pc); return false;
    case OP_LUI: case OP_AUIPC:                 /* imm: the value (auipc: computed when decoded) */
        x86_mov_ri(&t->a, dest(t, d->rd), d->imm);
        set_x(t, dest(t, d->rd), d->rd);
        return true;
    case OP_JAL: emit_jump(t, d, pc); return false;
    case OP_JALR: emit_jalr(t, d, pc); return false;
    case OP_BEQ: emit_branch(t, d, CC_E); return true;
    case OP_BNE: emit_branch(t, d, CC_NE); return true;
    case OP_BLT: emit_branch(t, d, CC_L); return true;
    case OP_BGE: emit_branch(t, d, CC_GE); return true;
    case OP_BLTU: emit_branch(t, d, CC_B); return true;
    case OP_BGEU: emit_branch(t, d, CC_AE); return true;
    case OP_LB: emit_load(t, d, 1, true); return true;
    case OP_LH: emit_load(t, d, 2, true); return true;
    case OP_LW: emit_load(t, d, 4, true); return true;
    case OP_LD: emit_load(t, d, 8, false); return true;
    case OP_LBU: emit_load(t, d, 1, false); return true;
    case OP_LHU: emit_load(t, d, 2, false); return true;
    case OP_LWU: emit_load(t, d, 4, false); return true;
    case OP_SB: emit_store(t, d, 1); return true;
    case OP_SH: emit_store(t, d, 2); return true;
    case OP_SW: emit_store(t, d, 4); return true;
    case OP_SD: emit_store(t, d, 8); return true;
    case OP_ADDI: emit_alu_imm(t, d, ALU_ADD, true); return true;
    case OP_SLTI: emit_set(t, d, CC_L, true); return true;
    case OP_SLTIU: emit_set(t, d, CC_B, true); return true;
    case OP_XORI: emit_alu_imm(t, d, ALU_XOR, true); return true;
    case OP_ORI: emit_alu_imm(t, d, ALU_OR, true); return true;
    case OP_ANDI: emit_alu_imm(t, d, ALU_AND, true); return true;
    case OP_SLLI: emit_shift(t, d, SH_SHL, true, true); return true;
    case OP_SRLI: emit_shift(t, d, SH_SHR, true, true); return true;
    case OP_SRAI: emit_shift(t, d, SH_SAR, true, true); return true;
    case OP_ADD: emit_alu(t, d, ALU_ADD, true); return true;
    case OP_SUB: emit_alu(t, d, ALU_SUB, true); return true;
    case OP_SLL: emit_shift(t, d, SH_SHL, true, false); return true;
    case OP_SLT: emit_set(t, d, CC_L, false); return true;
    case OP_SLTU: emit_set(t, d, CC_B, false); return true;
    case OP_XOR: emit_alu(t, d, ALU_XOR, true); return true;
    case OP_SRL: emit_shift(t, d, SH_SHR, true, false); return true;
    case OP_SRA: emit_shift(t, d, SH_SAR, true, false); return true;
    case OP_OR: emit_alu(t, d, ALU_OR, true); return true;
    case OP_AND: emit_alu(t, d, ALU_AND, true); return true;
    case OP_ADDIW: emit_alu_imm(t, d, ALU_ADD, false); return true;
    case OP_SLLIW: emit_shift(t, d, SH_SHL, false, true); return true;
    case OP_SRLIW: emit_shift(t, d, SH_SHR, false, true); return true;
    case OP_SRAIW: emit_shift(t, d, SH_SAR, false, true); return true;
    case OP_ADDW: emit_alu(t, d, ALU_ADD, false); return true;
    case OP_SUBW: emit_alu(t, d, ALU_SUB, false); return true;
    case OP_SLLW: emit_shift(t, d, SH_SHL, false, false); return true;
    case OP_SRLW: emit_shift(t, d, SH_SHR, false, false); return true;
    case OP_SRAW: emit_shift(t, d, SH_SAR, false, false); return true;
    case OP_MUL: emit_mul(t, d, true); return true;
    case OP_MULW: emit_mul(t, d, false); return true;
    case OP_MULH: emit_mulh(t, d, true, false); return true;
    case OP_MULHU: emit_mulh(t, d, false, false); return true;
    case OP_MULHSU: emit_mulh(t, d, false, true); return true;
    case OP_DIV: emit_div(t, d, true, false, true); return true;
    case OP_DIVU: emit_div(t, d, false, false, true); return true;
    case OP_REM: emit_div(t, d, true, true, true); return true;
    case OP_REMU: emit_div(t, d, false, true, true); return true;
    case OP_DIVW: emit_div(t, d, true, false, false); return true;
    case OP_DIVUW: emit_div(t, d, false, false, false); return true;
    case OP_REMW: emit_div(t, d, true, true, false); return true;
    case OP_REMUW: emit_div(t, d, false, true, false); return true;
    default:
        /* FP, FP loads/stores, AMOs, SYSTEM, ebreak, illegal: the interpreter. */
        resume_at(t, d->idx);
        return false;
    }
}

/* Guest registers an op reads and writes, as bit masks. */
static void op_registers(const struct decoded *d, uint32_t *reads, uint32_t *writes)
{
    uint32_t rs1 = 1u << d->rs1, rs2 = 1u << d->rs2, rd = 1u << d->rd;
    switch (d->op) {
    case OP_NOP: case OP_FENCE: case OP_END: *reads = *writes = 0; return;
    case OP_LUI: case OP_AUIPC: case OP_JAL: *reads = 0; *writes = rd; return;
    case OP_BEQ: case OP_BNE: case OP_BLT: case OP_BGE: case OP_BLTU: case OP_BGEU:
    case OP_SB: case OP_SH: case OP_SW: case OP_SD:
        *reads = rs1 | rs2; *writes = 0; return;
    case OP_JALR: case OP_LB: case OP_LH: case OP_LW: case OP_LD: case OP_LBU: case OP_LHU:
    case OP_LWU: case OP_ADDI: case OP_SLTI: case OP_SLTIU: case OP_XORI: case OP_ORI:
    case OP_ANDI: case OP_SLLI: case OP_SRLI: case OP_SRAI: case OP_ADDIW: case OP_SLLIW:
    case OP_SRLIW: case OP_SRAIW:
        *reads = rs1; *writes = rd; return;
    default:                    /* register-register ALU and M ops */
        *reads = rs1 | rs2; *writes = rd; return;
    }
}

/* Which ops get translated, and which guest registers live in host ones:
 * the most used, up to NCACHED. */
static void plan(struct translation *t)
{
    const struct block *b = t->b;
    int uses[32] = {0};
    for (const struct decoded *d = b->ops; ; d++) {
        if (!translated_op(d->op))
            break;
        uint32_t reads, writes;
        op_registers(d, &reads, &writes);
        for (int i = 1; i < 32; i++)
            uses[i] += (reads >> i & 1) + (writes >> i & 1);
        t->written |= writes;
        if (d->op == OP_END || d->op == OP_JAL || d->op == OP_JALR)
            break;
    }
    t->written &= ~1u;
    memset(t->host_of, -1, sizeof t->host_of);
    for (int k = 0; k < NCACHED; k++) {
        int best = 0;
        for (int i = 1; i < 32; i++)
            if (uses[i] > uses[best] && t->host_of[i] < 0)
                best = i;
        if (best == 0)
            break;
        t->host_of[best] = (int8_t)cache_hosts[k];
        uses[best] = 0;
    }
}

static const int saved[] = { RBX, RBP, R12, R13, R14, R15 };
#define FRAME 24                /* [rsp] code_gen, [rsp+8] tlb_x, 8 to keep rsp 16-byte aligned */

/* Every translation enters with the same prologue, so chained blocks enter
 * right after it (j->chain_entry), with r14/r15 running on. */
static void emit_prologue(struct x86 *a)
{
    for (int i = 0; i < 6; i++)
        x86_push(a, saved[i]);
    x86_alu_ri(a, ALU_SUB, RSP, FRAME, true);
    x86_mov_rr(a, RBX, RDI, true);
    x86_mov_rr(a, R12, RSI, true);
    x86_mov_rr(a, R13, RDX, true);
    x86_mov_rr(a, R15, RCX, true);
    x86_alu_rr(a, ALU_XOR, R14, R14, false);
    x86_store(a, x86_at(RSP, 0), R8, 8);
    x86_store(a, x86_at(RSP, 8), R9, 8);
}

/* Return rax (status) and rdx (pc). */
static void emit_epilogue(struct x86 *a)
{
    x86_alu_ri(a, ALU_ADD, RSP, FRAME, true);
    for (int i = 5; i >= 0; i--)
        x86_pop(a, saved[i]);
    x86_ret(a);
}

/* The shared chain lookup (see the top of this file), called with the next
 * pc in rdx and r15 = budget left: returns in rcx where to jump (the body of
 * that block's translation, with m->jit.running and the frame's code_gen
 * switched to it), or 0 to leave.  Keeps rdx. */
static void emit_chain_stub(struct machine *m, struct x86 *a)
{
    struct jit *j = &m->jit;
    const int frame = 8;        /* the return address pushed by the call */
    size_t leave[9], same_page;
    int n = 0;
    /* Same page as the running block: the frame's code_gen is its generation. */
    x86_mov_ri(a, RCX, (uint64_t)(uintptr_t)&j->running);
    x86_load_zx(a, RAX, x86_at(RCX, 0), 8);
    x86_load_zx(a, RAX, x86_at(RAX, offsetof(struct block, pc)), 8);
    x86_alu_rr(a, ALU_XOR, RAX, RDX, true);
    x86_shift_ri(a, SH_SHR, RAX, PAGE_SHIFT, true);
    same_page = x86_jcc(a, CC_E);
    /* Another page: only if the exec TLB holds it; then its generation. */
    x86_mov_rr(a, RAX, RDX, false);
    x86_shift_ri(a, SH_SHR, RAX, PAGE_SHIFT - 4, false);
    x86_alu_ri(a, ALU_AND, RAX, (TLB_SIZE - 1) << 4, false);
    x86_alu_rm(a, ALU_ADD, RAX, x86_at(RSP, frame + 8), true);           /* &tlb_x[index] */
    x86_mov_rr(a, RCX, RDX, true);
    x86_alu_ri(a, ALU_AND, RCX, -4096, true);
    x86_alu_rm(a, ALU_CMP, RCX, x86_at(RAX, offsetof(struct tlb_entry, tag)), true);
    leave[n++] = x86_jcc(a, CC_NE);
    x86_alu_rm(a, ALU_ADD, RCX, x86_at(RAX, offsetof(struct tlb_entry, addend)), true);
    x86_mov_ri(a, RAX, (uint64_t)(uintptr_t)m->ram);
    x86_alu_rr(a, ALU_SUB, RCX, RAX, true);
    x86_shift_ri(a, SH_SHR, RCX, PAGE_SHIFT, true);
    x86_shift_ri(a, SH_SHL, RCX, 4, true);
    _Static_assert(sizeof(struct code_page) == 16 && offsetof(struct code_page, gen) == 0,
                   "code_page layout assumed by the chain stub");
    x86_mov_ri(a, RAX, (uint64_t)(uintptr_t)m->code);
    x86_alu_rr(a, ALU_ADD, RCX, RAX, true);
    x86_store(a, x86_at(RSP, frame), RCX, 8);                          /* the new code_gen */
    x86_patch(a, same_page, (int64_t)a->len);
    /* The cached block for pc, current, translated, fitting the budget. */
    x86_mov_rr(a, RAX, RDX, false);
    x86_shift_ri(a, SH_SHR, RAX, 1, false);
    x86_alu_ri(a, ALU_AND, RAX, BLOCK_DIR_SIZE - 1, false);
    x86_mov_ri(a, RCX, (uint64_t)(uintptr_t)m->blocks.dir);
    x86_load_zx(a, RAX, x86_at_index(RCX, RAX, 8, 0), 8);
    x86_alu_rm(a, ALU_CMP, RDX, x86_at(RAX, offsetof(struct block, pc)), true);
    leave[n++] = x86_jcc(a, CC_NE);
    x86_load_zx(a, RCX, x86_at(RSP, frame), 8);
    x86_load_zx(a, RCX, x86_at(RCX, 0), 8);
    x86_alu_rm(a, ALU_CMP, RCX, x86_at(RAX, offsetof(struct block, gen)), true);
    leave[n++] = x86_jcc(a, CC_NE);
    x86_load_zx(a, RCX, x86_at(RAX, offsetof(struct block, n)), 4);
    x86_alu_rr(a, ALU_CMP, R15, RCX, true);
    leave[n++] = x86_jcc(a, CC_B);                                       /* budget < n */
    x86_load_zx(a, RCX, x86_at(RAX, offsetof(struct block, breakpoint)), 1);
    x86_test_rr(a, RCX, RCX, false);
    leave[n++] = x86_jcc(a, CC_NE);                  /* the block loop checks breakpoints */
    x86_mov_ri(a, RCX, (uint64_t)(uintptr_t)&j->cache.epoch);
    x86_load_zx(a, RCX, x86_at(RCX, 0), 4);
    x86_alu_rm(a, ALU_CMP, RCX, x86_at(RAX, offsetof(struct block, jit_epoch)), false);
    leave[n++] = x86_jcc(a, CC_NE);
    x86_load_zx(a, RCX, x86_at(RAX, offsetof(struct block, jit)), 8);
    x86_test_rr(a, RCX, RCX, true);
    leave[n++] = x86_jcc(a, CC_E);                                       /* not translated */
    x86_mov_ri(a, R11, (uint64_t)(uintptr_t)&j->running);              /* written back: free */
    x86_store(a, x86_at(R11, 0), RAX, 8);
    x86_alu_ri(a, ALU_ADD, RCX, (int32_t)j->chain_entry, true);
    x86_ret(a);
    for (int i = 0; i < n; i++)
        x86_patch(a, leave[i], (int64_t)a->len);
    x86_alu_rr(a, ALU_XOR, RCX, RCX, false);
    x86_ret(a);
}

/* The chain stub of this cache epoch, emitted first after every flush. */
static bool ensure_chain_stub(struct machine *m)
{
    struct jit *j = &m->jit;
    if (j->stub_epoch == j->cache.epoch)
        return true;
    if (!j->chain_entry) {
        uint8_t probe[64];
        struct x86 a;
        x86_init(&a, probe, sizeof probe);
        emit_prologue(&a);
        j->chain_entry = (uint32_t)a.len;
    }
    uint8_t *buf = jit_cache_reserve(&j->cache, 1024);
    if (!buf)
        return false;
    struct x86 a;
    x86_init(&a, buf, 1024);
    size_t offset = j->cache.used;
    emit_chain_stub(m, &a);
    if (a.full)
        return false;
    jit_cache_commit(&j->cache, a.len);
    j->chain_stub = offset;
    j->stub_epoch = j->cache.epoch;
    return true;
}

static const void *translate(struct machine *m, const struct block *b)
{
    struct jit *j = &m->jit;
    uint8_t *buf = jit_cache_reserve(&j->cache, MAX_BLOCK_CODE);
    if (!buf) {
        jit_cache_flush(&j->cache);
        buf = jit_cache_reserve(&j->cache, MAX_BLOCK_CODE);
    }
    if (!buf || !ensure_chain_stub(m))
        return NULL;
    buf = jit_cache_reserve(&j->cache, MAX_BLOCK_CODE);
    if (!buf)
        return NULL;
    struct translation t = { .j = j, .m = m, .b = b, .offset = j->cache.used };
    struct x86 *a = &t.a;
    x86_init(a, buf, MAX_BLOCK_CODE);
    plan(&t);

    emit_prologue(a);
    if (a->len != j->chain_entry)
        return NULL;
    load_cached(&t);
    t.top = a->len;

    uint32_t ops = 0;
    for (const struct decoded *d = b->ops; emit_op(&t, d); d++)
        ops++;
    emit_stubs(&t);

    size_t epilogue = a->len;
    emit_epilogue(a);
    for (int i = 0; i < t.njumps; i++)
        x86_patch(a, t.epilogue_jumps[i], (int64_t)epilogue);
    if (a->full)
        return NULL;
    j->guest_ops += ops < b->n ? ops : b->n;
    j->code_bytes += a->len;
    return jit_cache_commit(&j->cache, a->len);
}

void jit_init(struct jit *j, bool want, uint32_t hot)
{
    j->hot = hot ? hot : JIT_HOT;
    j->translated = j->declined = 0;
    j->guest_ops = j->code_bytes = 0;
    j->chain_entry = 0;
    j->chain_stub = 0;
    j->stub_epoch = 0;
    j->running = NULL;
    j->enabled = want && jit_cache_init(&j->cache);
}

void jit_free(struct jit *j)
{
    jit_cache_free(&j->cache);
    j->enabled = false;
}

void jit_flush(struct jit *j)
{
    if (j->enabled)
        jit_cache_flush(&j->cache);
}

jit_code jit_prepare(struct machine *m, struct block *b)
{
    struct jit *j = &m->jit;
    if (b->jit_epoch == j->cache.epoch)
        return (jit_code)b->jit;
    if (++b->jit_uses < j->hot)
        return NULL;
    const void *code = NULL;
    if (translated_op(b->ops[0].op))
        code = translate(m, b);
    if (code)
        j->translated++;
    else
        j->declined++;
    /* Translating may have flushed the cache: stamp with the epoch now. */
    b->jit = code;
    b->jit_epoch = j->cache.epoch;
    return (jit_code)code;
}

#else   /* not an x86-64 Linux host: the interpreter only */

void jit_init(struct jit *j, bool want, uint32_t hot)
{
    memset(j, 0, sizeof *j);
}
void jit_free(struct jit *j) { }
void jit_flush(struct jit *j) { }
jit_code jit_prepare(struct machine *m, struct block *b) { return NULL; }

#endif
