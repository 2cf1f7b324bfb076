/* x86.c: the x86-64 encoder (see x86.h).
 *
 * Every instruction is: optional 0x66 prefix, optional REX, opcode bytes,
 * ModRM (+ SIB + displacement) and an immediate.  emit_op() does the common
 * part; the named functions pick opcodes (Intel SDM vol. 2).
 */
#include <string.h>
#include "x86.h"

void x86_init(struct x86 *a, uint8_t *buf, size_t cap)
{
    a->buf = buf;
    a->len = 0;
    a->cap = cap;
    a->full = false;
}

static void emit_u32(struct x86 *a, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        x86_byte(a, (uint8_t)(v >> (8 * i)));
}

static void emit_u64(struct x86 *a, uint64_t v)
{
    emit_u32(a, (uint32_t)v);
    emit_u32(a, (uint32_t)(v >> 32));
}

/* REX prefix if any bit is needed; `force` emits one anyway, so that
 * registers 4-7 in a byte operation mean SPL..DIL rather than AH..BH. */
static void emit_rex(struct x86 *a, bool w, int reg, int index, int base, bool force)
{
    uint8_t rex = (uint8_t)(0x40 | (w ? 8 : 0) | ((reg & 8) ? 4 : 0) |
                            ((index & 8) ? 2 : 0) | ((base & 8) ? 1 : 0));
    if (rex != 0x40 || force)
        x86_byte(a, rex);
}

static bool is_high_byte_reg(int reg) { return reg >= 4 && reg < 8; }

enum { NO_PREFIX = 0 };

struct opcode {
    uint8_t prefix;             /* 0x66 or 0 */
    uint8_t n;                  /* opcode bytes */
    uint8_t bytes[3];
};

static void emit_opcode(struct x86 *a, struct opcode op)
{
    for (int i = 0; i < op.n; i++)
        x86_byte(a, op.bytes[i]);
}

/* Opcode with a register operand (rm is a register). */
static void op_reg(struct x86 *a, struct opcode op, bool w, bool byte_reg, int reg, int rm)
{
    if (op.prefix)
        x86_byte(a, op.prefix);
    emit_rex(a, w, reg, 0, rm, byte_reg && (is_high_byte_reg(reg) || is_high_byte_reg(rm)));
    emit_opcode(a, op);
    x86_byte(a, (uint8_t)(0xc0 | ((reg & 7) << 3) | (rm & 7)));
}

/* Opcode with a memory operand. */
static void op_mem(struct x86 *a, struct opcode op, bool w, bool byte_reg, int reg, struct x86_mem m)
{
    if (op.prefix)
        x86_byte(a, op.prefix);
    emit_rex(a, w, reg, m.index < 0 ? 0 : m.index, m.base, byte_reg && is_high_byte_reg(reg));
    emit_opcode(a, op);
    int base = m.base & 7;
    int mod = m.disp == 0 && base != 5 ? 0 : m.disp >= -128 && m.disp <= 127 ? 1 : 2;
    if (m.index < 0 && base != 4) {
        x86_byte(a, (uint8_t)((mod << 6) | ((reg & 7) << 3) | base));
    } else {
        int scale = m.scale == 8 ? 3 : m.scale == 4 ? 2 : m.scale == 2 ? 1 : 0;
        int index = m.index < 0 ? 4 : (m.index & 7);   /* 4 = none */
        x86_byte(a, (uint8_t)((mod << 6) | ((reg & 7) << 3) | 4));
        x86_byte(a, (uint8_t)((scale << 6) | (index << 3) | base));
    }
    if (mod == 1)
        x86_byte(a, (uint8_t)m.disp);
    else if (mod == 2)
        emit_u32(a, (uint32_t)m.disp);
}

#define OP1(b) ((struct opcode){ NO_PREFIX, 1, { (b) } })
#define OP2(b1, b2) ((struct opcode){ NO_PREFIX, 2, { (b1), (b2) } })

void x86_alu_rr(struct x86 *a, enum x86_alu op, int dst, int src, bool w64)
{
    op_reg(a, OP1((uint8_t)(op * 8 + 1)), w64, false, src, dst);   /* op r/m, r */
}

void x86_alu_rm(struct x86 *a, enum x86_alu op, int dst, struct x86_mem m, bool w64)
{
    op_mem(a, OP1((uint8_t)(op * 8 + 3)), w64, false, dst, m);     /* op r, r/m */
}

void x86_alu_ri(struct x86 *a, enum x86_alu op, int dst, int32_t imm, bool w64)
{
    if (imm >= -128 && imm <= 127) {
        op_reg(a, OP1(0x83), w64, false, op, dst);
        x86_byte(a, (uint8_t)imm);
    } else {
        op_reg(a, OP1(0x81), w64, false, op, dst);
        emit_u32(a, (uint32_t)imm);
    }
}

void x86_test_rr(struct x86 *a, int r1, int r2, bool w64)
{
    op_reg(a, OP1(0x85), w64, false, r2, r1);
}

void x86_mov_rr(struct x86 *a, int dst, int src, bool w64)
{
    op_reg(a, OP1(0x89), w64, false, src, dst);
}

void x86_mov_ri(struct x86 *a, int dst, uint64_t imm)
{
    if (imm == 0) {
        x86_alu_rr(a, ALU_XOR, dst, dst, false);
    } else if (imm <= UINT32_MAX) {
        emit_rex(a, false, 0, 0, dst, false);           /* mov r32, imm32 zero-extends */
        x86_byte(a, (uint8_t)(0xb8 + (dst & 7)));
        emit_u32(a, (uint32_t)imm);
    } else if (x86_fits_i32((int64_t)imm)) {
        op_reg(a, OP1(0xc7), true, false, 0, dst);      /* mov r/m64, imm32 sign-extended */
        emit_u32(a, (uint32_t)imm);
    } else {
        emit_rex(a, true, 0, 0, dst, false);            /* movabs */
        x86_byte(a, (uint8_t)(0xb8 + (dst & 7)));
        emit_u64(a, imm);
    }
}

void x86_load_zx(struct x86 *a, int dst, struct x86_mem m, int size)
{
    switch (size) {
    case 1: op_mem(a, OP2(0x0f, 0xb6), false, false, dst, m); break;  /* movzx r32, m8 */
    case 2: op_mem(a, OP2(0x0f, 0xb7), false, false, dst, m); break;  /* movzx r32, m16 */
    case 4: op_mem(a, OP1(0x8b), false, false, dst, m); break;        /* mov r32, m32 */
    default: op_mem(a, OP1(0x8b), true, false, dst, m); break;        /* mov r64, m64 */
    }
}

void x86_load_sx(struct x86 *a, int dst, struct x86_mem m, int size)
{
    switch (size) {
    case 1: op_mem(a, OP2(0x0f, 0xbe), true, false, dst, m); break;   /* movsx r64, m8 */
    case 2: op_mem(a, OP2(0x0f, 0xbf), true, false, dst, m); break;   /* movsx r64, m16 */
    case 4: op_mem(a, OP1(0x63), true, false, dst, m); break;         /* movsxd r64, m32 */
    default: op_mem(a, OP1(0x8b), true, false, dst, m); break;
    }
}

void x86_store(struct x86 *a, struct x86_mem m, int src, int size)
{
    switch (size) {
    case 1: op_mem(a, OP1(0x88), false, true, src, m); break;
    case 2: op_mem(a, (struct opcode){ 0x66, 1, { 0x89 } }, false, false, src, m); break;
    case 4: op_mem(a, OP1(0x89), false, false, src, m); break;
    default: op_mem(a, OP1(0x89), true, false, src, m); break;
    }
}

void x86_store_i32(struct x86 *a, struct x86_mem m, int32_t imm)
{
    op_mem(a, OP1(0xc7), true, false, 0, m);
    emit_u32(a, (uint32_t)imm);
}

void x86_lea(struct x86 *a, int dst, struct x86_mem m)
{
    op_mem(a, OP1(0x8d), true, false, dst, m);
}

void x86_movsxd_rr(struct x86 *a, int dst, int src)
{
    op_reg(a, OP1(0x63), true, false, dst, src);
}

void x86_movzx8_rr(struct x86 *a, int dst, int src)
{
    op_reg(a, OP2(0x0f, 0xb6), false, true, dst, src);
}

void x86_shift_ri(struct x86 *a, enum x86_shift op, int dst, uint8_t count, bool w64)
{
    op_reg(a, OP1(0xc1), w64, false, op, dst);
    x86_byte(a, count);
}

void x86_shift_rcl(struct x86 *a, enum x86_shift op, int dst, bool w64)
{
    op_reg(a, OP1(0xd3), w64, false, op, dst);
}

void x86_imul_rr(struct x86 *a, int dst, int src, bool w64)
{
    op_reg(a, OP2(0x0f, 0xaf), w64, false, dst, src);
}

void x86_mul_rdx(struct x86 *a, int src, bool is_signed)
{
    op_reg(a, OP1(0xf7), true, false, is_signed ? 5 : 4, src);
}

void x86_div_rdx(struct x86 *a, int src, bool is_signed, bool w64)
{
    op_reg(a, OP1(0xf7), w64, false, is_signed ? 7 : 6, src);
}

void x86_sign_extend_rdx(struct x86 *a, bool w64)
{
    if (w64)
        x86_byte(a, 0x48);
    x86_byte(a, 0x99);
}

void x86_neg(struct x86 *a, int dst, bool w64)
{
    op_reg(a, OP1(0xf7), w64, false, 3, dst);
}

void x86_setcc(struct x86 *a, enum x86_cc cc, int dst)
{
    op_reg(a, OP2(0x0f, (uint8_t)(0x90 + cc)), false, true, 0, dst);
}

size_t x86_jcc(struct x86 *a, enum x86_cc cc)
{
    x86_byte(a, 0x0f);
    x86_byte(a, (uint8_t)(0x80 + cc));
    size_t field = a->len;
    emit_u32(a, 0);
    return field;
}

size_t x86_jmp(struct x86 *a)
{
    x86_byte(a, 0xe9);
    size_t field = a->len;
    emit_u32(a, 0);
    return field;
}

size_t x86_call(struct x86 *a)
{
    x86_byte(a, 0xe8);
    size_t field = a->len;
    emit_u32(a, 0);
    return field;
}

void x86_patch(struct x86 *a, size_t field, int64_t target)
{
    if (a->full || field + 4 > a->len)
        return;
    uint32_t rel = (uint32_t)(target - (int64_t)(field + 4));
    memcpy(a->buf + field, &rel, 4);
}

void x86_call_r(struct x86 *a, int reg)
{
    op_reg(a, OP1(0xff), false, false, 2, reg);
}

void x86_push(struct x86 *a, int reg)
{
    emit_rex(a, false, 0, 0, reg, false);
    x86_byte(a, (uint8_t)(0x50 + (reg & 7)));
}

void x86_pop(struct x86 *a, int reg)
{
    emit_rex(a, false, 0, 0, reg, false);
    x86_byte(a, (uint8_t)(0x58 + (reg & 7)));
}

void x86_ret(struct x86 *a)
{
    x86_byte(a, 0xc3);
}
